package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natsrv"
)

// How a process authenticates to NATS (docs/operations.md, "NATS users and
// TLS"):
//
//   - `sdevents run` with the embedded server: the server accepts only the
//     users of pkg/natsauth, with passwords made on the first start in
//     <store_dir>/credentials. The process connects once as admin (stream
//     definitions, readiness) and once per service as that service's user,
//     so that every service runs with exactly the permissions it has in a
//     split deployment: a permission a service lacks fails `sdevents run`
//     and its tests, not first a compose stack or a cluster.
//   - A service alone against nats.url (`sdevents ingress`, ...): one
//     connection with the nats.* client keys (user and password, creds,
//     nkey, TLS), replies under the service's own inbox prefix.
//   - `sdevents run` against nats.url: one connection with those keys for
//     every service (a user allowed what they all need, such as admin).

// credentialsDir is where the embedded server keeps its users' passwords.
func credentialsDir(storeDir string) string { return filepath.Join(storeDir, "credentials") }

// downstreamURLFile holds nats://downstream:<password>@<addr> for the
// teams that read the streams of an embedded server.
func downstreamURLFile(storeDir string) string { return filepath.Join(storeDir, "downstream.url") }

// natsConns are the connections of a process beyond its main one: one per
// service, with the embedded server.
type natsConns struct {
	passwords map[string]string     // of the embedded server's users
	services  map[string]*nats.Conn // by service
	js        map[string]jetstream.JetStream
}

// jetStream returns the JetStream context of the connection a service
// uses: its own with the embedded server, else the process's. Every
// connection has one context, made when it is connected (newJetStream), so
// that one process shares one per connection among its services.
func (p *process) jetStream(service string) jetstream.JetStream {
	if js := p.natsConns.js[service]; js != nil {
		return js
	}
	return p.js
}

// The JetStream contexts' bounds of asynchronous publishes (the quota's
// expiry timers, the aggregator's facts); natstest.Connect makes the tests'
// contexts with the same.
const (
	// asyncAckTimeout bounds the wait for the ack of an asynchronous
	// publish: past it the publish fails with
	// jetstream.ErrAsyncPublishTimeout, and no longer counts as pending.
	asyncAckTimeout = 10 * time.Second
	// asyncMaxPending bounds the asynchronous publishes awaiting their ack
	// on one connection; past it, a publish waits for room. It holds what
	// the aggregator stores at once with its default 256 lanes (64 fact
	// chunks each) and the quota's timers beside.
	asyncMaxPending = 32 << 10
)

// newJetStream is the JetStream context of nc, the one of its connection.
func newJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout),
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// embeddedUsers returns the embedded server's users with their passwords,
// made on the first start and kept in <store_dir>/credentials.
func (p *process) embeddedUsers(storeDir string) ([]natsauth.User, error) {
	users, err := natsauth.Users()
	if err != nil {
		return nil, err
	}
	pw, err := natsauth.LoadOrCreatePasswords(credentialsDir(storeDir), natsauth.Names())
	if err != nil {
		return nil, err
	}
	for i := range users {
		users[i].Password = pw[users[i].Name]
	}
	p.natsConns.passwords = pw
	return users, nil
}

// announceDownstream writes the downstream user's URL for the embedded
// server (mode 0600) and logs where it is; the password is never logged.
func (p *process) announceDownstream(storeDir string, srv *natsrv.Embedded) error {
	path := downstreamURLFile(storeDir)
	hostPort := strings.TrimPrefix(srv.ClientURL(), "nats://")
	url := natsauth.URL(natsauth.Downstream, p.natsConns.passwords[natsauth.Downstream], hostPort)
	if err := natsauth.WriteFile(path, []byte(url+"\n")); err != nil {
		return fmt.Errorf("downstream url: %w", err)
	}
	p.log.Info().Str("file", path).Str("user", natsauth.Downstream).Str("credentials", credentialsDir(storeDir)).
		Msg("NATS URL for downstream readers written")
	return nil
}

