package sns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestUntrustedSigningCertURL: every URL below is refused before any dial.
// The same certificate is served on every path of every host, so a refusal
// can only come from the URL policy.
func TestUntrustedSigningCertURL(t *testing.T) {
	t.Parallel()
	const pemName = "SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
	tests := []struct {
		name    string
		topic   string // testTopic when empty
		certURL string
	}{
		{"s3 website host", "arn:aws:sns:ap-southeast-2:123456789012:t", "https://sns.s3-ap-southeast-2.amazonaws.com/" + pemName},
		{"s3 host", "", "https://s3.amazonaws.com/" + pemName},
		{"s3 path-style bucket named like sns", "", "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/" + pemName},
		{"s3 regional host", "", "https://s3.us-east-1.amazonaws.com/" + pemName},
		{"suffix of attacker domain", "", "https://sns.us-east-1.amazonaws.com.evil.example/" + pemName},
		{"prefix label", "", "https://evil.sns.us-east-1.amazonaws.com/" + pemName},
		{"trailing dot", "", "https://sns.us-east-1.amazonaws.com./" + pemName},
		{"upper case host", "", "https://SNS.us-east-1.amazonaws.com/" + pemName},
		{"other region", "", "https://sns.us-west-2.amazonaws.com/" + pemName},
		{"region missing", "", "https://sns.amazonaws.com/" + pemName},
		{"china suffix for global region", "", "https://sns.us-east-1.amazonaws.com.cn/" + pemName},
		{"user info before attacker host", "", "https://sns.us-east-1.amazonaws.com@evil.example/" + pemName},
		{"user info before sns host", "", "https://evil.example@sns.us-east-1.amazonaws.com/" + pemName},
		{"user info with password", "", "https://a:b@sns.us-east-1.amazonaws.com/" + pemName},
		{"backslash user info", "", `https://sns.us-east-1.amazonaws.com\@evil.example/` + pemName},
		{"default port", "", "https://sns.us-east-1.amazonaws.com:443/" + pemName},
		{"other port", "", "https://sns.us-east-1.amazonaws.com:8443/" + pemName},
		{"empty port", "", "https://sns.us-east-1.amazonaws.com:/" + pemName},
		{"http", "", "http://sns.us-east-1.amazonaws.com/" + pemName},
		{"upper case scheme", "", "HTTPS://sns.us-east-1.amazonaws.com/" + pemName},
		{"scheme-relative", "", "//sns.us-east-1.amazonaws.com/" + pemName},
		{"query", "", "https://sns.us-east-1.amazonaws.com/" + pemName + "?x=1"},
		{"empty query", "", "https://sns.us-east-1.amazonaws.com/" + pemName + "?"},
		{"fragment", "", "https://sns.us-east-1.amazonaws.com/" + pemName + "#x"},
		{"other file name", "", "https://sns.us-east-1.amazonaws.com/cert.pem"},
		{"upper case hex", "", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ABCDEF.pem"},
		{"not hex", "", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-xyz.pem"},
		{"sub directory", "", "https://sns.us-east-1.amazonaws.com/a/" + pemName},
		{"dot segments", "", "https://sns.us-east-1.amazonaws.com/x/../" + pemName},
		{"percent-encoded path", "", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-%30.pem"},
		{"space", "", "https://sns.us-east-1.amazonaws.com/ " + pemName},
		{"extra host with other port", "", "https://127.0.0.1:1/" + pemName},
		{"ipv6 literal", "", "https://[::1]/" + pemName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			s.handle("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(makeCert(t, certSpec{})) })
			topic := tt.topic
			if topic == "" {
				topic = testTopic
			}
			v := s.verifier(t, topic)
			e := note(t, tt.certURL)
			e.TopicArn = topic
			if err := sns.Sign(&e, signingKey(t), sns.SignatureV2); err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrUntrustedURL) {
				t.Fatalf("err = %v, want ErrUntrustedURL", err)
			}
			if n := s.dials.Load() + s.hits.Load(); n != 0 {
				t.Fatalf("%d dials/requests, want none", n)
			}
		})
	}
}

// TestUnknownTopicFetchesNothing: a topic outside the allow-list is refused
// before any network call, even with a valid signature and certificate URL.
func TestUnknownTopicFetchesNothing(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	v := s.verifier(t, "arn:aws:sns:us-east-1:123456789012:other")
	for _, certURL := range []string{awsCertURL, s.url(testCertPath)} {
		if err := v.Verify(context.Background(), note(t, certURL)); !errors.Is(err, sns.ErrUnknownTopic) {
			t.Fatalf("err = %v, want ErrUnknownTopic", err)
		}
	}
	if err := v.Confirm(context.Background(), confirmation(t, awsCertURL, s.url("/confirm"))); !errors.Is(err, sns.ErrUnknownTopic) {
		t.Fatalf("Confirm: err = %v, want ErrUnknownTopic", err)
	}
	if n := s.dials.Load() + s.hits.Load(); n != 0 {
		t.Fatalf("%d dials/requests, want none", n)
	}
}

func TestUnsupportedSignatureVersion(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	v := s.verifier(t, testTopic)
	for _, version := range []string{"0", "3", "1 ", " 2", "01", "v1", "SHA256"} {
		e := note(t, awsCertURL)
		e.SignatureVersion = version
		if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrUnsupportedVersion) {
			t.Errorf("version %q: err = %v, want ErrUnsupportedVersion", version, err)
		}
		if err := sns.Sign(&e, signingKey(t), version); !errors.Is(err, sns.ErrUnsupportedVersion) {
			t.Errorf("Sign %q: err = %v, want ErrUnsupportedVersion", version, err)
		}
	}
	if n := s.dials.Load(); n != 0 {
		t.Fatalf("%d dials, want none", n)
	}
}

// TestBadCertificateResponse serves unacceptable answers on a trusted host.
func TestBadCertificateResponse(t *testing.T) {
	t.Parallel()
	good := string(makeCert(t, certSpec{}))
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := func(b string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(b)) }
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr error
	}{
		{"control: good", body(good), nil},
		{"control: trailing blank lines", body(good + "\n\r\n \t"), nil},
		{"wrapped in HTML", body("<html><body><pre>\n" + good + "</pre></body></html>\n"), sns.ErrCertificate},
		{"wrapped in XML", body("<?xml version=\"1.0\"?>\n<Certificate>\n" + good + "</Certificate>\n"), sns.ErrCertificate},
		{"leading junk", body("junk\n" + good), sns.ErrCertificate},
		{"leading newline", body("\n" + good), sns.ErrCertificate},
		{"trailing junk", body(good + "junk\n"), sns.ErrCertificate},
		{"two certificates", body(good + good), sns.ErrCertificate},
		{"broken block then good block", body("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n" + good), sns.ErrCertificate},
		{"PEM headers", body(strings.Replace(good, "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)), sns.ErrCertificate},
		{"other block type", body(strings.ReplaceAll(good, "CERTIFICATE", "PUBLIC KEY")), sns.ErrCertificate},
		{"not base64", body("-----BEGIN CERTIFICATE-----\n*****\n-----END CERTIFICATE-----\n"), sns.ErrCertificate},
		{"not a certificate", body("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), sns.ErrCertificate},
		{"empty", body(""), sns.ErrCertificate},
		{"too large", body(good + strings.Repeat(" ", sns.MaxCertSize)), sns.ErrCertificate},
		{"another name", body(string(makeCert(t, certSpec{cn: "evil.example", dns: []string{"evil.example"}}))), sns.ErrCertificate},
		{"name as a subdomain", body(string(makeCert(t, certSpec{cn: "sns.amazonaws.com.evil.example"}))), sns.ErrCertificate},
		{"wildcard name", body(string(makeCert(t, certSpec{dns: []string{"*.amazonaws.com"}}))), sns.ErrCertificate},
		{"name in SAN only", body(string(makeCert(t, certSpec{cn: "x", dns: []string{"sns.amazonaws.com"}}))), nil},
		{"expired at message time", body(string(makeCert(t, certSpec{
			notBefore: msgTime.Add(-48 * time.Hour), notAfter: msgTime.Add(-time.Second),
		}))), sns.ErrCertificate},
		{"not yet valid at message time", body(string(makeCert(t, certSpec{
			notBefore: msgTime.Add(time.Second), notAfter: msgTime.Add(48 * time.Hour),
		}))), sns.ErrCertificate},
		{"ECDSA key", body(string(makeCert(t, certSpec{key: ecKey}))), sns.ErrCertificate},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/SimpleNotificationService-ffff.pem", http.StatusFound)
		}, sns.ErrCertificate},
		{"permanent redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://evil.example/x.pem", http.StatusPermanentRedirect)
		}, sns.ErrCertificate},
		{"not found", http.NotFound, sns.ErrCertificate},
		{"server error is transient", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}, sns.ErrCertFetch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			s.handle(testCertPath, tt.handler)
			// The certificate served on the redirect target is a good one.
			s.serve("/SimpleNotificationService-ffff.pem", []byte(good))
			v := s.verifier(t, testTopic)
			for _, certURL := range []string{awsCertURL, s.url(testCertPath)} {
				err := v.Verify(context.Background(), note(t, certURL))
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("%s: err = %v, want %v", certURL, err, tt.wantErr)
				}
			}
			if n := s.hits.Load(); n != 2 {
				t.Fatalf("%d requests, want 2 (one per URL; no redirect followed)", n)
			}
		})
	}
}

