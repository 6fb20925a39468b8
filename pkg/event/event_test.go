package event_test

import (
	"mime"
	"strings"
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
		"ce-time": "2026-01-02T03:04:05.000000006Z", "ce-subject": "a_x", "ce-datacontenttype": "application/json", "Nats-Msg-Id": "id-1",
	}
	for k, v := range want {
		if got := m.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %v, want %s", k, got, v)
		}
	}
	if len(m.Header) != len(want) {
		t.Errorf("headers %v, want exactly %v", m.Header, want)
	}
}

// TestMessageDataContentType: ce-datacontenttype carries the media type in
// its compact form, percent-encoded where a quoted value needs it, and is
// left out when the value is not a media type, which CloudEvents readers
// would refuse.
func TestMessageDataContentType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"application/json", "application/json"},
		{"Application/JSON", "application/json"},
		{"application/json; charset=utf-8", "application/json;charset=utf-8"},
		{"text/plain; Charset=UTF-8", "text/plain;charset=UTF-8"},
		{"multipart/form-data; boundary=b; a=1", "multipart/form-data;a=1;boundary=b"},
		{`text/plain; x="a b"`, `text/plain;x=%22a%20b%22`},
		{"application/cloudevents+json", "application/cloudevents+json"},
		{"", ""},
		{"json", ""},
		{"application/", ""},
		{"/json", ""},
		{"application/json; charset", ""},
		{"application/json; a=1; a=2", ""},
		{"text/plain\x00", ""},
		{"application/json; x=" + strings.Repeat("a", 250), ""},
	} {
		m := event.Message("sd.x", event.Meta{ID: "id", Time: time.Unix(0, 0), ContentType: tc.in}, nil)
		got, ok := m.Header[event.HeaderDataContentType]
		if tc.want == "" {
			if ok {
				t.Errorf("ContentType %q: ce-datacontenttype %v, want none", tc.in, got)
			}
			continue
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("ContentType %q: ce-datacontenttype %v, want %q", tc.in, got, tc.want)
			continue
		}
		dec := event.Get(m.Header, event.HeaderDataContentType)
		mt, params, err := mime.ParseMediaType(dec)
		want, wantParams, _ := mime.ParseMediaType(tc.in)
		if err != nil || mt != want || len(params) != len(wantParams) {
			t.Errorf("ContentType %q: decoded %q parses as %q %v (%v), want %q %v", tc.in, dec, mt, params, err, want, wantParams)
		}
		for k, v := range wantParams {
			if params[k] != v {
				t.Errorf("ContentType %q: parameter %s = %q, want %q", tc.in, k, params[k], v)
			}
		}
	}
}

// TestMediaTypeFastPath: the values MediaType returns without parsing are
// the ones parsing and formatting would return.
func TestMediaTypeFastPath(t *testing.T) {
	t.Parallel()
	for _, ct := range []string{"application/json", "image/png", "application/vnd.api+json", "a/b", "x-a/y_b.c", "a!#$&-^_.+/b"} {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || len(params) != 0 || mime.FormatMediaType(mt, nil) != ct {
			t.Fatalf("%q is not in compact form: %q %v %v", ct, mt, params, err)
		}
		if got := event.MediaType(ct); got != ct {
			t.Errorf("MediaType(%q) = %q", ct, got)
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