// mainConnOptions are the credentials of a process's main connection: the
// embedded server's admin, or the client keys of the configuration, with
// the inbox prefix of the service when the process runs one alone.
func (p *process) mainConnOptions(services []string) ([]nats.Option, error) {
	if p.cfg.NATS.URL == "" {
		return userOptions(natsauth.Admin, p.natsConns.passwords[natsauth.Admin]), nil
	}
	opts, err := clientOptions(p.cfg.NATS)
	if err != nil {
		return nil, err
	}
	if len(services) == 1 {
		opts = append(opts, nats.Name("sdevents-"+services[0]), nats.CustomInboxPrefix(natsauth.InboxPrefix(services[0])))
	}
	return opts, nil
}

// connectServices connects, with the embedded server, once per service as
// its user, with the process's options base (reconnects, the closed
// handler). Each connection has a readiness check and is drained at
// cleanup. Against nats.url it does nothing: the services share the main
// connection.
func (p *process) connectServices(url string, base []nats.Option, services []string, closers *[]func()) error {
	if p.cfg.NATS.URL != "" {
		return nil
	}
	p.natsConns.services = map[string]*nats.Conn{}
	p.natsConns.js = map[string]jetstream.JetStream{}
	for _, name := range services {
		if !slices.Contains(natsauth.Services, name) {
			continue
		}
		opts := append(slices.Clone(base), userOptions(name, p.natsConns.passwords[name])...)
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			return fmt.Errorf("connect nats as %s: %w", name, err)
		}
		p.natsConns.services[name] = nc
		if p.natsConns.js[name], err = newJetStream(nc); err != nil {
			nc.Close()
			return err
		}
		*closers = append(*closers, func() {
			p.closing.Store(true)
			drain(nc, p.cfg.Shutdown.D())
		})
		p.http.AddReadyCheck("nats "+name, func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		})
	}
	return nil
}

// drain drains nc and waits until it is closed or within passes.
func drain(nc *nats.Conn, within time.Duration) {
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	deadline := time.Now().Add(within)
	for !nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	nc.Close()
}

// userOptions authenticate as an embedded server's user, with its name and
// inbox prefix.
func userOptions(user, password string) []nats.Option {
	return []nats.Option{
		nats.Name("sdevents-" + user),
		nats.UserInfo(user, password),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(user)),
	}
}

// clientOptions are the options of a connection to nats.url from the
// nats.* client keys: a user and password, a credentials file or an nkey
// seed file; a CA to verify the server and a client certificate. Files
// named are read when connecting (a creds file at every reconnect too); a
// CA or a client certificate makes the connection TLS.
func clientOptions(n config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password.Reveal()))
	case n.CredsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	case n.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	return opts, nil
}

// userInfoTimeout bounds the question of what the user may do.
const userInfoTimeout = 2 * time.Second

// restrictedUser asks the server ($SYS.REQ.USER.INFO) whether the
// connection's user has publish permissions at all. An error means the
// server did not say (no system account, or a server that does not answer
// it); restricted is false then.
func restrictedUser(ctx context.Context, nc *nats.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, userInfoTimeout)
	defer cancel()
	resp, err := nc.RequestWithContext(ctx, "$SYS.REQ.USER.INFO", nil)
	if err != nil {
		return false, fmt.Errorf("user info: %w", err)
	}
	var info struct {
		Data *struct {
			Permissions *struct {
				Publish *struct {
					Allow []string `json:"allow"`
					Deny  []string `json:"deny"`
				} `json:"publish"`
			} `json:"permissions"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &info); err != nil {
		return false, fmt.Errorf("user info: %w", err)
	}
	if info.Error != nil {
		return false, fmt.Errorf("user info: %s", info.Error.Description)
	}
	if info.Data == nil {
		return false, errors.New("user info: empty answer")
	}
	perms := info.Data.Permissions
	if perms == nil || perms.Publish == nil {
		return false, nil
	}
	all := slices.Contains(perms.Publish.Allow, ">") && len(perms.Publish.Deny) == 0
	return !all, nil
}
