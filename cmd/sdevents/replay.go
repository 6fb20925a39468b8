package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/quota"
)

// newReplayCmd is `sdevents replay`, with one subcommand per consumer
// projection.
func newReplayCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild a consumer's projection from the beginning of its stream and report differences",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newReplayQuotaCmd(g), newReplayJobsCmd(g))
	return cmd
}

func newReplayQuotaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "quota",
		Short: "Rebuild every balance from the QUOTA stream and report accounts whose stored balance differs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withJetStream(func(_ config.Config, _ *nats.Conn, js jetstream.JetStream) error {
				return replayQuota(cmd, js)
			})
		},
	}
}

// replayQuota runs `sdevents replay quota` over js.
func replayQuota(cmd *cobra.Command, js jetstream.JetStream) error {
	progress := replayBar(cmd, "replaying QUOTA")
	rep, err := quota.Replay(cmd.Context(), js, progress)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "replayed %d events of %d accounts\n", rep.Events, rep.Accounts)
	if len(rep.Differ) == 0 {
		fmt.Fprintln(out, "every stored balance agrees with the fold")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tMISMATCHES\tINCONSISTENT\tFIRST PROBLEM")
	for _, p := range rep.Differ {
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", p.Account, p.Mismatches, p.Inconsistent, p.First)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return fmt.Errorf("%d accounts differ from the fold of their events", len(rep.Differ))
}

// replayMargin is the watermark margin of `replay jobs`: jobs whose idle
// timeout passed less than this long ago may not be closed in JOBS yet.
const replayMargin = 5 * time.Second

// maxListed bounds the job ids printed per kind of difference.
const maxListed = 20

func newReplayJobsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "jobs",
		Short: "Rebuild every job record from INGRESS and compare them with JOBS (missing, extra, different)",
		Long: `Rebuild every job record from the beginning of INGRESS with the aggregator's
rules and configuration (aggregator.key, idle_timeout and the job limits), then compare
them with the records in JOBS by job id. Credits and archive URIs are not
compared: they depend on when each job closed. Jobs whose idle timeout passed
in the last few seconds may show as missing until the aggregator closes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withJetStream(func(cfg config.Config, _ *nats.Conn, js jetstream.JetStream) error {
				return replayJobs(cmd, cfg, js)
			})
		},
	}
}

// replayJobs runs `sdevents replay jobs` over js.
func replayJobs(cmd *cobra.Command, cfg config.Config, js jetstream.JetStream) error {
	jcfg := aggregatorConfig(cfg).Jobs
	bar := replayBar(cmd, "replaying INGRESS")
	res, err := aggregator.Replay(cmd.Context(), js, jcfg, time.Now().Add(-replayMargin), bar)
	if err != nil {
		return err
	}
	stored, err := aggregator.ReadJobs(cmd.Context(), js, replayBar(cmd, "reading JOBS"))
	if err != nil {
		return err
	}
	d := aggregator.Compare(res.Records, stored)
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "replayed %d INGRESS events: %d jobs closed, %d open; JOBS holds %d\n",
		res.Events, len(res.Records), res.Open, len(stored))
	fmt.Fprintf(out, "%d agree, %d missing from JOBS, %d extra in JOBS, %d different\n",
		d.Same, len(d.Missing), len(d.Extra), len(d.Different))
	for _, l := range []struct {
		what string
		ids  []string
	}{{"missing", d.Missing}, {"extra", d.Extra}, {"different", d.Different}} {
		for i, id := range l.ids {
			if i == maxListed {
				fmt.Fprintf(out, "%s: … %d more\n", l.what, len(l.ids)-maxListed)
				break
			}
			fmt.Fprintf(out, "%s: %s\n", l.what, id)
		}
	}
	if !d.Clean() {
		return fmt.Errorf("JOBS differs from the replay of INGRESS")
	}
	fmt.Fprintln(out, "every job record agrees with the replay")
	return nil
}

// replayBar returns a progress callback drawing a bar on stderr; it finishes
// the bar when read reaches total.
//
// The spinner's own ticker is off: progressbar v3.19.1 reads its state from
// that goroutine without the bar's lock (a data race under -race); the bar is
// redrawn on every call instead, throttled.
func replayBar(cmd *cobra.Command, what string) func(read, total uint64) {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionClearOnFinish(),
	)
	max := int64(-1)
	return func(read, total uint64) {
		if int64(total) != max {
			max = int64(total)
			bar.ChangeMax64(max)
		}
		_ = bar.Set64(int64(read))
		if read == total {
			_ = bar.Finish()
		}
	}
}

// withJetStream loads the configuration and runs f with a connection made
// as connectJetStream makes it, closed when f returns: the frame of every
// operator command that reads or manages the streams.
func (g *globals) withJetStream(f func(cfg config.Config, nc *nats.Conn, js jetstream.JetStream) error) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	nc, js, err := connectJetStream(cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	return f(cfg, nc, js)
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
