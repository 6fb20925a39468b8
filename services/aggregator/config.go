package aggregator

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// DefaultCreditLookback is Config.CreditLookback when zero: the quota's
// default reservation TTL.
const DefaultCreditLookback = time.Hour

// creditLookbackMargin widens the search for a job's credits beyond
// Config.CreditLookback, for the clocks of the servers that stamp the
// events.
const creditLookbackMargin = time.Minute

// Config is how the aggregator groups task results into jobs and where it
// looks for their credits. A zero field takes its default.
type Config struct {
	// Jobs is the grouping policy. Every replica, and every replay that
	// must reproduce JOBS, needs the same.
	Jobs jobs.Config
	// CreditLookback is how long before a job's start its reservation may
	// have been made: the quota's reservation TTL
	// (DefaultCreditLookback). A job's credits are looked for in QUOTA
	// that far back, and a minute more.
	CreditLookback time.Duration
	// DrainTimeout bounds how long Run lets the messages it holds be
	// handled once its context ended (package drain; drain.DefaultLimit).
	DrainTimeout time.Duration
}

// Validate returns every problem of c, joined, each wrapping
// jobs.ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if err := c.Jobs.Validate(); err != nil {
		errs = append(errs, err)
	}
	if min(c.CreditLookback, c.DrainTimeout) < 0 {
		errs = append(errs, fmt.Errorf("%w: a negative duration: credit_lookback %s, drain_timeout %s",
			jobs.ErrInvalidConfig, c.CreditLookback, c.DrainTimeout))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of c (jobs fills its own).
func (c Config) withDefaults() Config {
	c.CreditLookback = cmp.Or(c.CreditLookback, DefaultCreditLookback)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, drain.DefaultLimit)
	return c
}
