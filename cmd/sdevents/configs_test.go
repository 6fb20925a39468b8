package main

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
	"github.com/sdevents/sdevents/services/archiver"
	"github.com/sdevents/sdevents/services/console"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
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

// TestServiceConfigsRefuseTheUnusable: the zero Config of every service is
// its defaults; an unusable value is refused with the service's sentinel,
// whoever builds the service.
func TestServiceConfigsRefuseTheUnusable(t *testing.T) {
	t.Parallel()
	src := ingress.CallbackSource{Name: "default", Keys: []callback.Key{{AK: "AK", SK: "SK"}}}
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: valid
	}{
		{"ingress zero", ingress.Config{}.Validate(), nil},
		{"ingress with a source", ingress.Config{Callbacks: []ingress.CallbackSource{src}}.Validate(), nil},
		{"ingress negative deadline", ingress.Config{SyncDeadline: -time.Second}.Validate(), ingress.ErrInvalidConfig},
		{"ingress negative body", ingress.Config{MaxBody: -1}.Validate(), ingress.ErrInvalidConfig},
		{"ingress SNS messages older than remembered", ingress.Config{DedupHorizon: time.Hour, SNSMaxAge: time.Hour}.Validate(), ingress.ErrInvalidConfig},
		{"ingress a source twice", ingress.Config{Callbacks: []ingress.CallbackSource{src, src}}.Validate(), ingress.ErrInvalidConfig},
		{"ingress a source without a name", ingress.Config{Callbacks: []ingress.CallbackSource{{Keys: src.Keys}}}.Validate(), ingress.ErrInvalidConfig},
		{"ingress a source without keys", ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default"}}}.Validate(), ingress.ErrInvalidConfig},
		{"ingress a key without its secret", ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default", Keys: []callback.Key{{AK: "AK"}}}}}.Validate(), ingress.ErrInvalidConfig},
		{"ingress an SNS source without topics", ingress.Config{SNS: []ingress.SNSSource{{Name: "eks"}}}.Validate(), ingress.ErrInvalidConfig},
		{"quota zero", quota.Config{}.Validate(), nil},
		{"quota negative ttl", quota.Config{ReservationTTL: -time.Second}.Validate(), quota.ErrInvalidConfig},
		{"quota negative price", quota.Config{PerImage: -1}.Validate(), quota.ErrInvalidConfig},
		{"quota retention under the minimum", quota.Config{DecidedRetention: time.Minute}.Validate(), quota.ErrInvalidConfig},
		{"quota retention under 3 × the request age", quota.Config{DecidedRetention: 20 * time.Minute, RequestMaxAge: 10 * time.Minute}.Validate(), quota.ErrInvalidConfig},
		{"archiver zero", archiver.Config{}.Validate(), nil},
		{"archiver no minimum rate", archiver.Config{Limits: fetch.Limits{MinRate: -1}}.Validate(), nil},
		{"archiver negative lifetime", archiver.Config{URLLifetime: -time.Second}.Validate(), archiver.ErrInvalidConfig},
		{"archiver negative fetch timeout", archiver.Config{Limits: fetch.Limits{Timeout: -time.Second}}.Validate(), archiver.ErrInvalidConfig},
		{"archiver negative workers", archiver.Config{Workers: -1}.Validate(), archiver.ErrInvalidConfig},
		{"archiver too many images per task", archiver.Config{MaxImagesPerTask: archiver.MaxImagesPerTaskLimit + 1}.Validate(), archiver.ErrInvalidConfig},
		{"aggregator zero", aggregator.Config{}.Validate(), nil},
		{"aggregator an unknown key", aggregator.Config{Jobs: jobs.Config{Key: "user"}}.Validate(), jobs.ErrInvalidConfig},
		{"aggregator negative lookback", aggregator.Config{CreditLookback: -time.Second}.Validate(), jobs.ErrInvalidConfig},
		{"console zero", console.Config{}.Validate(), nil},
		{"console negative clients", console.Config{LiveMaxClients: -1}.Validate(), console.ErrInvalidConfig},
	} {
		if tc.want == nil && tc.err != nil || tc.want != nil && !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: Validate: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	for name, err := range map[string]error{
		"ingress": ingress.Config{DrainTimeout: -1}.Validate(), "quota": quota.Config{DrainTimeout: -1}.Validate(),
		"archiver": archiver.Config{DrainTimeout: -1}.Validate(), "aggregator": aggregator.Config{DrainTimeout: -1}.Validate(),
	} {
		if err == nil {
			t.Errorf("%s: a negative drain limit accepted", name)
		}
	}
}