// TestExtraHostSigningName: a certificate fetched from an extra host may be
// issued to that host; one from an AWS host may not.
func TestExtraHostSigningName(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{cn: "127.0.0.1", ips: []net.IP{net.IPv4(127, 0, 0, 1)}}))
	v := s.verifier(t, testTopic)
	if err := v.Verify(context.Background(), note(t, s.url(testCertPath))); err != nil {
		t.Fatalf("extra host: %v", err)
	}
	if err := v.Verify(context.Background(), note(t, awsCertURL)); !errors.Is(err, sns.ErrCertificate) {
		t.Fatalf("AWS host: err = %v, want ErrCertificate", err)
	}

	// A DNS extra host: localhost, with a certificate naming it.
	s2 := newCertServer(t)
	_, port, _ := net.SplitHostPort(s2.host)
	s2.serve(testCertPath, makeCert(t, certSpec{cn: "localhost", dns: []string{"localhost"}}))
	cfg := s2.config(testTopic)
	cfg.ExtraHosts = []string{"localhost:" + port}
	v2, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.Verify(context.Background(), note(t, "https://localhost:"+port+testCertPath)); err != nil {
		t.Fatalf("localhost: %v", err)
	}
}

// TestUntrustedTLS: a host serving a certificate from an unknown CA is a
// transport failure, whatever it serves.
func TestUntrustedTLS(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	other := newCertServer(t) // another CA
	cfg := s.config(testTopic)
	cfg.ExtraCAPEM = other.caPEM
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), note(t, s.url(testCertPath))); !errors.Is(err, sns.ErrCertFetch) {
		t.Fatalf("err = %v, want ErrCertFetch", err)
	}
	// Production defaults (system roots only) do not trust the test CA either.
	cfg.ExtraCAPEM = nil
	v, err = sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), note(t, awsCertURL)); !errors.Is(err, sns.ErrCertFetch) {
		t.Fatalf("system roots: err = %v, want ErrCertFetch", err)
	}
}

