package main

import "github.com/rs/zerolog"

// natsLogger writes the embedded nats-server's log to the process log:
// errors and warnings at their own level (a store write error among them),
// notices at debug. The server's debug and trace output stays off.
type natsLogger struct{ log zerolog.Logger }

func newNATSLogger(log zerolog.Logger) natsLogger {
	return natsLogger{log.With().Str("component", "nats-server").Logger()}
}

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

// Fatalf logs at error level: the process stays up, and the store guard
// and the readiness checks see what the server could not do.
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error().Bool("fatal", true).Msgf(format, v...)
}
