package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/services/archiver"
)

// The archiver target: a consumer of INGRESS with no HTTP routes. In
// `sdevents run` it archives into archive.dir unless archive.s3 is set.
func init() {
	targets["archiver"] = archiverTarget
	runOrder = append(runOrder, "archiver")
	commands = append(commands, func(g *globals) *cobra.Command {
		return newServiceCmd(g, "archiver", "Run the archiver (images to MinIO/S3 or a directory) against an external NATS")
	})
}

func archiverTarget(ctx context.Context, p *process) error {
	a, err := archiver.New(ctx, p.cfg, p.conn("archiver"), p.reg,
		archiver.WithLogger(serviceLogger(p.cfg.Log, "archiver")),
		archiver.WithDrainTimeout(p.cfg.Shutdown.D()/2))
	if err != nil {
		return err
	}
	p.add("archiver", a.Run)
	return nil
}