// TestForeignSubscribeURL: a confirmation whose SubscribeURL leaves the
// topic's SNS host is refused by Verify and Confirm, before any fetch.
func TestForeignSubscribeURL(t *testing.T) {
	t.Parallel()
	tests := []string{
		"https://evil.example/?Action=ConfirmSubscription",
		"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
		"https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
		"https://sns.us-east-1.amazonaws.com@evil.example/?Action=ConfirmSubscription",
		"https://sns.us-east-1.amazonaws.com:8443/?Action=ConfirmSubscription",
		"http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
		"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription#frag",
		"https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/",
	}
	for _, subURL := range tests {
		t.Run(subURL, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			s.serve(testCertPath, makeCert(t, certSpec{}))
			v := s.verifier(t, testTopic)
			e := confirmation(t, awsCertURL, subURL)
			if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrUntrustedURL) {
				t.Fatalf("Verify: err = %v, want ErrUntrustedURL", err)
			}
			if err := v.Confirm(context.Background(), e); !errors.Is(err, sns.ErrUntrustedURL) {
				t.Fatalf("Confirm: err = %v, want ErrUntrustedURL", err)
			}
			if n := s.dials.Load(); n != 0 {
				t.Fatalf("%d dials, want none", n)
			}
		})
	}
}

func TestBadSignatureEncoding(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	v := s.verifier(t, testTopic)
	for _, sig := range []string{"not base64!", "AAAA", "QQ=" /* bad padding */} {
		e := note(t, awsCertURL)
		e.Signature = sig
		if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrSignature) {
			t.Errorf("%q: err = %v, want ErrSignature", sig, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sns.Config
		ok   bool
	}{
		{"minimal", sns.Config{TopicARNs: []string{testTopic}}, true},
		{"china and gov", sns.Config{TopicARNs: []string{
			"arn:aws-cn:sns:cn-north-1:123456789012:t", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:t.fifo",
		}}, true},
		{"no topics", sns.Config{}, false},
		{"bad topic", sns.Config{TopicARNs: []string{"arn:aws:sqs:us-east-1:123456789012:q"}}, false},
		{"partition mismatch", sns.Config{TopicARNs: []string{"arn:aws:sns:cn-north-1:123456789012:t"}}, false},
		{"extra host with scheme", sns.Config{TopicARNs: []string{testTopic}, ExtraHosts: []string{"https://x"}}, false},
		{"extra host with path", sns.Config{TopicARNs: []string{testTopic}, ExtraHosts: []string{"x/y"}}, false},
		{"extra host with user", sns.Config{TopicARNs: []string{testTopic}, ExtraHosts: []string{"u@x"}}, false},
		{"extra host ok", sns.Config{TopicARNs: []string{testTopic}, ExtraHosts: []string{"sns.local:8443", "127.0.0.1:1"}}, true},
		{"CA without certificate", sns.Config{TopicARNs: []string{testTopic}, ExtraCAPEM: []byte("nope")}, false},
		{"client and CA", sns.Config{TopicARNs: []string{testTopic}, HTTPClient: &http.Client{}, ExtraCAPEM: makeCert(t, certSpec{})}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if _, err := sns.NewVerifier(tt.cfg); (err == nil) != tt.ok {
				t.Fatalf("NewVerifier err = %v", err)
			}
		})
	}
}
