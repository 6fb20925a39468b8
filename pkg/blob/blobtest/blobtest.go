// Package blobtest is the contract suite every archive sink passes, in the
// style of watermill's pubsub/tests: call Run from a test of the
// implementation with a constructor for fresh stores.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/blob"
)

// Store is the method set under test; dirstore.Store and s3store.Store have it.
type Store interface {
	Stat(ctx context.Context, key string) (blob.Object, error)
	Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.PutMeta) (blob.Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
	URI(key string) string
	EnsureReady(ctx context.Context) error
}

// Run runs the contract suite. newStore returns an empty store, not yet made
// ready, that no other test uses; it is called once per subtest, and
// subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"RePutIsIdempotent", testRePut},
		{"NotFound", testNotFound},
		{"MetadataPreserved", testMetadata},
		{"EmptyObject", testEmpty},
		{"StreamUnknownSize", testStream},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidMetadata", testInvalidMetadata},
		{"DigestMismatch", testDigestMismatch},
		{"ShortReader", testShortReader},
		{"ReaderError", testReaderError},
		{"ConcurrentPutsSameKey", testConcurrentPuts},
		{"EnsureReadyTwice", testEnsureReadyTwice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if err := s.EnsureReady(ctx(t)); err != nil {
				t.Fatalf("EnsureReady: %v", err)
			}
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// opaque hides every method but Read, as a network body would.
type opaque struct{ r io.Reader }

func (o opaque) Read(p []byte) (int, error) { return o.r.Read(p) }

// Data returns n deterministic pseudo-random bytes for seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func readAll(t *testing.T, s Store, key string) ([]byte, blob.Object) {
	t.Helper()
	rc, obj, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, obj
}

func put(t *testing.T, s Store, key string, data []byte, meta blob.PutMeta) blob.Object {
	t.Helper()
	obj, err := s.Put(ctx(t), key, opaque{bytes.NewReader(data)}, int64(len(data)), meta)
	if err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
	return obj
}

func sameObject(t *testing.T, what string, got, want blob.Object) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.SHA256 != want.SHA256 || got.ContentType != want.ContentType ||
		fmt.Sprint(got.Metadata) != fmt.Sprint(want.Metadata) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	data := Data(1, 100_000)
	key := "a_acct/2026/01/02/task-1/0.png"
	want := blob.Object{Key: key, Size: int64(len(data)), SHA256: hexSum(data), ContentType: "image/png",
		Metadata: map[string]string{"Model": "sdxl"}}
	got := put(t, s, key, data, blob.PutMeta{ContentType: "image/png", Metadata: map[string]string{"Model": "sdxl"}})
	sameObject(t, "Put", got, want)
	st, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	sameObject(t, "Stat", st, want)
	b, obj := readAll(t, s, key)
	sameObject(t, "Get", obj, want)
	if !bytes.Equal(b, data) {
		t.Fatalf("Get returned %d other bytes", len(b))
	}
	if u := s.URI(key); !strings.HasSuffix(u, "/"+key) || !(strings.HasPrefix(u, "s3://") || strings.HasPrefix(u, "file:///")) {
		t.Fatalf("URI = %q", u)
	}
}

func testRePut(t *testing.T, s Store) {
	data := Data(2, 5000)
	key := "k/re-put.jpg"
	meta := blob.PutMeta{SHA256: hexSum(data), ContentType: "image/jpeg"}
	first := put(t, s, key, data, meta)
	second := put(t, s, key, data, meta)
	sameObject(t, "second Put", second, first)
	st, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	sameObject(t, "Stat", st, first)
	if b, _ := readAll(t, s, key); !bytes.Equal(b, data) {
		t.Fatal("content changed")
	}
}

