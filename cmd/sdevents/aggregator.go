package main

import (
	"context"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/services/aggregator"
)

func init() {
	targets["aggregator"] = aggregatorTarget
	runOrder = append(runOrder, "aggregator")
	commands = append(commands, func(g *globals) *cobra.Command {
		return newServiceCmd(g, "aggregator", "Run the aggregator (task results into job records) against an external NATS")
	})
	replayCommands = append(replayCommands, newReplayJobsCmd)
}

// aggregatorTarget wires the aggregator into a process; it serves no HTTP.
func aggregatorTarget(ctx context.Context, p *process) error {
	a, err := aggregator.New(ctx, p.cfg, p.conn("aggregator"), p.reg, aggregator.WithLogger(serviceLogger(p.cfg.Log, "aggregator")))
	if err != nil {
		return err
	}
	p.add("aggregator", a.Run)
	return nil
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
			cfg, err := g.load()
			if err != nil {
				return err
			}
			nc, js, err := connectJetStream(cfg)
			if err != nil {
				return err
			}
			defer nc.Close()
			jcfg := aggregator.JobsConfig(cfg)
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
		},
	}
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
