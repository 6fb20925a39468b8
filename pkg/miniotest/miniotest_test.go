package miniotest_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/sdevents/sdevents/pkg/miniotest"
)

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t)
	ctx := t.Context()
	bucket := s.MakeBucket(t, "restart")
	data := []byte("survives a restart")
	if _, err := s.Client.PutObject(ctx, bucket, "k", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if _, err := s.Client.StatObject(ctx, bucket, "k", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat succeeded on a stopped server")
	}
	s.Stop() // idempotent

	s.Restart()
	o, err := s.Client.GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}
