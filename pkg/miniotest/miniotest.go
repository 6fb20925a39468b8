// Package miniotest starts a real MinIO server on loopback for tests: the
// pinned build that scripts/install-minio.sh (`make tools`) puts in
// <repo>/.tools/bin/minio, or the binary named by SDTEST_MINIO_BIN.
//
// Every server has its own data directory (t.TempDir()), listens on
// 127.0.0.1 only, has update checks, call-home and the console turned off,
// and is stopped when the test ends. A missing binary fails the test; it is
// never skipped.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sdevents/sdevents/pkg/proctest"
)

// EnvBin names the environment variable that overrides the binary's path.
const EnvBin = "SDTEST_MINIO_BIN"

// Fixed credentials of every test server.
const (
	AccessKey = "sdevents-test"
	SecretKey = "sdevents-test-secret"
)

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is a running MinIO. Its methods may be called from several
// goroutines, but Stop and Restart must not race each other.
type Server struct {
	// Endpoint is host:port, on 127.0.0.1.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Client is a ready client for the server, valid across restarts.
	Client *minio.Client

	t           testing.TB
	bin, dir    string
	consoleAddr string
	logPath     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

var buckets atomic.Int64

// Start starts a MinIO server and waits until it is live; it is stopped in
// t.Cleanup. It fails the test when the binary is missing (run `make tools`)
// or the server does not become live within a minute.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	s := &Server{
		Endpoint:    proctest.FreeAddr(t),
		consoleAddr: proctest.FreeAddr(t),
		AccessKey:   AccessKey,
		SecretKey:   SecretKey,
		t:           t,
		bin:         bin,
		dir:         t.TempDir(),
	}
	s.logPath = filepath.Join(t.TempDir(), "minio.log")
	s.Client, err = minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, "")})
	if err != nil {
		t.Fatalf("miniotest: client: %v", err)
	}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// findBinary returns $SDTEST_MINIO_BIN, or <repo>/.tools/bin/minio where
// <repo> is the nearest directory above the working directory holding go.work.
func findBinary() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			p := filepath.Join(dir, ".tools", "bin", "minio")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("no MinIO binary at %s: run `make tools` (or set %s)", p, EnvBin)
			}
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.work above %s and %s unset: run `make tools` in the repository", wd, EnvBin)
		}
	}
}

func (s *Server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("miniotest: %v", err)
	}
	cmd := exec.Command(s.bin, "server", s.dir, "--address", s.Endpoint, "--console-address", s.consoleAddr, "--quiet", "--anonymous")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CALLHOME_ENABLE=off",
		"MINIO_API_REQUESTS_DEADLINE=1m",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("miniotest: start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitLive(done); err != nil {
		s.Stop()
		s.t.Fatalf("miniotest: %v\n%s", err, s.logs())
	}
}

// waitLive polls the liveness endpoint until it answers 200.
func (s *Server) waitLive(done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	url := "http://" + s.Endpoint + "/minio/health/live"
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("minio exited before it was live")
		case <-ctx.Done():
			return fmt.Errorf("minio not live at %s after %s", url, readyTimeout)
		case <-tick.C:
		}
	}
}

func (s *Server) logs() string {
	b, _ := os.ReadFile(s.logPath)
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "minio log (tail):\n" + strings.TrimSpace(string(b))
}

// Stop stops the server: SIGTERM, then SIGKILL after 10 s. The data stays
// for Restart. Stopping a stopped server does nothing. Requests to a stopped
// server fail with connection errors.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server if it runs and starts it again on the same
// address (held for the test process, proctest.FreePorts) with the same data,
// waiting until it is live. It fails the test when the server does not come
// back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// MakeBucket creates a bucket with a unique name starting with prefix
// (lowercase letters, digits and '-') and returns the name.
func (s *Server) MakeBucket(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, buckets.Add(1))
	if err := s.Client.MakeBucket(t.Context(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("miniotest: make bucket %s: %v", name, err)
	}
	return name
}

// BucketName returns a unique bucket name starting with prefix, without
// creating the bucket.
func BucketName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, buckets.Add(1)) }
