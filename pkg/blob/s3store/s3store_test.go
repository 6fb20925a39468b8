package s3store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/blob/blobtest"
	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/miniotest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Store {
		s, err := s3store.NewFromConfig(s3store.Config{
			Endpoint: srv.Endpoint, Bucket: miniotest.BucketName("contract"),
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		}, s3store.Options{PartSize: s3store.MinPartSize})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The metadata is the S3 user metadata the contract promises to other
// readers of the bucket.
func TestUserMetadataOnTheWire(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.MakeBucket(t, "wire")
	s, err := s3store.New(srv.Client, bucket, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Put(ctx, "a/b.png", strings.NewReader("png"), -1, blob.PutMeta{
		ContentType: "image/png",
		Metadata:    map[string]string{"source-url": "https://x.example/b.png", "Model": "m", "Width": "2", "Height": "3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := srv.Client.StatObject(ctx, bucket, "a/b.png", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{
		"X-Amz-Meta-Sha256": obj.SHA256, "X-Amz-Meta-Source-Url": "https://x.example/b.png",
		"X-Amz-Meta-Model": "m", "X-Amz-Meta-Width": "2", "X-Amz-Meta-Height": "3", "Content-Type": "image/png",
	} {
		if got := info.Metadata.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if u := s.URI("a/b.png"); u != "s3://"+bucket+"/a/b.png" {
		t.Fatalf("URI = %s", u)
	}
}

// A Put to a stopped server fails; after a restart the same Put works.
func TestServerDown(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	s, err := s3store.New(srv.Client, srv.MakeBucket(t, "down"), s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Put(ctx, "k", strings.NewReader("x"), 1, blob.PutMeta{}); err == nil {
		t.Fatal("Put to a stopped server succeeded")
	}
	if _, err := s.Stat(ctx, "k"); err == nil || errorsIsNotFound(err) {
		t.Fatalf("Stat on a stopped server: %v, want a transport error", err)
	}
	srv.Restart()
	if _, err := s.Put(ctx, "k", strings.NewReader("x"), 1, blob.PutMeta{}); err != nil {
		t.Fatal(err)
	}
}

func errorsIsNotFound(err error) bool { return errors.Is(err, blob.ErrNotFound) }

// countingTransport records the requests a client sends.
type countingTransport struct {
	mu     sync.Mutex
	copies int // requests with X-Amz-Copy-Source
	puts   int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if req.Method == http.MethodPut {
		c.puts++
		if req.Header.Get("X-Amz-Copy-Source") != "" {
			c.copies++
		}
	}
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *countingTransport) counts() (puts, copies int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts, c.copies
}

// Objects up to the part size are stored with their digest by one PUT, of
// known or unknown size, at the edges of the spool's buffers; larger ones
// are uploaded in parts and given the digest by a copy.
func TestDigestRecordedWithoutCopy(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	tr := &countingTransport{}
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	bucket := srv.MakeBucket(t, "nocopy")
	s, err := s3store.New(c, bucket, s3store.Options{PartSize: s3store.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	const part = s3store.MinPartSize
	for _, tc := range []struct {
		n         int
		wantCopy  bool
		wantParts bool
	}{
		{0, false, false}, {1, false, false}, {64<<10 - 1, false, false}, {64 << 10, false, false}, {64<<10 + 1, false, false},
		{1 << 20, false, false}, {part - 1, false, false}, {part, false, false}, {part + 1, true, true}, {2*part + 7, true, true},
	} {
		data := blobtest.Data(uint64(tc.n), tc.n)
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		for _, size := range []int64{int64(tc.n), -1} {
			name := fmt.Sprintf("n%d/size%d", tc.n, size)
			key := "k/" + strings.ReplaceAll(name, "/", "-")
			puts0, copies0 := tr.counts()
			// iotest.HalfReader: short reads, as a network body gives.
			obj, err := s.Put(ctx, key, iotest.HalfReader(bytes.NewReader(data)), size, blob.PutMeta{})
			if err != nil {
				t.Fatalf("%s: Put: %v", name, err)
			}
			puts, copies := tr.counts()
			if obj.SHA256 != want || obj.Size != int64(tc.n) {
				t.Fatalf("%s: Put = %+v, want sha %s", name, obj, want)
			}
			if got := copies - copies0; (got > 0) != tc.wantCopy {
				t.Errorf("%s: %d copies, want copy %v", name, got, tc.wantCopy)
			}
			if got := puts - puts0 - (copies - copies0); (got > 1) != tc.wantParts {
				t.Errorf("%s: %d uploads, want parts %v", name, got, tc.wantParts)
			}
			st, err := s.Stat(ctx, key)
			if err != nil || st.SHA256 != want || st.Size != int64(tc.n) {
				t.Fatalf("%s: Stat = %+v, %v", name, st, err)
			}
			rc, _, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: Get: %d bytes, %v", name, len(got), err)
			}
		}
	}
}

// A Put of a small object that fails its checks sends nothing: the previous
// object stays, with its digest.
func TestSmallMismatchKeepsPrevious(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	s, err := s3store.New(srv.Client, srv.MakeBucket(t, "keep"), s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := blobtest.Data(1, 1000)
	first, err := s.Put(ctx, "k", bytes.NewReader(old), -1, blob.PutMeta{})
	if err != nil {
		t.Fatal(err)
	}
	data := blobtest.Data(2, 2000)
	for name, put := range map[string]func() error{
		"digest": func() error {
			_, err := s.Put(ctx, "k", bytes.NewReader(data), 2000, blob.PutMeta{SHA256: first.SHA256})
			return err
		},
		"digest, unknown size": func() error {
			_, err := s.Put(ctx, "k", bytes.NewReader(data), -1, blob.PutMeta{SHA256: first.SHA256})
			return err
		},
		"longer": func() error {
			_, err := s.Put(ctx, "k", bytes.NewReader(data), 1000, blob.PutMeta{})
			return err
		},
		"shorter": func() error {
			_, err := s.Put(ctx, "k", bytes.NewReader(data), 3000, blob.PutMeta{})
			return err
		},
	} {
		if err := put(); !errors.Is(err, blob.ErrMismatch) {
			t.Errorf("%s: %v, want ErrMismatch", name, err)
		}
		if st, err := s.Stat(ctx, "k"); err != nil || st.SHA256 != first.SHA256 || st.Size != 1000 {
			t.Fatalf("%s: Stat = %+v, %v, want the previous object", name, st, err)
		}
	}
	// A cancelled Put stops reading and sends nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, "k", bytes.NewReader(data), -1, blob.PutMeta{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v", err)
	}
}

// An object someone else wrote without the digest reads with an empty
// SHA256, which callers treat as not archived.
func TestForeignObjectHasNoDigest(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.MakeBucket(t, "foreign")
	s, err := s3store.New(srv.Client, bucket, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.PutObject(ctx, bucket, "k", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(ctx, "k"); err != nil || st.SHA256 != "" || st.Size != 1 {
		t.Fatalf("Stat = %+v, %v, want no digest", st, err)
	}
}

// Concurrent Puts of different objects through one store, which share the
// spool buffers, store each its own bytes.
func TestConcurrentPutsShareNoBytes(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	s, err := s3store.New(srv.Client, srv.MakeBucket(t, "pool"), s3store.Options{PartSize: s3store.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 4 {
				data := blobtest.Data(uint64(100*i+j), 100_000+i*7919+j*104729)
				key := fmt.Sprintf("p/%d/%d", i, j)
				size := int64(len(data))
				if j%2 == 1 {
					size = -1
				}
				if _, err := s.Put(ctx, key, bytes.NewReader(data), size, blob.PutMeta{}); err != nil {
					t.Error(err)
					return
				}
				rc, obj, err := s.Get(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				sum := sha256.Sum256(data)
				if err != nil || !bytes.Equal(got, data) || obj.SHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("%s: stored other bytes or digest", key)
				}
			}
		})
	}
	wg.Wait()
}

// corruptingTransport flips a byte of every PUT body in flight.
type corruptingTransport struct{}

func (corruptingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.Body != nil && req.ContentLength > 0 {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 1
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// The service checks the digest of a spooled PUT: bytes changed on the way
// are refused, so the recorded digest is always that of the stored bytes.
func TestServiceVerifiesDigest(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Transport: corruptingTransport{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	bucket := srv.MakeBucket(t, "corrupt")
	s, err := s3store.New(c, bucket, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, "k", bytes.NewReader(blobtest.Data(1, 100_000)), -1, blob.PutMeta{})
	t.Logf("corrupted Put: %v", err)
	if err == nil {
		t.Fatal("Put of bytes corrupted on the way succeeded")
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after a refused Put: %v, want ErrNotFound", err)
	}
}

// A client with trailing headers enabled works too, and other readers find
// the digest also as the object's S3 SHA-256 checksum.
func TestTrailingHeadersClient(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := context.Background()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), TrailingHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	bucket := srv.MakeBucket(t, "trailing")
	s, err := s3store.New(c, bucket, s3store.Options{PartSize: s3store.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10_000, s3store.MinPartSize + 1} {
		data := blobtest.Data(uint64(n), n)
		sum := sha256.Sum256(data)
		key := fmt.Sprintf("k%d", n)
		if _, err := s.Put(ctx, key, bytes.NewReader(data), int64(n), blob.PutMeta{}); err != nil {
			t.Fatalf("Put %d bytes: %v", n, err)
		}
		if st, err := s.Stat(ctx, key); err != nil || st.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("Stat = %+v, %v", st, err)
		}
		if n > s3store.MinPartSize {
			continue
		}
		info, err := c.StatObject(ctx, bucket, key, minio.StatObjectOptions{Checksum: true})
		if err != nil || info.ChecksumSHA256 != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Fatalf("checksum = %q, %v", info.ChecksumSHA256, err)
		}
	}
}

// Without static keys the store signs with the AWS credential chain: here
// the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which are
// MinIO's root keys (s3cred tests the rest of the chain). Not parallel:
// the chain reads the process environment.
func TestKeysFromTheEnvironment(t *testing.T) {
	srv := miniotest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	ctx := t.Context()
	s, err := s3store.NewFromConfig(s3store.Config{Endpoint: srv.Endpoint, Bucket: srv.MakeBucket(t, "env")}, s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b.png", strings.NewReader("png"), 3, blob.PutMeta{ContentType: "image/png"}); err != nil {
		t.Fatal(err)
	}
	r, obj, err := s.Get(ctx, "a/b.png")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "png" || obj.SHA256 == "" {
		t.Fatalf("read %q (%v), object %+v", got, err, obj)
	}
}
