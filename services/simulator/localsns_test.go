package simulator_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/services/simulator"
)

const testTopic = "arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"

func startLocalSNS(t *testing.T) *simulator.LocalSNS {
	t.Helper()
	dir := t.TempDir()
	ca, created, err := simulator.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil || !created {
		t.Fatalf("create CA: %v (created %v)", err, created)
	}
	again, created, err := simulator.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("reload CA: %v (created %v)", err, created)
	}
	s, err := simulator.NewLocalSNS("127.0.0.1:0", again)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLocalSNSSignsForTheVerifier signs envelopes of every type and both
// versions with the simulator and verifies them with pkg/sns, configured as
// a receiver trusting the simulator (cert_hosts, ca_file): the certificate
// is fetched over HTTPS from the simulator, and the confirmation's GET
// reaches it. A changed byte fails.
func TestLocalSNSSignsForTheVerifier(t *testing.T) {
	t.Parallel()
	s := startLocalSNS(t)
	v, err := sns.NewVerifier(s.ReceiverConfig(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	subject := "task finished"
	for _, version := range []string{sns.SignatureV1, sns.SignatureV2} {
		n, err := s.Notification(testTopic, `{"id":"t-1","result":true,"image_url":["s3://b/output/t-1/t-1-0001-1.png"]}`, nil, version)
		if err != nil {
			t.Fatal(err)
		}
		withSubject, err := s.Notification(testTopic, `{"id":2,"result":false}`, &subject, version)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := s.SubscriptionConfirmation(testTopic, version)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []sns.Envelope{n, withSubject, conf} {
			if err := v.Verify(ctx, e); err != nil {
				t.Fatalf("v%s %s: %v", version, e.Type, err)
			}
			bad := e
			bad.Message += " "
			if err := v.Verify(ctx, bad); !errors.Is(err, sns.ErrSignature) {
				t.Fatalf("v%s %s with a changed Message: %v, want ErrSignature", version, e.Type, err)
			}
		}
		// Through the envelope's JSON, as it travels.
		raw, err := jsonOf(n)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := sns.ParseEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(ctx, parsed); err != nil {
			t.Fatalf("parsed: %v", err)
		}
		if err := v.Confirm(ctx, conf); err != nil {
			t.Fatalf("confirm: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.WaitConfirmed(wctx, conf.Token); err != nil {
			t.Fatalf("the simulator did not see the confirmation: %v", err)
		}
		cancel()
	}
	if s.CertFetches() != 1 {
		t.Fatalf("certificate fetched %d times, want 1 (cached)", s.CertFetches())
	}
	// A receiver that does not trust the simulator's host refuses before
	// fetching anything.
	strict, err := sns.NewVerifier(sns.Config{TopicARNs: []string{testTopic}})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.Notification(testTopic, "{}", nil, sns.SignatureV2)
	if err := strict.Verify(ctx, n); !errors.Is(err, sns.ErrUntrustedURL) {
		t.Fatalf("untrusted host: %v, want ErrUntrustedURL", err)
	}
}

// TestAWSFixturesVerifyThroughLocalSNS verifies the real AWS-signed messages
// of testdata/fixtures/sns with the verifier a receiver configured for the
// simulator builds: the simulator serves the AWS certificates on its trusted
// host (SigningCertURL is not signed, so it may point there).
func TestAWSFixturesVerifyThroughLocalSNS(t *testing.T) {
	t.Parallel()
	s := startLocalSNS(t)
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "fixtures", "sns", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var envs []sns.Envelope
	var topics []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e, err := sns.ParseEnvelope(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u, err := url.Parse(e.SigningCertURL)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes, err := os.ReadFile(filepath.Join(filepath.Dir(f), strings.TrimPrefix(u.Path, "/")))
		if err != nil {
			t.Fatal(err)
		}
		s.ServeCert(u.Path, pemBytes)
		e.SigningCertURL = "https://" + s.Host() + u.Path
		envs = append(envs, e)
		topics = append(topics, e.TopicArn)
	}
	for i, e := range envs {
		// The fixtures are years old: the verifier's clock is moved to each.
		signed, err := e.Time()
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.ReceiverConfig(topics...)
		cfg.Now = func() time.Time { return signed }
		v, err := sns.NewVerifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(t.Context(), e); err != nil {
			t.Errorf("%s: %v", files[i], err)
		}
	}
}
