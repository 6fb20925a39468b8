package main

import (
	"context"
	"testing"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/config"
)

// TestPartsAreMadeOnce wires every target of `sdevents run` with the real
// parts (each counted) and wires that only record what they were handed:
// each part is made once, before the first target that needs it, and the
// archiver and the console get the same archive sink (and the quota and the
// console the same admin brake).
func TestPartsAreMadeOnce(t *testing.T) {
	saved := targets
	t.Cleanup(func() { targets = saved })
	made := map[string]int{}
	sinks := map[string]sink.Store{}
	brakes := map[string]*admintoken.Brake{}
	targets = nil
	for _, tg := range saved {
		var needs []part
		for _, n := range tg.needs {
			needs = append(needs, part{name: n.name, make: func(ctx context.Context, p *process) error {
				made[n.name]++
				return n.make(ctx, p)
			}})
		}
		targets = append(targets, target{name: tg.name, needs: needs, wire: func(_ context.Context, p *process) error {
			sinks[tg.name], brakes[tg.name] = p.sink, p.brake
			return nil
		}})
	}
	cfg := config.Default()
	cfg.Archive.Dir = t.TempDir()
	p := &process{cfg: cfg}
	if err := p.wireTargets(t.Context(), runAll()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{archiveSink.name, adminBrake.name} {
		if made[n] != 1 {
			t.Errorf("part %q made %d times, want once", n, made[n])
		}
	}
	if sinks["archiver"] == nil || sinks["archiver"] != sinks["console"] {
		t.Errorf("the archiver and the console were handed different sinks: %v, %v", sinks["archiver"], sinks["console"])
	}
	if brakes["quota"] == nil || brakes["quota"] != brakes["console"] {
		t.Errorf("the quota and the console were handed different admin brakes")
	}
	if sinks["ingress"] != nil {
		t.Errorf("the sink was made before the ingress, which does not need it, was wired")
	}
}
