package httpserver

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/pkg/sns"
)

// Sentinels that services wrap to choose an answer. Each names the reaction it
// calls for from the client.
var (
	// ErrBadRequest: the request cannot be read; do not retry it unchanged (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: the request is not proven genuine (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: genuine or not, it will never be accepted (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such route, source or resource (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts the current state (409).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: the body is over the limit (413).
	ErrTooLarge = errors.New("request body too large")
	// ErrUnavailable: transient; retry later (503).
	ErrUnavailable = errors.New("temporarily unavailable")
	// ErrBusy: the process holds as many request bytes as it may; retry
	// after the answer's Retry-After (503).
	ErrBusy = errors.New("server busy")
)

// busyRetryAfter is the Retry-After, in seconds, of an ErrBusy answer.
const busyRetryAfter = "1"

// statusTable maps sentinels, in order, to answers.
var statusTable = []struct {
	err    error
	status int
}{
	{ErrBadRequest, http.StatusBadRequest},
	{callback.ErrMalformed, http.StatusBadRequest},
	{account.ErrInvalid, http.StatusBadRequest},
	{ErrUnauthorized, http.StatusUnauthorized},
	{callback.ErrUnsigned, http.StatusUnauthorized},
	{callback.ErrSignature, http.StatusUnauthorized},
	{callback.ErrToken, http.StatusUnauthorized},
	{callback.ErrStale, http.StatusUnauthorized},
	{admintoken.ErrWrong, http.StatusUnauthorized},
	{admintoken.ErrTooManyFailures, http.StatusTooManyRequests},
	{ErrForbidden, http.StatusForbidden},
	{sns.ErrUnknownTopic, http.StatusForbidden},
	{sns.ErrUnsupportedVersion, http.StatusForbidden},
	{sns.ErrUntrustedURL, http.StatusForbidden},
	{sns.ErrCertificate, http.StatusForbidden},
	{sns.ErrStale, http.StatusForbidden},
	{sns.ErrSignature, http.StatusForbidden},
	{sns.ErrRawDelivery, http.StatusForbidden},
	{sns.ErrMalformed, http.StatusBadRequest},
	{sns.ErrUnknownType, http.StatusBadRequest},
	{sns.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{sns.ErrCertFetch, http.StatusBadGateway},
	{sns.ErrConfirm, http.StatusBadGateway},
	{quotarpc.ErrInvalid, http.StatusBadRequest},
	{quotarpc.ErrInsufficientCredits, http.StatusConflict},
	{quotarpc.ErrUnavailable, http.StatusServiceUnavailable},
	{ErrNotFound, http.StatusNotFound},
	{ErrConflict, http.StatusConflict},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrBusy, http.StatusServiceUnavailable},
}

// RegisterStatus maps another sentinel to an HTTP status. Call it at init.
func RegisterStatus(err error, status int) {
	statusTable = append(statusTable, struct {
		err    error
		status int
	}{err, status})
}

// StatusOf returns the HTTP status an error is answered with.
func StatusOf(err error) int {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	for _, m := range statusTable {
		if errors.Is(err, m.err) {
			return m.status
		}
	}
	return http.StatusInternalServerError
}

// Answer is the JSON body of every answer: the seed's shape.
type Answer struct {
	Success    bool   `json:"success"`
	ErrMessage string `json:"errMessage,omitempty"`
	Data       any    `json:"data,omitempty"`
}

// handleError is the one place errors become HTTP answers: every 4xx/5xx is
// {"success": false, "errMessage": ...}. A 500 hides its cause from the client.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := StatusOf(err)
	msg := err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if m, ok := he.Message.(string); ok {
			msg = m
		}
	}
	if status == http.StatusInternalServerError {
		msg = "internal error"
	}
	if errors.Is(err, ErrBusy) {
		c.Response().Header().Set("Retry-After", busyRetryAfter)
	}
	info := Info(c)
	if info.Err == nil {
		info.Err = err
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, Answer{Success: false, ErrMessage: msg})
}
