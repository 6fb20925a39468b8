package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/sns"
)

// minRecordBytes is the aggregator's smallest record bound (jobs.MinRecordBytes).
const minRecordBytes = 64 << 10

var (
	// sourceName bounds a source's name: it is a subject token
	// (sd.callback.<name>.<bizType>, sd.sns.<name>.<Type>).
	sourceName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	topicARN   = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)
)

// maxImagesPerTask bounds archive.max_images_per_task: the images of one
// task result are held by one archiver replica at a time.
const maxImagesPerTask = 10000

// Validate reports every invalid value at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	hostPort := func(key, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "want host:port, got %q", v)
		}
	}
	positive := func(key string, d Duration) {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}

	hostPort("http.addr", c.HTTP.Addr)
	if c.HTTP.MaxBody <= 0 {
		bad("http.max_body", "must be positive")
	}
	if c.HTTP.MaxConnections < 0 {
		bad("http.max_connections", "must be 0 (derived from the descriptor limit) or positive")
	}
	if h := c.HTTP.MaxHeaderBytes; h < 4<<10 || h > 1<<20 {
		bad("http.max_header_bytes", "want 4096 to 1048576, got %d", h)
	}
	positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positive("http.idle_timeout", c.HTTP.IdleTimeout)
	if c.HTTP.BodyBudget < c.HTTP.MaxBody+64<<10 {
		bad("http.body_budget", "%d cannot hold one body of http.max_body %d (want at least %d)", c.HTTP.BodyBudget, c.HTTP.MaxBody, c.HTTP.MaxBody+64<<10)
	}
	positive("http.body_budget_wait", c.HTTP.BodyBudgetWait)
	if c.NATS.URL == "" {
		e := c.NATS.Embedded
		hostPort("nats.embedded.addr", e.Addr)
		if e.StoreDir == "" {
			bad("nats.embedded.store_dir", "must be set")
		}
		if e.Sync != "always" && e.Sync != "interval" {
			bad("nats.embedded.sync", "want always or interval, got %q", e.Sync)
		}
		if e.Sync == "interval" {
			positive("nats.embedded.sync_interval", e.SyncInterval)
		}
		if int64(e.MaxPayload) < c.HTTP.MaxBody+64<<10 {
			bad("nats.embedded.max_payload", "%d is too small for http.max_body %d plus headers (want at least %d)", e.MaxPayload, c.HTTP.MaxBody, c.HTTP.MaxBody+64<<10)
		}
		if e.MonitorAddr != "" {
			hostPort("nats.embedded.monitor_addr", e.MonitorAddr)
		}
		if e.MaxConnections < 0 {
			bad("nats.embedded.max_connections", "must be 0 (derived from the descriptor limit) or positive")
		}
		if e.MaxStore < 0 {
			bad("nats.embedded.max_store", "must be 0 (the free space at start) or positive")
		}
		if e.MaxMemory < 1<<20 {
			bad("nats.embedded.max_memory", "want at least 1048576, got %d", e.MaxMemory)
		}
	}
	c.NATS.validateClient(bad)
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "want 1 to 5, got %d", c.NATS.Replicas)
	}
	positive("ingress.sync_skew", c.Ingress.SyncSkew)
	positive("ingress.async_max_age", c.Ingress.AsyncMaxAge)
	positive("ingress.sync_deadline", c.Ingress.SyncDeadline)
	positive("ingress.publish_timeout", c.Ingress.PublishTimeout)
	positive("ingress.dedup_horizon", c.Ingress.DedupHorizon)
	positive("ingress.sns_max_age", c.Ingress.SNSMaxAge)
	if room := c.Ingress.DedupHorizon - Duration(sns.MaxClockSkew); c.Ingress.SNSMaxAge > room {
		bad("ingress.sns_max_age", "%s plus the %s an SNS Timestamp may be ahead exceeds ingress.dedup_horizon %s (want at most %s)",
			c.Ingress.SNSMaxAge.D(), sns.MaxClockSkew, c.Ingress.DedupHorizon.D(), room.D())
	}

	names := map[string]bool{}
	for i, cb := range c.Callbacks {
		key := fmt.Sprintf("callbacks[%d]", i)
		if !sourceName.MatchString(cb.Name) {
			bad(key+".name", "want [a-z0-9-]{1,64}, got %q", cb.Name)
		}
		if names[cb.Name] {
			bad(key+".name", "%q is used twice", cb.Name)
		}
		names[cb.Name] = true
		if len(cb.Keys) == 0 {
			bad(key+".keys", "at least one key pair is required")
		}
		for j, k := range cb.Keys {
			if k.AK == "" {
				bad(fmt.Sprintf("%s.keys[%d].ak", key, j), "must be set")
			}
			if k.SK == "" {
				bad(fmt.Sprintf("%s.keys[%d].sk", key, j), "must be set (or sk_file)")
			}
		}
	}
	names = map[string]bool{}
	for i, s := range c.SNS {
		key := fmt.Sprintf("sns[%d]", i)
		if !sourceName.MatchString(s.Name) {
			bad(key+".name", "want [a-z0-9-]{1,64}, got %q", s.Name)
		}
		if names[s.Name] {
			bad(key+".name", "%q is used twice", s.Name)
		}
		names[s.Name] = true
		if len(s.TopicARNs) == 0 {
			bad(key+".topic_arns", "at least one topic ARN is required")
		}
		for j, arn := range s.TopicARNs {
			if !topicARN.MatchString(arn) {
				bad(fmt.Sprintf("%s.topic_arns[%d]", key, j), "%q is not an SNS topic ARN", arn)
			}
		}
		for j, h := range s.CertHosts {
			if h == "" || strings.ContainsAny(h, "/@?#") {
				bad(fmt.Sprintf("%s.cert_hosts[%d]", key, j), "want host or host:port, got %q", h)
			}
		}
	}
	if c.Quota.Price.PerImage < 1 {
		bad("quota.price.per_image", "must be at least 1")
	}
	positive("quota.reservation_ttl", c.Quota.ReservationTTL)
	if c.Console.LiveMaxClients < 1 {
		bad("console.live_max_clients", "must be at least 1")
	}
	positive("console.live_write_timeout", c.Console.LiveWriteTimeout)
	// 10 minutes is the quota ledger's MinRetention: an invokeId decided
	// anew sooner would repeat a decision.
	if r := c.Quota.DecidedRetention.D(); r < 10*time.Minute || r < 3*c.Ingress.SyncSkew.D() {
		bad("quota.decided_retention", "must be at least 10m and 3 × ingress.sync_skew (%s), got %s", 3*c.Ingress.SyncSkew.D(), r)
	}
	if c.Quota.SnapshotEvery < 1 {
		bad("quota.snapshot_every", "must be at least 1")
	}
	if c.Quota.MaxAccounts < 1 {
		bad("quota.max_accounts", "must be at least 1")
	}
	positive("quota.account_idle", c.Quota.AccountIdle)
	if c.Archive.S3.Endpoint == "" && c.Archive.Dir == "" {
		bad("archive.dir", "must be set when archive.s3.endpoint is empty")
	}
	if c.Archive.S3.Endpoint != "" {
		hostPort("archive.s3.endpoint", c.Archive.S3.Endpoint)
		if c.Archive.S3.Bucket == "" {
			bad("archive.s3.bucket", "must be set")
		}
	}
	if c.Archive.SourceS3.Endpoint != "" {
		hostPort("archive.source_s3.endpoint", c.Archive.SourceS3.Endpoint)
	}
	// Static keys, or none: then the AWS credential chain (pkg/s3cred).
	for _, s3 := range []struct {
		key string
		S3
	}{{"archive.s3", c.Archive.S3}, {"archive.source_s3", c.Archive.SourceS3}} {
		if (s3.AccessKey == "") != (s3.SecretKey.Reveal() == "") {
			bad(s3.key, "set both access_key and secret_key, or neither to use the AWS credential chain")
		}
	}
	if c.Archive.Workers < 1 {
		bad("archive.workers", "must be at least 1")
	}
	if c.Archive.MaxBytes < 1 {
		bad("archive.max_bytes", "must be positive")
	}
	positive("archive.url_lifetime", c.Archive.URLLifetime)
	positive("archive.fetch_timeout", c.Archive.FetchTimeout)
	if c.Archive.MinRate < 0 {
		bad("archive.min_rate", "must not be negative (0 means no minimum)")
	}
	if c.Archive.MinRate > 0 {
		positive("archive.min_rate_window", c.Archive.MinRateWindow)
	}
	if n := c.Archive.MaxImagesPerTask; n < 1 || n > maxImagesPerTask {
		bad("archive.max_images_per_task", "want 1 to %d, got %d", maxImagesPerTask, n)
	}
	if c.Aggregator.Key != "account" && c.Aggregator.Key != "invoke_id" {
		bad("aggregator.key", "want account or invoke_id, got %q", c.Aggregator.Key)
	}
	positive("aggregator.idle_timeout", c.Aggregator.IdleTimeout)
	switch c.Streams.Apply {
	case "", StreamsUpdate, StreamsCreate, StreamsOff:
	default:
		bad("streams.apply", "want update, create or off, got %q", c.Streams.Apply)
	}
	c.Streams.Jobs.validate("streams.jobs", minJobsAge, bad)
	c.Streams.Archive.validate("streams.archive", minArchiveAge, bad)
	if c.Streams.Quota.MaxAge != 0 {
		bad("streams.quota.max_age", "the QUOTA ledger keeps every event: must be 0 (unlimited), got %s", c.Streams.Quota.MaxAge.D())
	}
	StreamLimits{MaxBytes: c.Streams.Quota.MaxBytes}.validate("streams.quota", 0, bad)
	positive("aggregator.max_duration", c.Aggregator.MaxDuration)
	if c.Aggregator.MaxTasks < 1 {
		bad("aggregator.max_tasks", "must be at least 1")
	}
	if c.Aggregator.MaxImagesPerTask < 1 {
		bad("aggregator.max_images_per_task", "must be at least 1")
	}
	if r := c.Aggregator.MaxRecordBytes; r < minRecordBytes {
		bad("aggregator.max_record_bytes", "must be at least %d, got %d", minRecordBytes, r)
	} else if c.NATS.URL == "" && int64(r) > int64(c.NATS.Embedded.MaxPayload)-64<<10 {
		bad("aggregator.max_record_bytes", "%d does not fit in nats.embedded.max_payload %d with headers (want at most %d)",
			r, c.NATS.Embedded.MaxPayload, int64(c.NATS.Embedded.MaxPayload)-64<<10)
	}
	if _, err := zerolog.ParseLevel(c.Log.Level); err != nil || c.Log.Level == "" {
		bad("log.level", "unknown level %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "want json or console, got %q", c.Log.Format)
	}
	positive("shutdown_timeout", c.Shutdown)
	return errors.Join(errs...)
}

