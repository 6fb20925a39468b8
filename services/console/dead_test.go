package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/deadletter"
)

// TestDeadLetters: the dead letters page lists the records of DEAD newest
// first, 25 to a page with a link to the older ones, optionally of one
// consumer; it shows each record's consumer, message (stream and
// sequence), subject, deliveries, reason and times, redacts the query of a
// URL in a reason, and never shows anything a record carries beyond its
// fields. Operators only; each page is one stream-info request and a
// batched direct get.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec, err := deadletter.NewRecorder(h.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		consumer := "archiver"
		if i%3 == 0 {
			consumer = "quota-expiry"
		}
		r := deadletter.Record{Consumer: consumer, Stream: "INGRESS", Sequence: uint64(1000 + i),
			Subject: "sd.callback.default.sdTaskFinished", Deliveries: 10, StoredAt: at,
			Reason: fmt.Sprintf("failed 10 times: reason-%d", i), At: at.Add(time.Duration(i) * time.Minute)}
		if i == 29 {
			r.Reason = `failed 10 times: Get "https://img.example.com/x.png?X-Amz-Signature=SECRET": timeout`
		}
		if _, err := rec.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A record carrying more than the contract's fields: only those show.
	forged := nats.NewMsg("sd.dead.aggregator")
	forged.Data = []byte(`{"consumer":"aggregator","stream":"INGRESS","sequence":7,"subject":"sd.sns.eks.Notification",` +
		`"deliveries":3,"reason":"bad","data":"PAYLOAD-SECRET","headers":{"sd-api-token":"TOKEN-SECRET"}}`)
	if _, err := h.js.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	// A record that is not JSON.
	if _, err := h.js.Publish(ctx, "sd.dead.archiver", []byte("not json PAYLOAD-SECRET")); err != nil {
		t.Fatal(err)
	}

	if a := h.get(h.client(), "/console/dead"); a.status != http.StatusUnauthorized {
		t.Fatalf("without a session: %d", a.status)
	}
	c, _ := h.login()
	h.reads.reset()
	page := h.get(c, "/console/dead")
	if page.status != http.StatusOK {
		t.Fatalf("dead letters: %d\n%s", page.status, page.body)
	}
	if reqs := h.reads.requests.Load(); reqs > 3 {
		t.Errorf("a page took %d requests", reqs)
	}
	if n := strings.Count(page.body, `class="dead"`); n != 25 {
		t.Fatalf("%d rows, want 25", n)
	}
	for _, want := range []string{
		"unreadable record", "sd.sns.eks.Notification", "INGRESS #1029", "reason-28", "2026-03-01 10:28:00Z",
		"[redacted]", `<td class="num">10</td>`, `href="/console/dead?consumer=quota-expiry"`, `id="older"`,
		`class="active">Dead letters</a>`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, never := range []string{"SECRET", "reason-5<"} {
		if strings.Contains(page.body, never) {
			t.Errorf("page shows %q", never)
		}
	}
	if i, j := strings.Index(page.body, "reason-28"), strings.Index(page.body, "reason-27"); i < 0 || j < 0 || i > j {
		t.Error("not newest first")
	}
	older := h.get(c, between(page.body, `<a href="`, `" id="older"`))
	if older.status != http.StatusOK || !strings.Contains(older.body, "reason-0") || strings.Contains(older.body, "reason-28") {
		t.Fatalf("older page: %d\n%s", older.status, older.body)
	}

	one := h.get(c, "/console/dead?consumer=quota-expiry")
	if one.status != http.StatusOK || strings.Count(one.body, `class="dead"`) != 10 || strings.Contains(one.body, "reason-1<") {
		t.Fatalf("one consumer: %d, %d rows", one.status, strings.Count(one.body, `class="dead"`))
	}
	for _, path := range []string{"/console/dead?consumer=a.b", "/console/dead?consumer=" + strings.Repeat("x", 65), "/console/dead?before=x"} {
		if a := h.get(c, path); a.status != http.StatusBadRequest {
			t.Errorf("%s: %d", path, a.status)
		}
	}
}

// between returns the text of s between the first from and the next to,
// with &amp; read back as &.
func between(s, from, to string) string {
	i := strings.Index(s, to)
	if i < 0 {
		return ""
	}
	j := strings.LastIndex(s[:i], from)
	if j < 0 {
		return ""
	}
	return strings.ReplaceAll(s[j+len(from):i], "&amp;", "&")
}
