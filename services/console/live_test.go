package console

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
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
	l := newLive(func() time.Time { return at })
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
