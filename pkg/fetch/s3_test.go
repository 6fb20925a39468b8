package fetch_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/pkg/miniotest"
)

func TestS3Source(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	ctx := t.Context()
	bucket := srv.MakeBucket(t, "sd-output")
	img := encode(t, "png", 16, 16)
	if _, err := srv.Client.PutObject(ctx, bucket, "out/task-1/0.png", bytes.NewReader(img), int64(len(img)),
		minio.PutObjectOptions{ContentType: "image/png"}); err != nil {
		t.Fatal(err)
	}
	src, err := fetch.NewS3Source(fetch.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}

	b, err := src.Open(ctx, "s3://"+bucket+"/out/task-1/0.png")
	if err != nil {
		t.Fatal(err)
	}
	r := fetch.InspectImage(b)
	got, err := io.ReadAll(r)
	b.Close()
	if err != nil || !bytes.Equal(got, img) || b.Size != int64(len(img)) || b.ContentType != "image/png" {
		t.Fatalf("read %d bytes, %v, body %+v", len(got), err, b)
	}
	if in := r.Info(); in.SHA256 != hexSum(img) || in.Width != 16 {
		t.Fatalf("Info = %+v", in)
	}

	big := bytes.Repeat([]byte{1}, 5000)
	if _, err := srv.Client.PutObject(ctx, bucket, "big", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri     string
		wantErr error
	}{
		{"s3://" + bucket + "/out/missing.png", fetch.ErrNotFound},
		{"s3://no-such-bucket-x/k.png", fetch.ErrNotFound},
		{"s3://" + bucket + "/big", fetch.ErrTooLarge},
		{"s3://" + bucket, fetch.ErrUnsupported},
		{"s3:///k", fetch.ErrUnsupported},
		{"https://" + bucket + "/k", fetch.ErrUnsupported},
	} {
		_, err := src.Open(ctx, tc.uri)
		if !errors.Is(err, tc.wantErr) || !fetch.IsPermanent(err) {
			t.Errorf("Open(%s) = %v, want %v", tc.uri, err, tc.wantErr)
		}
	}

	bad, _ := fetch.NewS3Source(fetch.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "wrong-secret"})
	if _, err := bad.Open(ctx, "s3://"+bucket+"/out/task-1/0.png"); !fetch.IsPermanent(err) {
		t.Errorf("wrong credentials: %v, want permanent", err)
	}

	srv.Stop()
	if _, err := src.Open(ctx, "s3://"+bucket+"/out/task-1/0.png"); err == nil || fetch.IsPermanent(err) {
		t.Errorf("server down: %v, want transient", err)
	}
}

func TestParseS3URI(t *testing.T) {
	t.Parallel()
	b, k, err := fetch.ParseS3URI("s3://sd-bucket/output/a b/0.png")
	if err != nil || b != "sd-bucket" || k != "output/a b/0.png" {
		t.Fatalf("= %q %q %v", b, k, err)
	}
}

// Without static keys the source signs with the AWS credential chain: here
// the environment's AWS_* keys, which are MinIO's root keys. Not parallel:
// the chain reads the process environment.
func TestS3SourceKeysFromTheEnvironment(t *testing.T) {
	srv := miniotest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	ctx := t.Context()
	bucket := srv.MakeBucket(t, "sd-output")
	if _, err := srv.Client.PutObject(ctx, bucket, "k", bytes.NewReader([]byte("img")), 3, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := fetch.NewS3Source(fetch.S3Config{Endpoint: srv.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	b, err := src.Open(ctx, "s3://"+bucket+"/k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	b.Close()
	if err != nil || string(got) != "img" {
		t.Fatalf("read %q, %v", got, err)
	}
}
