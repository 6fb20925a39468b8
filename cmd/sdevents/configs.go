package main

import (
	"time"

	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/blob/sink"
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

// The configuration file speaks of the deployment (CONTRACT §3); each
// service takes a Config of its own. These functions map the one onto the
// others: the only place where a service's settings come from another
// section of the file (the quota's decision deadline is the ingress's).

// drainTimeout is the one drain limit of every service's Run (package
// drain): half of shutdown_timeout, the other half left to the HTTP
// shutdown before it and the NATS drain after it.
func drainTimeout(cfg config.Config) time.Duration { return cfg.Shutdown.D() / 2 }

// quotaConfig is the quota's part of cfg: quota.*, admin.token, and the
// ingress's deadline and freshness window of synchronous callbacks, which
// bound the quota's decisions.
func quotaConfig(cfg config.Config) quota.Config {
	q := cfg.Quota
	return quota.Config{
		PerImage: q.Price.PerImage, ReservationTTL: q.ReservationTTL.D(), DecidedRetention: q.DecidedRetention.D(),
		SnapshotEvery: q.SnapshotEvery, MaxAccounts: q.MaxAccounts, AccountIdle: q.AccountIdle.D(),
		DecideDeadline: cfg.Ingress.SyncDeadline.D(), RequestMaxAge: cfg.Ingress.SyncSkew.D(),
		AdminToken: cfg.Admin.Token.Reveal(), DrainTimeout: drainTimeout(cfg),
	}
}

// aggregatorConfig is the aggregator's part of cfg: aggregator.*, and the
// quota's reservation_ttl, how long before a job its credits may have been
// reserved.
func aggregatorConfig(cfg config.Config) aggregator.Config {
	a := cfg.Aggregator
	return aggregator.Config{
		Jobs: jobs.Config{
			Key: a.Key, IdleTimeout: a.IdleTimeout.D(), MaxTasks: a.MaxTasks, MaxDuration: a.MaxDuration.D(),
			MaxImagesPerTask: a.MaxImagesPerTask, MaxRecordBytes: a.MaxRecordBytes,
		},
		CreditLookback: cfg.Quota.ReservationTTL.D(),
		DrainTimeout:   drainTimeout(cfg),
	}
}

// archiverConfig is the archiver's part of cfg: archive.* but the sink
// (sinkConfig). archive.min_rate 0 means no minimum.
func archiverConfig(cfg config.Config) archiver.Config {
	a := cfg.Archive
	c := archiver.Config{
		Workers: a.Workers, MaxImagesPerTask: a.MaxImagesPerTask, URLLifetime: a.URLLifetime.D(),
		AllowHosts: a.AllowHosts, MaxBytes: a.MaxBytes,
		Limits:       fetch.Limits{Timeout: a.FetchTimeout.D(), MinRate: a.MinRate, RateWindow: a.MinRateWindow.D()},
		DrainTimeout: drainTimeout(cfg),
	}
	if a.MinRate == 0 {
		c.Limits.MinRate = -1
	}
	if s := a.SourceS3; s.Endpoint != "" {
		c.SourceS3 = fetch.S3Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey.Reveal(), Secure: s.Secure, Region: s.Region}
	}
	return c
}

// sinkConfig is the archive sink of cfg: the bucket of archive.s3 when its
// endpoint is set, else archive.dir.
func sinkConfig(cfg config.Config) sink.Config {
	s := cfg.Archive.S3
	return sink.Config{Dir: cfg.Archive.Dir, S3: s3store.Config{
		Endpoint: s.Endpoint, Bucket: s.Bucket, AccessKey: s.AccessKey, SecretKey: s.SecretKey.Reveal(), Secure: s.Secure, Region: s.Region,
	}}
}

// consoleConfig is the console's part of cfg: console.* and admin.token.
func consoleConfig(cfg config.Config) console.Config {
	return console.Config{AdminToken: cfg.Admin.Token.Reveal(), LiveMaxClients: cfg.Console.LiveMaxClients,
		LiveWriteTimeout: cfg.Console.LiveWriteTimeout.D()}
}

// ingressConfig is the ingress's part of cfg: ingress.*, the sources, and
// http.max_body.
func ingressConfig(cfg config.Config) ingress.Config {
	in := cfg.Ingress
	c := ingress.Config{
		SyncSkew: in.SyncSkew.D(), AsyncMaxAge: in.AsyncMaxAge.D(), SyncDeadline: in.SyncDeadline.D(),
		PublishTimeout: in.PublishTimeout.D(), FailOpen: in.FailOpen, DedupHorizon: in.DedupHorizon.D(),
		SNSMaxAge: in.SNSMaxAge.D(), MaxBody: cfg.HTTP.MaxBody, DrainTimeout: drainTimeout(cfg),
	}
	for _, cb := range cfg.Callbacks {
		src := ingress.CallbackSource{Name: cb.Name}
		for _, k := range cb.Keys {
			src.Keys = append(src.Keys, callback.Key{AK: k.AK, SK: k.SK.Reveal()})
		}
		c.Callbacks = append(c.Callbacks, src)
	}
	for _, s := range cfg.SNS {
		c.SNS = append(c.SNS, ingress.SNSSource{Name: s.Name, TopicARNs: s.TopicARNs, AutoConfirm: s.AutoConfirm,
			CertHosts: s.CertHosts, CAFile: s.CAFile})
	}
	return c
}
