package console

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/blob/dirstore"
	"github.com/sdevents/sdevents/pkg/blob/s3store"
)

func TestShowHeadersRedactsSecrets(t *testing.T) {
	t.Parallel()
	h := nats.Header{
		"sd-api-token":  {"ENC"},
		"sd-sign":       {"SIG"},
		"Authorization": {"Bearer x"},
		"x-secret-key":  {"S"},
		"sd-invoke-id":  {"inv%201"},
		"ce-id":         {"id-1"},
	}
	got := map[string]string{}
	for _, l := range ShowHeaders(h) {
		got[l.Key] = l.Value
	}
	for _, k := range []string{"sd-api-token", "sd-sign", "Authorization", "x-secret-key"} {
		if got[k] != Redacted {
			t.Errorf("%s = %q, want redacted", k, got[k])
		}
	}
	if got["sd-invoke-id"] != "inv 1" || got["ce-id"] != "id-1" {
		t.Errorf("plain headers: %v", got)
	}
}

func TestShowBodyRedacts(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in       string
		limit    int
		want     []string
		mustNot  []string
		mustHave string
	}{
		"url query": {in: `{"url":"https://oss.example.com/a.png?Expires=1&Signature=SIG"}`, limit: 1000,
			want: []string{"https://oss.example.com/a.png?" + Redacted}, mustNot: []string{"SIG", "Expires"}},
		"json escapes": {in: `{"url":"http://h:1/a.png?Expires=1\u0026Signature=SIG","b":"x"}`, limit: 1000,
			want: []string{`"url": "http://h:1/a.png?` + Redacted + `"`, `"b": "x"`}, mustNot: []string{"SIG"}},
		"double escapes":  {in: `{"Message":"{\"u\":\"https:\\/\\/h\\/a.png?x=1\\u0026Signature=SIG\"}"}`, limit: 1000, mustNot: []string{"SIG"}},
		"escaped slashes": {in: `{"url":"https:\/\/oss.example.com\/a.png?Signature=SIG"}`, limit: 1000, mustNot: []string{"SIG"}},
		"sns confirmation": {in: `{"Type":"SubscriptionConfirmation","Token":"TOK","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=TOK","Signature":"SIG"}`,
			limit: 1000, mustNot: []string{"TOK", "SIG"}},
		"nested json string": {in: `{"Message":"{\"image_url\":[\"https://x.example.com/a.png?sig=SIG\"]}"}`, limit: 1000, mustNot: []string{"SIG"}},
		"secret field cut by the limit": {in: `{"a":"` + strings.Repeat("x", 50) + `","apiToken":"TOKENTOKENTOKEN"}`, limit: 80,
			mustNot: []string{"TOKENTOKENTOKEN"}},
		"binary": {in: "\xff\xfe\x00", limit: 100, want: []string{"3 bytes of binary data"}},
		"long":   {in: strings.Repeat("é", 100), limit: 11, want: []string{"more bytes"}},
	} {
		got := ShowBody([]byte(tc.in), tc.limit)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", name, got, w)
			}
		}
		for _, s := range tc.mustNot {
			if strings.Contains(got, s) {
				t.Errorf("%s: %q shows %q", name, got, s)
			}
		}
	}
	// A truncated secret value is still redacted.
	if got := Redact(`{"apiToken":"TOKENTOK`); strings.Contains(got, "TOKENTOK") {
		t.Errorf("truncated: %q", got)
	}
}

func TestScaleAndCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, h, size, ww, wh int }{
		{1024, 512, 160, 160, 80}, {300, 600, 160, 80, 160}, {100, 50, 160, 100, 50}, {5000, 1, 160, 160, 1},
	} {
		if w, h := fit(tc.w, tc.h, tc.size); w != tc.ww || h != tc.wh {
			t.Errorf("fit(%d,%d,%d) = %d,%d, want %d,%d", tc.w, tc.h, tc.size, w, h, tc.ww, tc.wh)
		}
	}
	if _, _, _, err := readHeader(strings.NewReader("GIF89a junk")); !errors.Is(err, errNoPreview) {
		t.Errorf("junk: %v, want errNoPreview", err)
	}
	th := newThumbnailer(nil, 1000)
	for i := range 10 {
		th.put(string(rune('a'+i)), thumb{data: make([]byte, 200)})
	}
	if th.bytes > 1000 || len(th.byKey) != 5 {
		t.Fatalf("cache holds %d bytes in %d entries", th.bytes, len(th.byKey))
	}
	if _, ok := th.cached("j"); !ok {
		t.Error("the latest entry was evicted")
	}
	if _, ok := th.cached("a"); ok {
		t.Error("the oldest entry was kept")
	}
	th.put("big", thumb{data: make([]byte, 600)})
	if _, ok := th.cached("big"); ok {
		t.Error("an entry over a quarter of the cache was kept")
	}
}

