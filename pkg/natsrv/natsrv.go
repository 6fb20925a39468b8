// Package natsrv runs the embedded nats-server of `sdevents run`: JetStream with
// file storage, its client listener on a configurable address so that the nats
// CLI and downstream teams can subscribe from outside the process, the users
// it accepts with their permissions (pkg/natsauth), and a Guard
// that brings the store back after a write error (a full disk, no descriptors
// left) once it accepts writes again, by restarting the server in the process.
package natsrv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sdevents/sdevents/pkg/natsauth"
)

// Options configure the embedded server.
type Options struct {
	// Addr is the client listener, host:port (port 0 or -1 picks a free one).
	Addr     string
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it; otherwise the
	// store is fsynced every SyncInterval.
	SyncAlways   bool
	SyncInterval time.Duration
	MaxPayload   int32
	// MonitorAddr serves the monitoring endpoints (/varz, /jsz) when set.
	MonitorAddr string
	// ServerName names the node (default "sdevents").
	ServerName string
	// MaxConns caps the client connections; 0 derives it from the
	// descriptor limit (DefaultMaxConns).
	MaxConns int
	// MaxStore bounds JetStream's file storage in bytes; 0 lets the server
	// take three quarters of the free space of StoreDir's file system (plus
	// what the store already holds) at start.
	MaxStore int64
	// MaxMemory bounds JetStream's memory storage in bytes; 0 lets the
	// server take three quarters of the machine's memory.
	MaxMemory int64
	// Logger receives the server's notices, warnings and errors; nil
	// discards them.
	Logger server.Logger
	// Users, when set, are the only clients the server accepts, each with
	// its password and permissions (natsauth.Users); without them any
	// client may connect and do anything.
	Users []natsauth.User
}

// maxConnsCeiling bounds the derived connection cap.
const maxConnsCeiling = 1024

// DefaultMaxConns is the client-connection cap derived from the process's
// descriptor limit (RLIMIT_NOFILE): an eighth of it, at most 1024 and at
// least 8.
func DefaultMaxConns() int {
	n := descriptorLimit()
	if n <= 0 {
		return maxConnsCeiling
	}
	return min(maxConnsCeiling, max(8, n/8))
}

// ErrNotReady is returned when the server did not accept connections in time.
var ErrNotReady = errors.New("embedded nats-server not ready")

// Start starts the server and waits until it accepts connections. The caller
// owns it: Shutdown then WaitForShutdown.
func Start(o Options) (*server.Server, error) {
	host, portS, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("natsrv: addr: %w", err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("natsrv: port: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:            o.ServerName,
		Host:                  host,
		Port:                  port,
		JetStream:             true,
		StoreDir:              o.StoreDir,
		MaxPayload:            o.MaxPayload,
		SyncAlways:            o.SyncAlways,
		SyncInterval:          o.SyncInterval,
		NoSigs:                true,
		NoLog:                 true,
		DisableShortFirstPing: true,
		MaxConn:               o.MaxConns,
		JetStreamMaxStore:     o.MaxStore,
		JetStreamMaxMemory:    o.MaxMemory,
		// The banner is ASCII art at notice level; the process logs one
		// line of its own.
		DisableJetStreamBanner: true,
	}
	opts.Users = serverUsers(o.Users)
	if opts.MaxConn <= 0 {
		opts.MaxConn = DefaultMaxConns()
	}
	if opts.ServerName == "" {
		opts.ServerName = "sdevents"
	}
	if o.MonitorAddr != "" {
		mh, mp, err := net.SplitHostPort(o.MonitorAddr)
		if err != nil {
			return nil, fmt.Errorf("natsrv: monitor addr: %w", err)
		}
		opts.HTTPHost = mh
		if opts.HTTPPort, err = strconv.Atoi(mp); err != nil {
			return nil, fmt.Errorf("natsrv: monitor port: %w", err)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsrv: %w", err)
	}
	if o.Logger != nil {
		// Debug and trace stay off: they log every protocol message.
		s.SetLoggerV2(o.Logger, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, ErrNotReady
	}
	return s, nil
}

// serverUsers maps users to the server's; a user without permissions may
// do everything.
func serverUsers(users []natsauth.User) []*server.User {
	var out []*server.User
	for _, u := range users {
		su := &server.User{Username: u.Name, Password: u.Password}
		if p := u.Permissions; p != nil {
			su.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
			}
			if p.AllowResponses {
				su.Permissions.Response = &server.ResponsePermission{
					MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION,
				}
			}
		}
		out = append(out, su)
	}
	return out
}

// Embedded is the embedded server of a process, which Restart replaces by a
// new one on the same addresses and store. Clients of the process reconnect
// to it as they do after any server restart.
type Embedded struct {
	o Options // with the addresses bound at the first start

	mu  sync.Mutex
	srv *server.Server
}

// StartEmbedded starts the server as Start does. The caller owns it:
// Shutdown.
func StartEmbedded(o Options) (*Embedded, error) {
	srv, err := Start(o)
	if err != nil {
		return nil, err
	}
	// A restart listens where the first start did, port 0 included.
	o.Addr = srv.Addr().String()
	if a := srv.MonitorAddr(); a != nil {
		o.MonitorAddr = a.String()
	}
	return &Embedded{o: o, srv: srv}, nil
}

// Server returns the running server (another one after a Restart).
func (e *Embedded) Server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// ClientURL is the URL clients connect to; a Restart keeps it.
func (e *Embedded) ClientURL() string { return "nats://" + e.o.Addr }

// Restart shuts the server down (every stream and consumer closes, writing
// what it holds) and starts a new one with the same options, which recovers
// every stream from disk. When the new one cannot start, the error is
// returned and there is no server until the next Restart.
func (e *Embedded) Restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
	srv, err := Start(e.o)
	if err != nil {
		return fmt.Errorf("natsrv: restart: %w", err)
	}
	e.srv = srv
	return nil
}

// Shutdown stops the server and waits for it; it may be called more than
// once.
func (e *Embedded) Shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}
