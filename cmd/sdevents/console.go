package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/quotaclient"
	"github.com/sdevents/sdevents/services/console"
)

func init() {
	targets["console"] = consoleTarget
	runOrder = append(runOrder, "console")
	commands = append(commands, newConsoleCmd)
}

// consoleTarget wires the web console into a process: its pages under
// /console on the shared HTTP server and its live view. It grants and reads
// balances through the quota replicas over NATS, wherever they run. Without
// admin.token the console is off: `sdevents run` goes on without it.
func consoleTarget(ctx context.Context, p *process) error {
	nc := p.conn("console")
	c, err := console.New(ctx, p.cfg, nc, quotaclient.New(nc), console.WithLogger(serviceLogger(p.cfg.Log, "console")), console.WithAdminBrake(p.brake))
	if errors.Is(err, console.ErrDisabled) {
		p.log.Info().Msg("console off: admin.token is empty")
		return nil
	}
	if err != nil {
		return err
	}
	c.Routes(p.http.Echo())
	p.add("console", c.Run)
	// The HTTP server's graceful shutdown, which comes first, waits for the
	// open live streams: end them as soon as the process starts stopping.
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	return nil
}

// newConsoleCmd is `sdevents console`: the console alone against an external
// NATS; it refuses to start without admin.token.
func newConsoleCmd(g *globals) *cobra.Command {
	cmd := newServiceCmd(g, "console", "Run the operators' web console (/console on http.addr) against an external NATS")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := g.load()
		if err != nil {
			return err
		}
		if cfg.Admin.Token.Reveal() == "" {
			return fmt.Errorf("console needs admin.token (or admin.token_file): %w", console.ErrDisabled)
		}
		return run(cmd, args)
	}
	return cmd
}