// Lower bounds of the stream ages (0, unlimited, is always allowed).
const (
	// minJobsAge is JOBS's duplicate window (streams/jobs.yaml): JetStream
	// refuses a max_age shorter than it, and a repeated record must still
	// be recognised.
	minJobsAge = 24 * time.Hour
	// minArchiveAge covers the lookups in ARCHIVE: the archiver's search for
	// an outcome while an image is retried (archive.url_lifetime, 5 h by
	// default) and the aggregator's for the URIs of a job's images.
	minArchiveAge = 24 * time.Hour
	// minStreamBytes is the smallest size cap: room for a few messages.
	minStreamBytes = 1 << 20
)

// validate reports limits that JetStream would refuse or that would leave
// no room for what reads the stream.
func (l StreamLimits) validate(key string, minAge time.Duration, bad func(key, format string, args ...any)) {
	if l.MaxAge < 0 || l.MaxAge > 0 && l.MaxAge.D() < minAge {
		bad(key+".max_age", "want 0 (unlimited) or at least %s, got %s", minAge, l.MaxAge.D())
	}
	if l.MaxBytes < 0 || l.MaxBytes > 0 && l.MaxBytes < minStreamBytes {
		bad(key+".max_bytes", "want 0 (unlimited) or at least %d, got %d", minStreamBytes, l.MaxBytes)
	}
}

