package ingress

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// TestAnswerStoredMatchesJSON: the precomputed answer is byte for byte what
// c.JSON writes, headers included, and c.JSON still answers when it would
// write something else (a "pretty" query, debug mode).
func TestAnswerStoredMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, target string
		debug        bool
	}{
		{"plain", "/v1/callbacks?sign=s", false},
		{"pretty", "/v1/callbacks?sign=s&pretty", false},
		{"debug", "/v1/callbacks?sign=s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			answer := func(h func(echo.Context) error) *httptest.ResponseRecorder {
				e := echo.New()
				e.Debug = tc.debug
				w := httptest.NewRecorder()
				c := e.NewContext(httptest.NewRequest(http.MethodPost, tc.target, nil), w)
				if err := h(c); err != nil {
					t.Fatal(err)
				}
				return w
			}
			got := answer(answerStored)
			want := answer(func(c echo.Context) error { return c.JSON(http.StatusOK, quotarpc.Answer{Success: true}) })
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Fatalf("answerStored: %d %q, c.JSON: %d %q", got.Code, got.Body, want.Code, want.Body)
			}
			if g, w := got.Header(), want.Header(); len(g) != len(w) || g.Get("Content-Type") != w.Get("Content-Type") {
				t.Fatalf("headers: %v, c.JSON: %v", g, w)
			}
		})
	}
}

// TestDedupKeyStable: keys are the ones stored so far (retries of events
// stored by earlier versions must still be found).
func TestDedupKeyStable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		source, bizType, invokeID, body, want string
	}{
		{"default", "sdTaskFinished", "i-1", `{"success":true}`, "cb-9378f1fa2a21d348e30672b6f495b454"},
		{"", "", "", "", "cb-66687aadf862bd776c8fc18b8e9f8e20"},
		{"a", "bc", "", "d", "cb-3672dd546b566d09d47f9649608a983a"},
	} {
		if got := dedupKey(tc.source, tc.bizType, tc.invokeID, []byte(tc.body)); got != tc.want {
			t.Errorf("dedupKey(%q, %q, %q, %q) = %s, want %s", tc.source, tc.bizType, tc.invokeID, tc.body, got, tc.want)
		}
	}
}
