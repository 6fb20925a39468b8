package httpserver_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/sns"
)

// TestStatusOf: the sentinels of the protocol packages and of this one,
// wrapped as callers wrap them, are answered with the status they name.
func TestStatusOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"bad request", fmt.Errorf("read: %w", httpserver.ErrBadRequest), http.StatusBadRequest},
		{"callback signature", fmt.Errorf("verify: %w", callback.ErrSignature), http.StatusUnauthorized},
		{"wrong admin token", fmt.Errorf("admin: %w", admintoken.ErrWrong), http.StatusUnauthorized},
		{"admin guesser braked", fmt.Errorf("%w: try again in 5 s", admintoken.ErrTooManyFailures), http.StatusTooManyRequests},
		{"sns certificate", fmt.Errorf("verify: %w", sns.ErrCertificate), http.StatusForbidden},
		{"busy", httpserver.ErrBusy, http.StatusServiceUnavailable},
		{"echo error", echo.NewHTTPError(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed},
		{"anything else", errors.New("boom"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := httpserver.StatusOf(tc.err); got != tc.want {
				t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
