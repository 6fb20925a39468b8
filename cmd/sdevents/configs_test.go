package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/config"
)

// TestServiceConfigsOfTheFile: the example configuration maps onto a valid
// configuration of every service; a setting that concerns two services
// reaches both, and every service drains within half of shutdown_timeout.
func TestServiceConfigsOfTheFile(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(filepath.Join("..", "..", "sdevents.example.yaml"), map[string]string{
		"SDEVENTS_INGRESS_SYNC_DEADLINE":    "2500ms",
		"SDEVENTS_INGRESS_SYNC_SKEW":        "4m",
		"SDEVENTS_QUOTA_RESERVATION_TTL":    "45m",
		"SDEVENTS_ARCHIVE_MIN_RATE":         "0",
		"SDEVENTS_SHUTDOWN_TIMEOUT":         "30s",
		"SDEVENTS_HTTP_MAX_BODY":            "524288",
		"SDEVENTS_CONSOLE_LIVE_MAX_CLIENTS": "7",
	})
	if err != nil {
		t.Fatal(err)
	}
	in, q, ar, ag, co := ingressConfig(cfg), quotaConfig(cfg), archiverConfig(cfg), aggregatorConfig(cfg), consoleConfig(cfg)
	for name, err := range map[string]error{
		"ingress": in.Validate(), "quota": q.Validate(), "archiver": ar.Validate(), "aggregator": ag.Validate(), "console": co.Validate(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if in.SyncDeadline != 2500*time.Millisecond || q.DecideDeadline != in.SyncDeadline {
		t.Errorf("ingress.sync_deadline: ingress %s, quota %s", in.SyncDeadline, q.DecideDeadline)
	}
	if in.SyncSkew != 4*time.Minute || q.RequestMaxAge != in.SyncSkew {
		t.Errorf("ingress.sync_skew: ingress %s, quota %s", in.SyncSkew, q.RequestMaxAge)
	}
	if q.ReservationTTL != 45*time.Minute || ag.CreditLookback != q.ReservationTTL {
		t.Errorf("quota.reservation_ttl: quota %s, aggregator %s", q.ReservationTTL, ag.CreditLookback)
	}
	if ar.Limits.MinRate >= 0 {
		t.Errorf("archive.min_rate 0 (no minimum): MinRate %d", ar.Limits.MinRate)
	}
	if in.MaxBody != 512<<10 || co.LiveMaxClients != 7 || co.AdminToken != cfg.Admin.Token.Reveal() || len(in.Callbacks) != len(cfg.Callbacks) {
		t.Errorf("max_body %d, live_max_clients %d, %d callback sources; the console has the admin token: %v",
			in.MaxBody, co.LiveMaxClients, len(in.Callbacks), co.AdminToken == cfg.Admin.Token.Reveal())
	}
	for name, d := range map[string]time.Duration{
		"ingress": in.DrainTimeout, "quota": q.DrainTimeout, "archiver": ar.DrainTimeout, "aggregator": ag.DrainTimeout,
	} {
		if d != 15*time.Second {
			t.Errorf("%s drains for %s, want half of shutdown_timeout", name, d)
		}
	}
	if s := sinkConfig(cfg); s.Dir != cfg.Archive.Dir || s.S3.Endpoint != cfg.Archive.S3.Endpoint {
		t.Errorf("sink %+v", s)
	}
}
