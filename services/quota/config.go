package quota

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// The defaults of a zero Config field.
const (
	DefaultPerImage         = 1
	DefaultReservationTTL   = time.Hour
	DefaultDecidedRetention = 30 * time.Minute
	DefaultSnapshotEvery    = 1000
	DefaultMaxAccounts      = 100_000
	DefaultAccountIdle      = 15 * time.Minute
	DefaultDecideDeadline   = 3 * time.Second
	DefaultRequestMaxAge    = 5 * time.Minute
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate, which New
// returns: the configuration cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid quota config")

// Config is how a quota replica prices, reserves and remembers. A zero field
// takes its default. Every replica of a deployment needs the same Config.
type Config struct {
	// PerImage is the price of one image in credits (DefaultPerImage).
	PerImage int64
	// ReservationTTL is how long an uncommitted reservation holds its
	// credits (DefaultReservationTTL).
	ReservationTTL time.Duration
	// DecidedRetention is how long the replica remembers how an invokeId
	// finished, so that a repeat gets the same answer
	// (DefaultDecidedRetention): at least ledger.MinRetention and
	// 3 × RequestMaxAge, the longest a replay of a request can arrive after
	// it.
	DecidedRetention time.Duration
	// SnapshotEvery is the number of events of an account between two
	// snapshot events (DefaultSnapshotEvery).
	SnapshotEvery int
	// MaxAccounts bounds the accounts the replica keeps in memory
	// (DefaultMaxAccounts); beyond it, the least recently used idle ones
	// are dropped.
	MaxAccounts int
	// AccountIdle drops an account from memory once unused for this long
	// (DefaultAccountIdle).
	AccountIdle time.Duration
	// DecideDeadline bounds one synchronous decision: the time the ingress
	// waits for its answer (DefaultDecideDeadline).
	DecideDeadline time.Duration
	// RequestMaxAge is how old a decide request may be; an older one is
	// answered without a decision. It is the ingress's freshness window of
	// synchronous callbacks (DefaultRequestMaxAge).
	RequestMaxAge time.Duration
	// AdminToken turns the operator API (Routes) on; empty leaves it off.
	AdminToken string
	// DrainTimeout bounds how long Run lets the work in flight finish once
	// its context ended (package drain; drain.DefaultLimit).
	DrainTimeout time.Duration
}

// Validate returns every problem of c, joined, each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if min(c.ReservationTTL, c.DecidedRetention, c.AccountIdle, c.DecideDeadline, c.RequestMaxAge, c.DrainTimeout) < 0 {
		bad("a negative duration: reservation_ttl %s, decided_retention %s, account_idle %s, decide_deadline %s, request_max_age %s, drain_timeout %s",
			c.ReservationTTL, c.DecidedRetention, c.AccountIdle, c.DecideDeadline, c.RequestMaxAge, c.DrainTimeout)
	}
	if min(c.PerImage, int64(c.SnapshotEvery), int64(c.MaxAccounts)) < 0 {
		bad("a negative count: per_image %d, snapshot_every %d, max_accounts %d", c.PerImage, c.SnapshotEvery, c.MaxAccounts)
	}
	// An invokeId decided anew sooner would repeat a decision.
	if d := c.withDefaults(); d.DecidedRetention < ledger.MinRetention || d.DecidedRetention < 3*d.RequestMaxAge {
		bad("decided_retention: must be at least %s and 3 × request_max_age (%s), got %s", ledger.MinRetention, 3*d.RequestMaxAge, d.DecidedRetention)
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	c.PerImage, c.ReservationTTL = cmp.Or(c.PerImage, DefaultPerImage), cmp.Or(c.ReservationTTL, DefaultReservationTTL)
	c.DecidedRetention, c.SnapshotEvery = cmp.Or(c.DecidedRetention, DefaultDecidedRetention), cmp.Or(c.SnapshotEvery, DefaultSnapshotEvery)
	c.MaxAccounts, c.AccountIdle = cmp.Or(c.MaxAccounts, DefaultMaxAccounts), cmp.Or(c.AccountIdle, DefaultAccountIdle)
	c.DecideDeadline, c.RequestMaxAge = cmp.Or(c.DecideDeadline, DefaultDecideDeadline), cmp.Or(c.RequestMaxAge, DefaultRequestMaxAge)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, drain.DefaultLimit)
	return c
}
