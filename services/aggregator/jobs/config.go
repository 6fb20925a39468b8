package jobs

import (
	"errors"
	"fmt"
	"time"
)

// The values of Config.Key.
const (
	KeyAccount  = "account"
	KeyInvokeID = "invoke_id"
)

// The defaults of a zero Config.
const (
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultClosedTaskMemory = 1024
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate and Step for a
// configuration that cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid aggregator config")

// Config is the grouping policy. Its zero value is the default policy. Every
// replica, and every replay that must reproduce the JOBS stream, needs the
// same Config: changing Key changes every key and job id, changing
// IdleTimeout changes when jobs close.
type Config struct {
	// Key is KeyAccount (default, also when empty) or KeyInvokeID; it applies
	// to callback sources only.
	Key string
	// IdleTimeout closes a job after this long without activity; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ClosedTaskMemory is how many closed SNS task ids each State remembers so
	// that their late messages are ignored; zero means DefaultClosedTaskMemory.
	// It bounds the size of an SNS State.
	ClosedTaskMemory int
}

// Validate returns every problem of c, joined, each wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if c.Key != "" && c.Key != KeyAccount && c.Key != KeyInvokeID {
		errs = append(errs, fmt.Errorf("%w: key: want %s or %s, got %q", ErrInvalidConfig, KeyAccount, KeyInvokeID, c.Key))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: idle_timeout: must be positive, got %s", ErrInvalidConfig, c.IdleTimeout))
	}
	if c.ClosedTaskMemory < 0 {
		errs = append(errs, fmt.Errorf("%w: closed_task_memory: must be positive, got %d", ErrInvalidConfig, c.ClosedTaskMemory))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	if c.Key == "" {
		c.Key = KeyAccount
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ClosedTaskMemory <= 0 {
		c.ClosedTaskMemory = DefaultClosedTaskMemory
	}
	return c
}
