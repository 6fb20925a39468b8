// Package natsrv runs the embedded nats-server of `sdevents run`: JetStream with
// file storage, its client listener on a configurable address so that the nats
// CLI and downstream teams can subscribe from outside the process.
package natsrv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, ErrNotReady
	}
	return s, nil
}
