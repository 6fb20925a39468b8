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
	DefaultMaxTasks         = 256
	DefaultMaxDuration      = time.Hour
	DefaultMaxImagesPerTask = 64
	DefaultMaxRecordBytes   = 1 << 20
)

// MinRecordBytes is the smallest Config.MaxRecordBytes: room for a task with
// the longest identifiers the parsers let through.
const MinRecordBytes = 64 << 10

// ErrInvalidConfig is wrapped by the errors of Config.Validate and Step for a
// configuration that cannot work. Callers refuse to start.
var ErrInvalidConfig = errors.New("invalid aggregator config")

// Config is the grouping policy. Its zero value is the default policy. Every
// replica, and every replay that must reproduce the JOBS stream, needs the
// same Config: changing Key changes every key and job id, changing the other
// fields changes when jobs close and what their records hold.
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
	// MaxTasks closes a job when it holds this many tasks (ClosedByTaskLimit);
	// zero means DefaultMaxTasks. Pre-invokes, which only add an invokeId,
	// count half: a job also closes at 2 × MaxTasks observations.
	MaxTasks int
	// MaxDuration closes a job this long after it opened, however active it
	// is (ClosedByMaxDuration); zero means DefaultMaxDuration.
	MaxDuration time.Duration
	// MaxImagesPerTask keeps the first this many images of a task (and of a
	// job event); the others are counted in ImagesDropped. Zero means
	// DefaultMaxImagesPerTask.
	MaxImagesPerTask int
	// MaxRecordBytes bounds the encoded size of a Record without its archive
	// URIs: a task that would take a job beyond it closes the job first
	// (ClosedBySizeLimit), and the images of a task (or job event) that
	// alone would not fit are dropped from the end. Zero means
	// DefaultMaxRecordBytes; otherwise at least MinRecordBytes.
	MaxRecordBytes int
}

// Validate returns every problem of c, joined, each wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Key != "" && c.Key != KeyAccount && c.Key != KeyInvokeID {
		bad("key: want %s or %s, got %q", KeyAccount, KeyInvokeID, c.Key)
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout: must be positive, got %s", c.IdleTimeout)
	}
	if c.ClosedTaskMemory < 0 {
		bad("closed_task_memory: must be positive, got %d", c.ClosedTaskMemory)
	}
	if c.MaxTasks < 0 {
		bad("max_tasks: must be positive, got %d", c.MaxTasks)
	}
	if c.MaxDuration < 0 {
		bad("max_duration: must be positive, got %s", c.MaxDuration)
	}
	if c.MaxImagesPerTask < 0 {
		bad("max_images_per_task: must be positive, got %d", c.MaxImagesPerTask)
	}
	if c.MaxRecordBytes != 0 && c.MaxRecordBytes < MinRecordBytes {
		bad("max_record_bytes: must be at least %d, got %d", MinRecordBytes, c.MaxRecordBytes)
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
	if c.MaxTasks <= 0 {
		c.MaxTasks = DefaultMaxTasks
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.MaxImagesPerTask <= 0 {
		c.MaxImagesPerTask = DefaultMaxImagesPerTask
	}
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	return c
}
