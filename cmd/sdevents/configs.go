package main

import (
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
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
