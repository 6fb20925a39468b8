package httpserver

import (
	"time"

	"github.com/labstack/echo/v4"
)

// RequestInfo collects what a handler learnt about a request, for the one log
// line and the metrics of the request. It holds ids only, never credentials.
type RequestInfo struct {
	Source   string
	Kind     string // bizType or SNS message type
	InvokeID string
	Account  string
	// Outcome is a short word: stored, duplicate, accepted, refused, ...
	Outcome string
	Err     error
}

const infoKey = "sdevents.request"

// infoContext is the context observe hands to the handlers: it carries the
// request's RequestInfo without a per-request store map.
type infoContext struct {
	echo.Context
	info RequestInfo
}

// Info returns the request's RequestInfo, for handlers to fill.
func Info(c echo.Context) *RequestInfo {
	if ic, ok := c.(*infoContext); ok {
		return &ic.info
	}
	if v, ok := c.Get(infoKey).(*RequestInfo); ok {
		return v
	}
	ri := &RequestInfo{}
	c.Set(infoKey, ri)
	return ri
}

// observe logs one line per request and records its metrics. It logs the
// matched route pattern, never the raw path or query: paths may name an
// account by its token and queries carry signatures and encrypted tokens.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		start := time.Now()
		c := &infoContext{Context: ec}
		info := &c.info
		err := next(c)
		if err != nil {
			// c.Error would hand the error handler ec, whose Info is another.
			s.e.HTTPErrorHandler(err, c)
		}
		took := time.Since(start)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		outcome := info.Outcome
		if outcome == "" {
			if status >= 400 {
				outcome = "error"
			} else {
				outcome = "ok"
			}
		}
		if route != "/metrics" && route != "/healthz" && route != "/readyz" {
			s.requests.WithLabelValues(route, info.Source, kindLabel(info.Kind), outcome, statusClass(status)).Inc()
			s.latency.WithLabelValues(route, kindLabel(info.Kind)).Observe(took.Seconds())
		}
		lvl := s.log.Info()
		if status >= 500 {
			lvl = s.log.Error()
		} else if route == "/metrics" || route == "/healthz" || route == "/readyz" {
			lvl = s.log.Debug()
		}
		lvl = lvl.Str("method", c.Request().Method).
			Str("route", route).
			Int("status", status).
			Dur("took", took).
			Int64("bytes_in", c.Request().ContentLength).
			Str("outcome", outcome)
		if info.Source != "" {
			lvl = lvl.Str("source", info.Source)
		}
		if info.Kind != "" {
			lvl = lvl.Str("kind", info.Kind)
		}
		if info.InvokeID != "" {
			lvl = lvl.Str("invoke_id", info.InvokeID)
		}
		if info.Account != "" {
			lvl = lvl.Str("account", info.Account)
		}
		if info.Err != nil {
			lvl = lvl.Str("error", info.Err.Error())
		}
		lvl.Msg("request")
		return nil
	}
}

// knownKinds bounds the kind label's cardinality: anything else is "other".
var knownKinds = map[string]bool{
	"sdImgGenControlConfig": true, "sdPreInvoke": true, "apiAccessPreInvoke": true,
	"apiAccessCommit": true, "apiAccessRollback": true, "sdTaskFinished": true, "sdJobFinished": true,
	"Notification": true, "SubscriptionConfirmation": true, "UnsubscribeConfirmation": true, "": true,
}

func kindLabel(k string) string {
	if knownKinds[k] {
		return k
	}
	return "other"
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	}
	return "2xx"
}
