package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/quotaclient"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/archiver"
	"github.com/sdevents/sdevents/services/console"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
)

// target is one service a process can run: `sdevents run` runs every
// target, in the order of targets; `sdevents <name>` runs one against an
// external NATS. Every process has a NATS connection per service, a
// metrics registry and the HTTP server; needs names the parts beyond them
// that the target shares with others, which build makes once, before the
// first target that needs them (Loki's module manager is the model).
type target struct {
	name  string
	short string // the help of `sdevents <name>`
	needs []part
	// wire constructs the service from p.cfg and p's adapters, registers
	// its routes on p.http and adds its long-running parts with p.add.
	wire func(ctx context.Context, p *process) error
	// command completes `sdevents <name>` (subcommands, checks before the
	// start); nil leaves it as newTargetCmd made it.
	command func(g *globals, cmd *cobra.Command)
}

// part is something a process makes once for every target that needs it.
type part struct {
	name string
	make func(ctx context.Context, p *process) error
}

// adminBrake counts wrong admin tokens for every target that accepts the
// admin token (operator API, console): one count per client, whichever
// part of the process the guesses go to.
var adminBrake = part{name: "admin brake", make: func(_ context.Context, p *process) error {
	p.brake = admintoken.NewBrake(nil)
	return nil
}}

// archiveSink is the archive sink of the configuration (archive.s3, else
// archive.dir), opened once for the archiver, which writes to it, and the
// console, which reads from it.
var archiveSink = part{name: "archive sink", make: func(_ context.Context, p *process) error {
	s, err := sink.Open(sinkConfig(p.cfg))
	p.sink = s
	return err
}}

// targets are every target of the binary, in the order `sdevents run`
// wires them. No target depends on another's construction (services meet
// only on subjects): the order is the architecture's, from the ingress to
// the console, and names the process in its log lines
// (service=ingress,quota,...). The targets' Runs start together once every
// target is wired, and stop together (process.run).
var targets = []target{
	{
		name:  "ingress",
		short: "Run the HTTP ingress against an external NATS",
		wire:  wireIngress,
	},
	{
		name:    "quota",
		short:   "Run the quota service (credit ledger) against an external NATS",
		needs:   []part{adminBrake},
		wire:    wireQuota,
		command: addQuotaCommands,
	},
	{
		name:  "archiver",
		short: "Run the archiver (images to MinIO/S3 or a directory) against an external NATS",
		needs: []part{archiveSink},
		wire:  wireArchiver,
	},
	{
		name:  "aggregator",
		short: "Run the aggregator (task results into job records) against an external NATS",
		wire:  wireAggregator,
	},
	{
		name:    "console",
		short:   "Run the operators' web console (/console on http.addr) against an external NATS",
		needs:   []part{adminBrake, archiveSink},
		wire:    wireConsole,
		command: requireAdminToken,
	},
}

// runAll names every target, in the order of targets: what `sdevents run`
// runs.
func runAll() []string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	return names
}

// findTarget returns the target called name.
func findTarget(name string) (target, bool) {
	i := slices.IndexFunc(targets, func(t target) bool { return t.name == name })
	if i < 0 {
		return target{}, false
	}
	return targets[i], true
}

// wireTargets makes the parts the named targets need and wires the
// targets into p, in the order of names.
func (p *process) wireTargets(ctx context.Context, names []string) error {
	made := map[string]bool{}
	for _, name := range names {
		t, ok := findTarget(name)
		if !ok {
			return fmt.Errorf("unknown service %q", name)
		}
		for _, n := range t.needs {
			if made[n.name] {
				continue
			}
			if err := n.make(ctx, p); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
			made[n.name] = true
		}
		if err := t.wire(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// newTargetCmd is `sdevents <name>`: the target alone against an external
// NATS, completed by its command.
func newTargetCmd(g *globals, t target) *cobra.Command {
	cmd := newServiceCmd(g, t.name, t.short)
	if t.command != nil {
		t.command(g, cmd)
	}
	return cmd
}

func wireIngress(ctx context.Context, p *process) error {
	in, err := ingress.New(ctx, ingressConfig(p.cfg), p.jetStream("ingress"), p.reg)
	if err != nil {
		return err
	}
	in.Routes(p.http.Echo())
	p.http.AddReadyCheck("ingress", in.Ready)
	p.add("ingress", in.Run)
	return nil
}

// wireQuota: the operator API on the shared HTTP server and the quota's
// Run (decision RPC and expiry timers).
func wireQuota(ctx context.Context, p *process) error {
	q, err := quota.New(ctx, quotaConfig(p.cfg), p.jetStream("quota"), p.reg, quota.WithLogger(serviceLogger(p.cfg.Log, "quota")), quota.WithAdminBrake(p.brake))
	if err != nil {
		return err
	}
	q.Routes(p.http.Echo())
	p.add("quota", q.Run)
	return nil
}

// wireArchiver: a consumer of INGRESS with no HTTP routes. In `sdevents
// run` it archives into archive.dir unless archive.s3 is set.
func wireArchiver(ctx context.Context, p *process) error {
	a, err := archiver.New(ctx, archiverConfig(p.cfg), p.jetStream("archiver"), p.sink, p.reg,
		archiver.WithLogger(serviceLogger(p.cfg.Log, "archiver")))
	if err != nil {
		return err
	}
	p.add("archiver", a.Run)
	return nil
}

// wireAggregator: a consumer of INGRESS with no HTTP routes.
func wireAggregator(ctx context.Context, p *process) error {
	a, err := aggregator.New(ctx, aggregatorConfig(p.cfg), p.jetStream("aggregator"), p.reg, aggregator.WithLogger(serviceLogger(p.cfg.Log, "aggregator")))
	if err != nil {
		return err
	}
	p.add("aggregator", a.Run)
	return nil
}

// wireConsole: the console's pages under /console on the shared HTTP
// server and its live view. It grants and reads balances through the quota
// replicas over NATS, wherever they run. Without admin.token the console is off:
// `sdevents run` goes on without it.
func wireConsole(ctx context.Context, p *process) error {
	js := p.jetStream("console")
	c, err := console.New(ctx, consoleConfig(p.cfg), js, p.sink, quotaclient.New(js.Conn()),
		console.WithLogger(serviceLogger(p.cfg.Log, "console")), console.WithAdminBrake(p.brake))
	if errors.Is(err, console.ErrDisabled) {
		p.log.Info().Msg("console off: admin.token is empty")
		return nil
	}
	if err != nil {
		return err
	}
	c.Routes(p.http.Echo())
	p.add("console", c.Run)
	// The HTTP server's graceful shutdown, which comes first however the
	// process stops, would wait for the open live streams: it ends them.
	p.http.OnShutdown(c.Close)
	return nil
}

// requireAdminToken makes `sdevents console` refuse to start without
// admin.token.
func requireAdminToken(g *globals, cmd *cobra.Command) {
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
}
