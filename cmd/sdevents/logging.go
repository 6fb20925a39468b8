package main

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/config"
)

// logTimeFormat is RFC 3339 in UTC with milliseconds, always three digits,
// so that lines of one second sort and every time has sub-second precision.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// The log's field conventions, for every logger of the process: times with
// milliseconds, durations in milliseconds (their fields end in _ms).
func init() {
	zerolog.TimeFieldFormat = logTimeFormat
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	zerolog.DurationFieldUnit = time.Millisecond
	zerolog.DurationFieldInteger = false
}

// serviceLogger is the logger of a process (name: its services joined by
// ",") or of one service in it (name: the service's): every line carries
// service=name.
func serviceLogger(cfg config.Log, name string) zerolog.Logger {
	return newLogger(cfg).With().Str("service", name).Logger()
}
