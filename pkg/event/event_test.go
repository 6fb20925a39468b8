package event_test

import (
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/event"
)

func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "ünï", "a b\"c%d", "\x00\x7f", "用户-七"} {
		enc := event.Encode(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c <= ' ' || c >= 0x7f || c == '"' {
				t.Fatalf("Encode(%q) = %q keeps byte %q", s, enc, c)
			}
		}
		dec, err := event.Decode(enc)
		if err != nil || dec != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", s, dec, err)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz"} {
		if _, err := event.Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func TestMessageHeaders(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	m := event.Message("sd.x", event.Meta{ID: "id-1", Source: "/sdevents/callbacks/default", Type: "t", Time: at, Subject: "a_x", ContentType: "application/json"}, []byte("{}"))
	want := map[string]string{
		"ce-specversion": "1.0", "ce-id": "id-1", "ce-source": "/sdevents/callbacks/default", "ce-type": "t",
		"ce-time": "2026-01-02T03:04:05.000000006Z", "ce-subject": "a_x", "Content-Type": "application/json", "Nats-Msg-Id": "id-1",
	}
	for k, v := range want {
		if got := m.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %v, want %s", k, got, v)
		}
	}
}

// TestMessageExtraHeaders: extra headers are percent-encoded like Set's, a
// later one replaces an earlier one, and appending to one value leaves the
// others alone.
func TestMessageExtraHeaders(t *testing.T) {
	t.Parallel()
	m := event.Message("sd.x", event.Meta{ID: "id-1", Time: time.Unix(0, 0)}, nil,
		event.Header{Key: event.HeaderSDSource, Value: "a b"}, event.Header{Key: event.HeaderNonce, Value: "n"},
		event.Header{Key: event.HeaderSDSource, Value: "用户"})
	if got, want := m.Header[event.HeaderSDSource], []string{event.Encode("用户")}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("sd-source = %v, want %v", got, want)
	}
	if got := event.Get(m.Header, event.HeaderSDSource); got != "用户" {
		t.Fatalf("Get(sd-source) = %q", got)
	}
	m.Header.Add(event.HeaderID, "second")
	for k, want := range map[string]string{event.HeaderNonce: "n", event.HeaderSource: "", "Nats-Msg-Id": "id-1"} {
		if got := m.Header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want [%s]", k, got, want)
		}
	}
}
