package s3store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

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