func TestSinkKeys(t *testing.T) {
	t.Parallel()
	dir := sinkKeys{filePrefix: "file:///data/archive/"}
	s3 := sinkKeys{bucket: "sd-archive"}
	for _, tc := range []struct {
		keys sinkKeys
		uri  string
		want string
		ok   bool
	}{
		{dir, "file:///data/archive/a_x/2026/g.png", "a_x/2026/g.png", true},
		{dir, "file:///data/other/a_x/g.png", "", false},
		{dir, "s3://sd-archive/a_x/g.png", "", false},
		{s3, "s3://sd-archive/a_x/g.png", "a_x/g.png", true},
		{s3, "s3://other/a_x/g.png", "", false},
		{s3, "", "", false},
	} {
		if got, ok := tc.keys.key(tc.uri); got != tc.want || ok != tc.ok {
			t.Errorf("key(%q) = %q, %v", tc.uri, got, ok)
		}
	}
}

// TestKeysOfTheSink: the keys of a sink are read from the URIs it gives its
// objects: its directory's, or its bucket's.
func TestKeysOfTheSink(t *testing.T) {
	t.Parallel()
	dir, err := dirstore.New("/data/archive")
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := s3store.NewFromConfig(s3store.Config{Endpoint: "127.0.0.1:9", Bucket: "sd-archive", AccessKey: "k", SecretKey: "s"}, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(dir); got != (sinkKeys{filePrefix: "file:///data/archive/"}) {
		t.Errorf("keys of a directory: %+v", got)
	}
	if got := keysOf(bucket); got != (sinkKeys{bucket: "sd-archive"}) {
		t.Errorf("keys of a bucket: %+v", got)
	}
}

// TestRedactURLsWhateverThePathHolds: the query of an image URL is redacted
// whatever its path holds — spaces, quotes (bare or escaped, in JSON, in
// JSON inside JSON, in a Go-quoted error), angle brackets — in bodies,
// records, errors and header values.
func TestRedactURLsWhateverThePathHolds(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"space in JSON":               `{"url":"https://oss.example.com/out put/a.png?Expires=1&Signature=SIG"}`,
		"escaped quote in JSON":       `{"url":"https://oss.example.com/a\"b.png?Expires=1&Signature=SIG"}`,
		"apostrophe in JSON":          `{"url":"https://oss.example.com/it's.png?Signature=SIG"}`,
		"space and quote, nested":     `{"Message":"{\"u\":\"https:\\/\\/h\\/a b\\\"c.png?x=1\\u0026Signature=SIG\"}"}`,
		"go-quoted error":             `Get "https://h.example.com/a \"b\".png?X-Amz-Signature=SIG": dial tcp 10.0.0.1:443: i/o timeout`,
		"bare quote in text":          `fetch https://h.example.com/say "cheese".png?Signature=SIG failed`,
		"escaped angle brackets":      `{"url":"https://h.example.com/\u003cb\u003e.png?Signature=SIG"}`,
		"bare angle brackets":         `see https://h.example.com/<b>.png?Signature=SIG`,
		"two URLs, the second signed": `{"a":"https://h.example.com/a b.png","b":"https://h.example.com/c d.png?Signature=SIG"}`,
	} {
		for _, got := range []string{Redact(in), ShowBody([]byte(in), 10000)} {
			if strings.Contains(got, "SIG") || strings.Contains(got, "Expires") {
				t.Errorf("%s: %q shows the query", name, got)
			}
			if !strings.Contains(got, Redacted) {
				t.Errorf("%s: %q has nothing redacted", name, got)
			}
		}
	}
	// What follows a signed URL on its line stays visible when it is not
	// part of the query.
	if got := Redact(`{"url":"https://h.example.com/a b.png?Signature=SIG","n":1}`); !strings.Contains(got, `"n":1`) {
		t.Errorf("the rest of the line is lost: %q", got)
	}
	// Header values are redacted the same way.
	for _, l := range ShowHeaders(nats.Header{"x-image-url": {"https://h.example.com/a b.png?Signature=SIG"}}) {
		if strings.Contains(l.Value, "SIG") {
			t.Errorf("header %s: %q shows the query", l.Key, l.Value)
		}
	}
}
