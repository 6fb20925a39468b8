package main

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/natsauth"
)

// replayCommands are the subcommands of `sdevents replay`, one per consumer
// projection; service files append theirs in init.
var replayCommands []func(*globals) *cobra.Command

func init() {
	commands = append(commands, newReplayCmd)
}

func newReplayCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild a consumer's projection from the beginning of its stream and report differences",
		Args:  cobra.NoArgs,
	}
	for _, c := range replayCommands {
		cmd.AddCommand(c(g))
	}
	return cmd
}

// connectJetStream connects as connectNATS does and opens its JetStream
// context; the caller closes the connection.
func connectJetStream(cfg config.Config) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := connectNATS(cfg)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// connectNATS connects a command-line tool to the deployment's NATS:
// nats.url with the nats.* client keys, or, when it is empty, the embedded
// server of a running `sdevents run` at nats.embedded.addr as its admin
// user (the password in <store_dir>/credentials).
func connectNATS(cfg config.Config) (*nats.Conn, error) {
	url := cfg.NATS.URL
	opts := []nats.Option{nats.Name("sdevents-cli")}
	if url == "" {
		url = "nats://" + cfg.NATS.Embedded.Addr
		dir := credentialsDir(cfg.NATS.Embedded.StoreDir)
		pw, err := natsauth.ReadPassword(dir, natsauth.Admin)
		if err != nil {
			return nil, fmt.Errorf("the embedded server's credentials (has `sdevents run` started with this nats.embedded.store_dir?): %w", err)
		}
		opts = append(opts, nats.UserInfo(natsauth.Admin, pw), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.Admin)))
	} else {
		auth, err := clientOptions(cfg.NATS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, auth...)
		if cfg.NATS.User != "" {
			// A sdevents user receives replies under its own prefix only.
			opts = append(opts, nats.CustomInboxPrefix(natsauth.InboxPrefix(cfg.NATS.User)))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s (is sdevents running?): %w", url, err)
	}
	return nc, nil
}
