package ingress

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/pkg/sns"
)

// The defaults of a zero Config field.
const (
	DefaultSyncSkew       = 5 * time.Minute
	DefaultAsyncMaxAge    = 6 * time.Hour
	DefaultSyncDeadline   = 3 * time.Second
	DefaultPublishTimeout = 2 * time.Second
	DefaultDedupHorizon   = 7 * time.Hour
	DefaultSNSMaxAge      = 2 * time.Hour
	DefaultMaxBody        = 1 << 20
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate, which New
// returns: the configuration cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid ingress config")

// Config is what the ingress accepts and how long it waits. A zero field
// takes its default.
type Config struct {
	// Callbacks are the sources of signed callbacks; the first one also
	// answers /v1/callbacks.
	Callbacks []CallbackSource
	// SNS are the sources of SNS HTTP(S) deliveries.
	SNS []SNSSource
	// SyncSkew is how far a synchronous callback's timestamp may be from
	// now (DefaultSyncSkew).
	SyncSkew time.Duration
	// AsyncMaxAge is how old an asynchronous callback may be: it covers the
	// platform's retry schedule (DefaultAsyncMaxAge).
	AsyncMaxAge time.Duration
	// SyncDeadline bounds the whole handling of a synchronous callback
	// (DefaultSyncDeadline).
	SyncDeadline time.Duration
	// PublishTimeout bounds one JetStream publish (DefaultPublishTimeout).
	PublishTimeout time.Duration
	// FailOpen answers success when the quota service cannot decide in
	// time.
	FailOpen bool
	// DedupHorizon is how long a stored asynchronous callback or SNS
	// message is remembered for de-duplication (DefaultDedupHorizon).
	DedupHorizon time.Duration
	// SNSMaxAge is how old an SNS message's Timestamp may be
	// (DefaultSNSMaxAge). With the sns.MaxClockSkew a Timestamp may be
	// ahead, it must fit in DedupHorizon, so that every message accepted
	// again is one still remembered.
	SNSMaxAge time.Duration
	// MaxBody is the largest request body read, in bytes (DefaultMaxBody).
	MaxBody int64
	// DrainTimeout bounds how long Run lets the work in flight finish once
	// its context ended (package drain; drain.DefaultLimit).
	DrainTimeout time.Duration
}

// CallbackSource is one source of signed callbacks: its name, a subject
// token (sd.callback.<name>.<bizType>), and its key pairs.
type CallbackSource struct {
	Name string
	Keys []callback.Key
}

// SNSSource is one source of SNS deliveries: its name, a subject token
// (sd.sns.<name>.<Type>), the topics it accepts, whether it confirms
// subscriptions, and the certificate hosts and CA beyond AWS's (a local SNS
// of the tests or the simulator).
type SNSSource struct {
	Name        string
	TopicARNs   []string
	AutoConfirm bool
	CertHosts   []string
	CAFile      string
}

// Validate returns every problem of c, joined, each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if min(c.SyncSkew, c.AsyncMaxAge, c.SyncDeadline, c.PublishTimeout, c.DedupHorizon, c.SNSMaxAge, c.DrainTimeout) < 0 {
		bad("a negative duration: sync_skew %s, async_max_age %s, sync_deadline %s, publish_timeout %s, dedup_horizon %s, sns_max_age %s, drain_timeout %s",
			c.SyncSkew, c.AsyncMaxAge, c.SyncDeadline, c.PublishTimeout, c.DedupHorizon, c.SNSMaxAge, c.DrainTimeout)
	}
	if c.MaxBody < 0 {
		bad("max_body: must not be negative, got %d", c.MaxBody)
	}
	d := c.withDefaults()
	if d.SNSMaxAge+sns.MaxClockSkew > d.DedupHorizon {
		bad("sns_max_age %s plus the %s an SNS Timestamp may be ahead exceeds dedup_horizon %s", d.SNSMaxAge, sns.MaxClockSkew, d.DedupHorizon)
	}
	// A source's name is a subject token: set, and one source's only.
	names := map[string]bool{}
	named := func(kind, name string) {
		if name == "" || names[kind+" "+name] {
			bad("%s source %q: a name must be set and used once", kind, name)
		}
		names[kind+" "+name] = true
	}
	for _, cb := range c.Callbacks {
		named("callback", cb.Name)
		if len(cb.Keys) == 0 {
			bad("callback source %q: no key pair", cb.Name)
		}
		for _, k := range cb.Keys {
			if k.AK == "" || k.SK == "" {
				bad("callback source %q: a key pair without its access key or secret", cb.Name)
			}
		}
	}
	for _, s := range c.SNS {
		named("sns", s.Name)
		if len(s.TopicARNs) == 0 {
			bad("sns source %q: no topic ARN", s.Name)
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	c.SyncSkew, c.AsyncMaxAge = cmp.Or(c.SyncSkew, DefaultSyncSkew), cmp.Or(c.AsyncMaxAge, DefaultAsyncMaxAge)
	c.SyncDeadline, c.PublishTimeout = cmp.Or(c.SyncDeadline, DefaultSyncDeadline), cmp.Or(c.PublishTimeout, DefaultPublishTimeout)
	c.DedupHorizon, c.SNSMaxAge = cmp.Or(c.DedupHorizon, DefaultDedupHorizon), cmp.Or(c.SNSMaxAge, DefaultSNSMaxAge)
	c.MaxBody, c.DrainTimeout = cmp.Or(c.MaxBody, DefaultMaxBody), cmp.Or(c.DrainTimeout, drain.DefaultLimit)
	return c
}
