package main

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// natsLogger writes the embedded nats-server's log to the process log:
// errors and warnings at their own level (a store write error among them),
// notices at debug. The server's debug and trace output stays off. It
// counts the permission violations the server reports: a client that
// published or subscribed where its user may not.
type natsLogger struct {
	log        zerolog.Logger
	violations prometheus.Counter
}

func newNATSLogger(log zerolog.Logger, reg prometheus.Registerer) natsLogger {
	v := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sdevents_nats_permission_violations_total",
		Help: "Publications and subscriptions the embedded nats-server refused because the client's user may not make them.",
	})
	reg.MustRegister(v)
	return natsLogger{log: log.With().Str("component", "nats-server").Logger(), violations: v}
}

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

// plaintextPasswords is the server's warning about passwords in its
// configuration: meant for a configuration file, it is no news for the
// embedded server, whose users' passwords the process made and keeps in
// files of mode 0600 (a bcrypt hash would only cost every connection).
const plaintextPasswords = "Plaintext passwords detected"

// Warnf logs at warn level, but the plaintext-passwords notice at debug.
func (l natsLogger) Warnf(format string, v ...any) {
	if strings.HasPrefix(format, plaintextPasswords) {
		l.log.Debug().Msgf(format, v...)
		return
	}
	l.log.Warn().Msgf(format, v...)
}

// Errorf logs at error level; a permission violation ("Publish Violation",
// "Subscription Violation") is counted too.
func (l natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, " Violation - ") {
		l.violations.Inc()
	}
	l.log.Error().Msg(msg)
}

// Fatalf logs at error level: the process stays up, and the store guard
// and the readiness checks see what the server could not do.
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error().Bool("fatal", true).Msgf(format, v...)
}
