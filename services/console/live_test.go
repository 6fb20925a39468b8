package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/natstest"
)

func TestPattern(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"sd.quota.a_x":                       "sd.quota.*",
		"sd.archive.stored.a_x":              "sd.archive.stored.*",
		"sd.archive.failed._":                "sd.archive.failed.*",
		"sd.job.finished.a_x":                "sd.job.finished.*",
		"sd.callback.default.sdTaskFinished": "sd.callback.default.sdTaskFinished",
		"sd.sns.eks.Notification":            "sd.sns.eks.Notification",
		"sd.new.thing.here.x":                "sd.new.>",
		"other":                              "other",
	} {
		if got := Pattern(subject); got != want {
			t.Errorf("Pattern(%q) = %q, want %q", subject, got, want)
		}
	}
}

// TestLiveChartAndTail: the live view counts sd.> per subject pattern and
// streams every message as a server-sent event, headers included, secrets
// redacted.
func TestLiveChartAndTail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.run()
	c, _ := h.login()
	// Wait for the subscription.
	natstest.Eventually(t, 5*time.Second, "live subscription", func() bool {
		_ = h.nc.Publish("sd.probe.x", nil)
		_ = h.nc.Flush()
		return strings.Contains(h.get(c, "/console/live/chart").body, "sd.probe.&gt;")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/console/live/stream", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	for i := range 3 {
		msg := nats.NewMsg("sd.callback.default.sdTaskFinished")
		msg.Header.Set("sd-api-token", "ENCRYPTED-TOKEN")
		msg.Header.Set("sd-sign", "SIGNATURE")
		msg.Header.Set("sd-invoke-id", "inv-live")
		msg.Data = []byte(`{"success":true,"data":{"url":"https://img.example.com/a.png?Signature=SIGQUERY","apiToken":"TOKENFIELD"}}`)
		if i == 2 {
			msg.Subject = "sd.quota.a_live"
			msg.Data = []byte(`{"type":"granted"}`)
		}
		if err := h.nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var got []LiveEvent
	for len(got) < 3 && sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "ENCRYPTED-TOKEN") || strings.Contains(line, "SIGNATURE") ||
			strings.Contains(line, "SIGQUERY") || strings.Contains(line, "TOKENFIELD") {
			t.Fatalf("the tail shows a secret: %s", line)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev LiveEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(ev.Subject, "sd.probe") {
			continue
		}
		got = append(got, ev)
	}
	if len(got) != 3 {
		t.Fatalf("tail: %d events (%v)", len(got), sc.Err())
	}
	ev := got[0]
	headers := map[string]string{}
	for _, hl := range ev.Headers {
		headers[hl.Key] = hl.Value
	}
	if ev.Subject != "sd.callback.default.sdTaskFinished" || headers["sd-api-token"] != Redacted || headers["sd-sign"] != Redacted ||
		headers["sd-invoke-id"] != "inv-live" || !strings.Contains(ev.Body, "a.png?"+Redacted) {
		t.Fatalf("tail event: %+v", ev)
	}

	chart := h.get(c, "/console/live/chart")
	for _, want := range []string{"sd.callback.default.sdTaskFinished", "sd.quota.*", "<polyline"} {
		if !strings.Contains(chart.body, want) {
			t.Errorf("chart lacks %q:\n%s", want, chart.body)
		}
	}
	page := h.get(c, "/console/live")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="tail"`) || !strings.Contains(page.body, "<svg") {
		t.Fatalf("live page: %d", page.status)
	}

	// Closing the console ends the streams (graceful HTTP shutdown).
	h.svc.Close()
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the console closed")
	}
}

func TestLiveBucketsRollOver(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 0)
	l := newLive(func() time.Time { return at }, 1)
	for range 20 {
		l.observe(&nats.Msg{Subject: "sd.quota.a_x"})
	}
	c := l.chart()
	if len(c.Series) != 1 || c.Series[0].Total != 20 || c.Series[0].Rates[rateBuckets-1] != 2 {
		t.Fatalf("chart: %+v", c.Series)
	}
	at = at.Add(rateBucket * 3)
	l.observe(&nats.Msg{Subject: "sd.quota.a_y"})
	c = l.chart()
	if c.Series[0].Rates[rateBuckets-4] != 2 || c.Series[0].Total != 21 {
		t.Fatalf("after 3 buckets: %+v", c.Series[0])
	}
	at = at.Add(rateBucket * rateBuckets)
	if c = l.chart(); len(c.Series) != 0 {
		t.Fatalf("after the window: %+v", c.Series)
	}
	// The number of series is bounded.
	for i := range maxSeries + 10 {
		l.observe(&nats.Msg{Subject: "sd.x" + string(rune('a'+i)) + ".y"})
	}
	if len(l.series) > maxSeries+1 {
		t.Fatalf("%d series", len(l.series))
	}
}

// openStream opens /console/live/stream with the bearer token and returns
// the answer, its body open.
func (h *harness) openStream(ctx context.Context) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/console/live/stream", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// TestLiveViewersAreCapped: beyond console.live_max_clients open streams,
// one more is refused with 503 and Retry-After; once a viewer leaves, a new
// one gets in.
func TestLiveViewersAreCapped(t *testing.T) {
	t.Parallel()
	const max = 3
	h := newHarnessWith(t, func(c *Config) { c.LiveMaxClients = max })
	h.run()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []context.CancelFunc
	for i := range max {
		sctx, scancel := context.WithCancel(ctx)
		open = append(open, scancel)
		resp := h.openStream(sctx)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("viewer %d of %d: %d", i+1, max, resp.StatusCode)
		}
	}
	extra := h.openStream(ctx)
	defer extra.Body.Close()
	if extra.StatusCode != http.StatusServiceUnavailable || extra.Header.Get("Retry-After") == "" {
		t.Fatalf("viewer %d: %d, Retry-After %q; want 503 with Retry-After", max+1, extra.StatusCode, extra.Header.Get("Retry-After"))
	}
	body, _ := io.ReadAll(extra.Body)
	if !strings.Contains(string(body), "too many live views") {
		t.Errorf("the refusal does not say why: %s", body)
	}
	open[0]()
	natstest.Eventually(t, 10*time.Second, "a viewer's place freed", func() bool { return h.svc.live.viewers() < max })
	again := h.openStream(ctx)
	defer again.Body.Close()
	if again.StatusCode != http.StatusOK {
		t.Fatalf("after a viewer left: %d", again.StatusCode)
	}
}

// TestLiveViewThatStopsReadingIsDropped: a client that opens the stream and
// stops reading is disconnected once an event cannot be written within
// console.live_write_timeout, instead of holding its handler forever.
func TestLiveViewThatStopsReadingIsDropped(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *Config) { c.LiveWriteTimeout = 500 * time.Millisecond })
	h.run()
	natstest.Eventually(t, 5*time.Second, "live subscription", func() bool {
		_ = h.nc.Publish("sd.probe.x", nil)
		_ = h.nc.Flush()
		return h.svc.live.chart().Series != nil
	})
	// A small receive buffer, so that the server's writes block sooner.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /console/live/stream HTTP/1.1\r\nHost: console.test\r\nAuthorization: Bearer %s\r\n\r\n", adminToken); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the viewer subscribed", func() bool { return h.svc.live.viewers() == 1 })
	// Events that escape to six bytes a character: 12 KB on the wire each.
	body := []byte(`{"note":"` + strings.Repeat("<", tailBodySize) + `"}`)
	natstest.Eventually(t, 60*time.Second, "the viewer that stopped reading dropped", func() bool {
		for range 50 {
			_ = h.nc.Publish("sd.callback.default.sdTaskFinished", body)
		}
		_ = h.nc.Flush()
		return h.svc.live.viewers() == 0
	})
	// The connection is closed: reading what was sent ends.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the dropped viewer's connection: %v", err)
	}
}
