package archiver

import (
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/blob"
)

func TestComponent(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200)
	for _, c := range []struct{ in, want string }{
		{"", "_"},
		{"g-1_A.b", "g-1_A.b"},
		{"../etc/passwd", "_._etc_passwd"},
		{".hidden", "_hidden"},
		{"a b/c?d#e%f", "a_b_c_d_e_f"},
		{"图片", "______"},
		{long, strings.Repeat("x", 79) + "-" + hash8(long)},
	} {
		if got := Component(c.in); got != c.want {
			t.Errorf("Component(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if Component(long) == Component(long+"y") {
		t.Error("long values that differ map to one component")
	}
}

func TestObjectKey(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 23, 30, 0, 0, time.FixedZone("x", -2*3600)) // 5 March in UTC
	key := ObjectKey("a_abc", at, "inv/1", "..", "png")
	if want := "a_abc/2026/03/05/inv_1/_..png"; key != want {
		t.Errorf("key %q, want %q", key, want)
	}
	if err := blob.ValidateKey(key); err != nil {
		t.Error(err)
	}
	for _, in := range []string{"", ".", "..", "a/b", "x.meta", "\x00", strings.Repeat("é", 300)} {
		k := ObjectKey(in, at, in, in, "img")
		if err := blob.ValidateKey(k); err != nil {
			t.Errorf("ObjectKey(%q): %v", in, err)
		}
	}
	if again := key; EventID(key) != EventID(again) || EventID(key) == EventID(key+"x") || !strings.HasPrefix(EventID(key), "ar-") || len(EventID(key)) != 35 {
		t.Errorf("EventID %q", EventID(key))
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := backoff{min: time.Second, max: 8 * time.Second}
	now := time.Now()
	far := now.Add(time.Hour)
	for _, c := range []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{1, 800 * time.Millisecond, 1200 * time.Millisecond},
		{3, 3200 * time.Millisecond, 4800 * time.Millisecond},
		{10, 6400 * time.Millisecond, 9600 * time.Millisecond},
	} {
		if d := b.delay(c.attempts, now, far); d < c.lo || d > c.hi {
			t.Errorf("delay(%d) = %s, want in [%s, %s]", c.attempts, d, c.lo, c.hi)
		}
	}
	if d := b.delay(10, now, now.Add(2*time.Second)); d != 2*time.Second {
		t.Errorf("delay past the deadline = %s, want the time left", d)
	}
	if d := b.delay(10, now, now.Add(-time.Second)); d != time.Millisecond {
		t.Errorf("delay after the deadline = %s", d)
	}
}

func TestMetadataIsStorable(t *testing.T) {
	t.Parallel()
	m := metadata(image{Source: "s3://b/图 1.png", Model: strings.Repeat("m", 1000)}, 3, 2)
	if _, err := blob.NormalizeMetadata(m); err != nil {
		t.Fatal(err)
	}
	if m[blob.MetaSourceURL] != "s3://b/%E5%9B%BE 1.png" || m[blob.MetaWidth] != "3" || len(m[blob.MetaModel]) != maxMetaModel {
		t.Errorf("metadata %v", m)
	}
	if _, ok := metadata(image{Source: "https://h/a.png"}, 0, 5)[blob.MetaWidth]; ok {
		t.Error("unknown dimensions stored")
	}
}
