package archiver

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/pkg/fetch"
)

// The defaults of a zero Config field.
const (
	DefaultWorkers          = 8
	DefaultMaxImagesPerTask = 64
	DefaultURLLifetime      = 5 * time.Hour
)

// MaxImagesPerTaskLimit bounds Config.MaxImagesPerTask: the images of one
// task result are held by one replica at a time.
const MaxImagesPerTaskLimit = 10000

// ErrInvalidConfig is wrapped by the errors of Config.Validate, which New
// returns: the configuration cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid archiver config")

// Config is where the archiver reads images from and how it works on them.
// A zero field takes its default. The sink is not here: New is handed it.
type Config struct {
	// Workers is the number of images archived in parallel per replica
	// (DefaultWorkers).
	Workers int
	// MaxImagesPerTask caps the distinct images archived from one task
	// result; the rest are recorded as dropped (DefaultMaxImagesPerTask, at
	// most MaxImagesPerTaskLimit).
	MaxImagesPerTask int
	// URLLifetime is how long after its event a callback image URL may
	// still be valid; transient failures are retried until then
	// (DefaultURLLifetime).
	URLLifetime time.Duration
	// AllowHosts are the hosts (or host:port pairs) fetched whatever
	// address they resolve to; every other host must resolve to public
	// addresses only (fetch.HTTPConfig.AllowHosts).
	AllowHosts []string
	// MaxBytes caps one image (fetch.DefaultMaxBytes).
	MaxBytes int64
	// Limits bound each fetch as a whole: its deadline and the lowest rate
	// a source must send at (fetch.Limits: zero fields take fetch's
	// defaults, a negative MinRate means no minimum).
	Limits fetch.Limits
	// SourceS3 is the endpoint s3:// image URIs are read from; without an
	// Endpoint they are not fetched. Its MaxBytes and Limits are the ones
	// above.
	SourceS3 fetch.S3Config
	// DrainTimeout bounds how long Run lets the images in flight finish
	// once its context ended (package drain; drain.DefaultLimit).
	DrainTimeout time.Duration
}

// Validate returns every problem of c, joined, each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if min(c.URLLifetime, c.Limits.Timeout, c.Limits.RateWindow, c.DrainTimeout) < 0 {
		bad("a negative duration: url_lifetime %s, fetch_timeout %s, min_rate_window %s, drain_timeout %s",
			c.URLLifetime, c.Limits.Timeout, c.Limits.RateWindow, c.DrainTimeout)
	}
	if min(int64(c.Workers), c.MaxBytes) < 0 {
		bad("a negative count: workers %d, max_bytes %d", c.Workers, c.MaxBytes)
	}
	if n := c.MaxImagesPerTask; n < 0 || n > MaxImagesPerTaskLimit {
		bad("max_images_per_task: want 1 to %d, got %d", MaxImagesPerTaskLimit, n)
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of c (fetch fills its own).
func (c Config) withDefaults() Config {
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.MaxImagesPerTask = cmp.Or(c.MaxImagesPerTask, DefaultMaxImagesPerTask)
	c.URLLifetime = cmp.Or(c.URLLifetime, DefaultURLLifetime)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, drain.DefaultLimit)
	return c
}
