package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one prepared HTTP request.
type Request struct {
	URL  string
	Body []byte
}

// Result summarises one load run.
type Result struct {
	Requests       int
	Errors         int
	Elapsed        time.Duration
	P50, P99, P999 time.Duration
}

// PerSecond is the throughput of successful requests.
func (r Result) PerSecond() float64 {
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d req in %s: %.0f/s, p50 %s, p99 %s, p99.9 %s, %d errors",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSecond(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.P999.Round(time.Microsecond), r.Errors)
}

// Run POSTs every request once over conns keep-alive connections, as fast as
// the server answers, and measures the latency of each. An answer that is not
// a 2xx with "success":true is an error.
func Run(ctx context.Context, reqs []Request, conns int) Result {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, len(reqs))
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, reqs[i].URL, bytes.NewReader(reqs[i].Body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					err = answered(resp)
				}
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return summarise(lat, int(errs.Load()), time.Since(start))
}

// answered reads resp's body and returns an error unless the status is 2xx
// and the body says "success":true (a refusal in 200, such as a quota answer
// "busy", is no success either).
func answered(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode >= 300:
		return fmt.Errorf("status %d", resp.StatusCode)
	case !bytes.Contains(body, []byte(`"success":true`)):
		return fmt.Errorf("refused: %.200s", body)
	}
	return nil
}

// summarise sorts the latencies lat and returns the result of a run.
func summarise(lat []time.Duration, errs int, elapsed time.Duration) Result {
	slices.Sort(lat)
	return Result{Requests: len(lat), Errors: errs, Elapsed: elapsed,
		P50: lat[len(lat)*50/100], P99: lat[len(lat)*99/100], P999: lat[len(lat)*999/1000]}
}

// median returns the result with the median throughput.
func median(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int {
		switch {
		case a.PerSecond() < b.PerSecond():
			return -1
		case a.PerSecond() > b.PerSecond():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// RunRate POSTs every request once at a fixed rate (open loop) over at most
// conns connections: each is sent at its due time whether or not earlier ones
// were answered, and its latency is measured from that due time, so a server
// that falls behind is charged for the queueing it causes (no coordinated
// omission). The first warm requests are sent the same way but not counted:
// they open the connections and warm the server.
func RunRate(ctx context.Context, reqs []Request, rate, conns, warm int) Result {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, len(reqs))
	lat := make([]time.Duration, len(reqs))
	var errs atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, reqs[j.i].URL, bytes.NewReader(reqs[j.i].Body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					err = answered(resp)
				}
				lat[j.i] = time.Since(j.due)
				if err != nil && j.i >= warm {
					errs.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range reqs {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		jobs <- job{i, due}
	}
	close(jobs)
	wg.Wait()
	measured := time.Since(start) - time.Duration(warm)*interval
	return summarise(lat[warm:], int(errs.Load()), measured)
}

// RunFor POSTs next(0), next(1), … over conns keep-alive connections, as
// fast as the server answers, until d has passed (closed loop), and measures
// the latency of each. next is called concurrently and builds each request
// when it is sent, so that a long run needs no prepared requests. A non-2xx
// answer is an error. It blocks for d plus the last answers.
func RunFor(ctx context.Context, next func(i int) Request, conns int, d time.Duration) Result {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lats := make([][]time.Duration, conns)
	var seq, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			for time.Now().Before(end) && ctx.Err() == nil {
				r := next(int(seq.Add(1) - 1))
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs.Add(1)
				}
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	lat := slices.Concat(lats...)
	if len(lat) == 0 {
		return Result{Elapsed: elapsed}
	}
	slices.Sort(lat)
	return Result{Requests: len(lat), Errors: int(errs.Load()), Elapsed: elapsed,
		P50: lat[len(lat)*50/100], P99: lat[len(lat)*99/100]}
}
