package streams

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits are the retention limits of a stream that the configuration sets
// (streams.jobs, streams.archive, streams.quota); zero means unlimited.
type Limits struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// WithLimits returns files with the limits of the named streams replaced by
// limits[name]; files itself is not changed. A name that is no stream of
// files, a negative limit, a max_age shorter than the stream's duplicate
// window (JetStream refuses it) and any limit on a lossless stream that
// would remove a message are errors, all reported at once.
func WithLimits(files []File, limits map[string]Limits) ([]File, error) {
	out := make([]File, len(files))
	copy(out, files)
	var errs []error
	for name, l := range limits {
		i := indexOfStream(out, name)
		if i < 0 {
			errs = append(errs, fmt.Errorf("limits of stream %s: no such stream", name))
			continue
		}
		if l.MaxAge < 0 || l.MaxBytes < 0 {
			errs = append(errs, fmt.Errorf("limits of stream %s: must not be negative", name))
			continue
		}
		s := *out[i].Stream
		s.MaxAge, s.MaxBytes = Duration(l.MaxAge), l.MaxBytes
		f := out[i]
		f.Stream = &s
		if err := f.validate(); err != nil {
			errs = append(errs, fmt.Errorf("limits of stream %s: %w", name, err))
			continue
		}
		out[i] = f
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	return out, nil
}

// Definitions loads the embedded files and applies limits (WithLimits).
func Definitions(limits map[string]Limits) ([]File, error) {
	files, err := Load(Files())
	if err != nil {
		return nil, err
	}
	return WithLimits(files, limits)
}

func indexOfStream(files []File, name string) int {
	for i, f := range files {
		if f.Stream != nil && f.Stream.Name == name {
			return i
		}
	}
	return -1
}

// Lossy lists the settings of cfg that can remove a message from the
// stream without a consumer or an operator asking for it: an age, count or
// per-subject limit, a size limit that discards old messages, a retention
// other than limits, per-message TTLs. It is empty for a configuration under
// which every message stays until it is deleted explicitly.
func Lossy(cfg jetstream.StreamConfig) []string {
	var out []string
	if cfg.MaxAge > 0 {
		out = append(out, "max_age is "+cfg.MaxAge.String())
	}
	if cfg.MaxMsgs > 0 {
		out = append(out, fmt.Sprintf("max_msgs is %d", cfg.MaxMsgs))
	}
	if cfg.MaxMsgsPerSubject > 0 {
		out = append(out, fmt.Sprintf("max_msgs_per_subject is %d", cfg.MaxMsgsPerSubject))
	}
	if cfg.MaxBytes > 0 && cfg.Discard != jetstream.DiscardNew {
		out = append(out, fmt.Sprintf("max_bytes is %d with discard old", cfg.MaxBytes))
	}
	if cfg.Retention != jetstream.LimitsPolicy {
		out = append(out, "retention is "+cfg.Retention.String())
	}
	if cfg.AllowMsgTTL {
		out = append(out, "allow_msg_ttl is on")
	}
	return out
}
