package simulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// newClient returns the HTTP client of a run: no cookies, no redirects
// followed, enough idle connections for every simulated user.
func newClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // loopback only: never through a proxy
	t.MaxIdleConns = conns + 16
	t.MaxIdleConnsPerHost = conns + 16
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// result is the outcome of one HTTP attempt.
type result struct {
	status int // 0 on a transport error
	body   []byte
	err    error
	lat    time.Duration
}

// do sends req under timeout and reads at most 1 MiB of the answer.
func do(ctx context.Context, client *http.Client, req *http.Request, timeout time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return result{err: err, lat: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return result{status: resp.StatusCode, body: body, err: err, lat: time.Since(start)}
}

// ok reports a 2xx answer read completely.
func (r result) ok() bool { return r.err == nil && r.status >= 200 && r.status <= 299 }

// answer is the seed's JSON answer to a callback.
type answer struct {
	Success    bool   `json:"success"`
	ErrMessage string `json:"errMessage"`
	Data       struct {
		Message  string `json:"message"`
		Disabled bool   `json:"disabled"`
	} `json:"data"`
}

// classify maps an attempt to its Outcome; sync attempts answered 2xx with
// success false (or disabled) are Denied.
func (r result) classify(sync bool) (Outcome, answer) {
	var a answer
	switch {
	case r.err != nil || r.status == 0 || r.status >= 500:
		return Failed, a
	case r.status >= 400:
		return Refused, a
	case r.status < 200 || r.status > 299:
		return Failed, a
	}
	if sync {
		if json.Unmarshal(r.body, &a) != nil || !a.Success || a.Data.Disabled {
			return Denied, a
		}
	}
	return Accepted, a
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
