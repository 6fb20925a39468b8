package console

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// The defaults of a zero Config field.
const (
	DefaultLiveMaxClients   = 64
	DefaultLiveWriteTimeout = 10 * time.Second
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate, which New
// returns: the configuration cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid console config")

// Config is who may open the console and how many live views it serves. A
// zero field takes its default. The archive sink is not here: New is handed
// it.
type Config struct {
	// AdminToken opens the console; empty turns it off (New fails with
	// ErrDisabled).
	AdminToken string
	// LiveMaxClients bounds the live views (server-sent event streams)
	// open at once; one more is answered 503 with Retry-After
	// (DefaultLiveMaxClients).
	LiveMaxClients int
	// LiveWriteTimeout bounds the writing of one event to a live view: a
	// viewer that does not read it within this time is disconnected
	// (DefaultLiveWriteTimeout).
	LiveWriteTimeout time.Duration
}

// Validate returns every problem of c, joined, each wrapping
// ErrInvalidConfig. An empty AdminToken is no problem: it turns the console
// off.
func (c Config) Validate() error {
	if c.LiveMaxClients < 0 || c.LiveWriteTimeout < 0 {
		return fmt.Errorf("%w: live_max_clients %d and live_write_timeout %s must not be negative",
			ErrInvalidConfig, c.LiveMaxClients, c.LiveWriteTimeout)
	}
	return nil
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	c.LiveMaxClients = cmp.Or(c.LiveMaxClients, DefaultLiveMaxClients)
	c.LiveWriteTimeout = cmp.Or(c.LiveWriteTimeout, DefaultLiveWriteTimeout)
	return c
}