func testNotFound(t *testing.T, s Store) {
	for _, key := range []string{"missing", "no/such/dir/x.png"} {
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Stat %s: %v, want ErrNotFound", key, err)
		}
		if rc, _, err := s.Get(ctx(t), key); !errors.Is(err, blob.ErrNotFound) {
			if rc != nil {
				rc.Close()
			}
			t.Fatalf("Get %s: %v, want ErrNotFound", key, err)
		}
	}
	// A key below an existing object is absent too.
	put(t, s, "file", []byte("x"), blob.PutMeta{})
	if _, err := s.Stat(ctx(t), "file/below"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat below an object: %v, want ErrNotFound", err)
	}
}

func testMetadata(t *testing.T, s Store) {
	data := Data(3, 1234)
	key := "meta/x.webp"
	in := map[string]string{
		"source-url": "https://images.example.com/out/x.webp",
		"MODEL":      "sd-v1-5",
		"Width":      "512",
		"height":     "768",
	}
	want := map[string]string{
		blob.MetaSourceURL: "https://images.example.com/out/x.webp",
		blob.MetaModel:     "sd-v1-5",
		blob.MetaWidth:     "512",
		blob.MetaHeight:    "768",
	}
	got := put(t, s, key, data, blob.PutMeta{ContentType: "image/webp", Metadata: in})
	if fmt.Sprint(got.Metadata) != fmt.Sprint(want) {
		t.Fatalf("Put metadata = %v, want %v", got.Metadata, want)
	}
	st, err := s.Stat(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.Metadata) != fmt.Sprint(want) || st.SHA256 != hexSum(data) || st.ContentType != "image/webp" {
		t.Fatalf("Stat = %+v, want metadata %v", st, want)
	}
	// A put without metadata replaces it.
	put(t, s, key, data, blob.PutMeta{ContentType: "image/webp"})
	if st, _ := s.Stat(ctx(t), key); len(st.Metadata) != 0 || st.Metadata == nil {
		t.Fatalf("metadata after re-put without = %#v, want empty map", st.Metadata)
	}
}

