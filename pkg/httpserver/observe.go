package httpserver

import (
	"crypto/rand"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderRequestID carries a request's id: kept from the request when it is
// a valid one (ValidRequestID), made by the server otherwise, and always
// sent back in the answer.
const HeaderRequestID = echo.HeaderXRequestID

// MaxRequestIDLen bounds an incoming request id.
const MaxRequestIDLen = 128

// ValidRequestID reports whether id may be kept as the request's id: 1 to
// MaxRequestIDLen printable ASCII characters without spaces ('!' to '~'),
// so that it cannot break a header or a log line.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := range len(id) {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}

// requestID returns the incoming id when it is valid, else a new random
// one (26 base32 characters, 130 bits).
func requestID(incoming string) string {
	if ValidRequestID(incoming) {
		return incoming
	}
	return rand.Text()
}

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
	// RequestID is the request's id (HeaderRequestID), set by the server.
	RequestID string
	// EventID is the ce-id of the event the request was stored as, and
	// Seq its stream sequence (for a duplicate, the one stored first);
	// empty and 0 when nothing was stored.
	EventID string
	Seq     uint64
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

// observe gives each request its id (HeaderRequestID, in the answer too),
// logs one line per request and records its metrics. It logs the matched
// route pattern, never the raw path or query: paths may name an account by
// its token and queries carry signatures and encrypted tokens.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		start := time.Now()
		c := &infoContext{Context: ec}
		info := &c.info
		info.RequestID = requestID(c.Request().Header.Get(HeaderRequestID))
		c.Response().Header().Set(HeaderRequestID, info.RequestID)
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
			Float64("took_ms", float64(took.Microseconds())/1000).
			Int64("bytes_in", c.Request().ContentLength).
			Str("outcome", outcome).
			Str("request_id", info.RequestID)
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
		if info.EventID != "" {
			lvl = lvl.Str("ce_id", info.EventID)
		}
		if info.Seq != 0 {
			lvl = lvl.Uint64("seq", info.Seq)
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