// validateClient checks the client keys of nats: one way to authenticate at
// most, a password with its user, a client certificate with its key, and
// none of them without nats.url (the embedded server makes its own).
func (n NATS) validateClient(bad func(key, format string, args ...any)) {
	var ways []string
	if n.User != "" || n.Password != "" {
		ways = append(ways, "nats.user")
		if n.User == "" {
			bad("nats.user", "must be set with nats.password")
		}
		if n.Password == "" {
			bad("nats.password", "must be set with nats.user (or nats.password_file)")
		}
	}
	if n.CredsFile != "" {
		ways = append(ways, "nats.creds_file")
	}
	if n.NkeyFile != "" {
		ways = append(ways, "nats.nkey_file")
	}
	if len(ways) > 1 {
		bad(ways[1], "set one of nats.user, nats.creds_file and nats.nkey_file, not %s", strings.Join(ways, " and "))
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls", "set both cert_file and key_file, or neither")
	}
	if n.URL == "" {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"nats.user", n.User != ""}, {"nats.password", n.Password != ""}, {"nats.creds_file", n.CredsFile != ""},
			{"nats.nkey_file", n.NkeyFile != ""}, {"nats.tls", n.TLS != (NATSTLS{})},
		} {
			if k.set {
				bad(k.key, "applies to nats.url only: the embedded server makes its own users (<store_dir>/credentials)")
			}
		}
	}
}

// CallbackSource returns the callback source called name.
func (c Config) CallbackSource(name string) (Callback, bool) {
	for _, cb := range c.Callbacks {
		if cb.Name == name {
			return cb, true
		}
	}
	return Callback{}, false
}