func testEmpty(t *testing.T, s Store) {
	obj := put(t, s, "empty", nil, blob.PutMeta{})
	if obj.Size != 0 || obj.SHA256 != hexSum(nil) || obj.ContentType != blob.DefaultContentType {
		t.Fatalf("Put = %+v", obj)
	}
	st, err := s.Stat(ctx(t), "empty")
	if err != nil || st.Size != 0 || st.SHA256 != hexSum(nil) || st.ContentType != blob.DefaultContentType {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
}

func testStream(t *testing.T, s Store) {
	const n = 20 << 20
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{9}), n), h)
	key := "big/20mb.bin"
	obj, err := s.Put(ctx(t), key, opaque{src}, -1, blob.PutMeta{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if obj.Size != n || obj.SHA256 != sum {
		t.Fatalf("Put = size %d sha %s, want %d %s", obj.Size, obj.SHA256, n, sum)
	}
	st, err := s.Stat(ctx(t), key)
	if err != nil || st.Size != n || st.SHA256 != sum {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	rc, _, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	g := sha256.New()
	if m, err := io.Copy(g, rc); err != nil || m != n || hex.EncodeToString(g.Sum(nil)) != sum {
		t.Fatalf("Get: %d bytes, err %v, sha mismatch", m, err)
	}
}

// InvalidKeys are refused by every store with ErrInvalidKey.
var InvalidKeys = []string{
	"", "/abs", "/", "a//b", "a/", "..", "../x", "a/../b", "a/./b", ".", ".hidden",
	"a/.tmp-x", `a\b`, "a\x00b", "a\nb", "x.png.meta.json", strings.Repeat("k", blob.MaxKeyLen+1),
}

func testInvalidKeys(t *testing.T, s Store) {
	for _, key := range InvalidKeys {
		if _, err := s.Put(ctx(t), key, strings.NewReader("x"), 1, blob.PutMeta{}); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, _, err := s.Get(ctx(t), key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
	}
}

func testInvalidMetadata(t *testing.T, s Store) {
	for _, meta := range []blob.PutMeta{
		{Metadata: map[string]string{"bad key": "x"}},
		{Metadata: map[string]string{"Source_Url": "x"}},
		{Metadata: map[string]string{"Model": "caf\u00e9"}},
		{Metadata: map[string]string{"Model": "a\nb"}},
		{Metadata: map[string]string{"sha256": "x"}},
		{Metadata: map[string]string{"Model": strings.Repeat("m", 3000)}},
		{SHA256: "ABC"},
	} {
		if _, err := s.Put(ctx(t), "inv-meta", strings.NewReader("x"), 1, meta); !errors.Is(err, blob.ErrInvalidMetadata) {
			t.Errorf("Put with %v: %v, want ErrInvalidMetadata", meta, err)
		}
	}
	if _, err := s.Stat(ctx(t), "inv-meta"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after refused puts: %v, want ErrNotFound", err)
	}
}

func testDigestMismatch(t *testing.T, s Store) {
	data := Data(4, 10_000)
	wrong := hexSum([]byte("something else"))
	for _, size := range []int64{int64(len(data)), -1} {
		_, err := s.Put(ctx(t), "mismatch", opaque{bytes.NewReader(data)}, size, blob.PutMeta{SHA256: wrong})
		if !errors.Is(err, blob.ErrMismatch) {
			t.Fatalf("Put size %d: %v, want ErrMismatch", size, err)
		}
		if _, err := s.Stat(ctx(t), "mismatch"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Stat after mismatch: %v, want ErrNotFound", err)
		}
	}
}

func testShortReader(t *testing.T, s Store) {
	data := Data(5, 1000)
	if _, err := s.Put(ctx(t), "short", opaque{bytes.NewReader(data)}, 2000, blob.PutMeta{}); err == nil {
		t.Fatal("Put of 1000 bytes declared as 2000 succeeded")
	}
	if _, err := s.Put(ctx(t), "long", opaque{bytes.NewReader(data)}, 500, blob.PutMeta{}); !errors.Is(err, blob.ErrMismatch) {
		t.Fatalf("Put of 1000 bytes declared as 500: %v, want ErrMismatch", err)
	}
	for _, key := range []string{"short", "long"} {
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Stat %s: %v, want ErrNotFound", key, err)
		}
	}
}

var errBoom = errors.New("source broke")

type failingReader struct{ left int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errBoom
	}
	n := min(len(p), f.left)
	clear(p[:n])
	f.left -= n
	return n, nil
}

func testReaderError(t *testing.T, s Store) {
	old := Data(6, 3000)
	put(t, s, "keep", old, blob.PutMeta{})
	for _, size := range []int64{10_000, -1, 7 << 20} {
		if _, err := s.Put(ctx(t), "keep", &failingReader{left: 6000}, size, blob.PutMeta{}); err == nil {
			t.Fatalf("Put from a failing reader (size %d) succeeded", size)
		}
	}
	if b, obj := readAll(t, s, "keep"); !bytes.Equal(b, old) || obj.SHA256 != hexSum(old) {
		t.Fatal("a failed Put changed the stored object")
	}
}

func testConcurrentPuts(t *testing.T, s Store) {
	data := Data(7, 300_000)
	key := "same/key.png"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			obj, err := s.Put(ctx(t), key, opaque{bytes.NewReader(data)}, int64(len(data)), blob.PutMeta{ContentType: "image/png"})
			if err == nil && obj.SHA256 != hexSum(data) {
				err = fmt.Errorf("sha %s", obj.SHA256)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	st, err := s.Stat(ctx(t), key)
	if err != nil || st.SHA256 != hexSum(data) || st.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	if b, _ := readAll(t, s, key); !bytes.Equal(b, data) {
		t.Fatal("content differs")
	}
}

func testEnsureReadyTwice(t *testing.T, s Store) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.EnsureReady(ctx(t)); err != nil {
				t.Errorf("EnsureReady: %v", err)
			}
		})
	}
	wg.Wait()
	put(t, s, "after-ready", []byte("ok"), blob.PutMeta{})
}
