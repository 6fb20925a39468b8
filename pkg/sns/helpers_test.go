package sns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

const fixtureDir = "../../testdata/fixtures/sns"

// Synthetic messages: a topic, a time inside the test signing certificate's
// validity, and a certificate path.
const (
	testTopic    = "arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"
	testCertPath = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
	awsCertURL   = "https://sns.us-east-1.amazonaws.com" + testCertPath
)

var (
	msgTime   = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	certStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	certEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fixture is one AWS-signed envelope of testdata/fixtures/sns.
type fixture struct {
	name    string
	raw     []byte
	env     sns.Envelope
	certPEM []byte
}

// loadFixtures reads every fixture with the certificate of its directory.
func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures (%v)", err)
	}
	sort.Strings(files)
	var out []fixture
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, err := sns.ParseEnvelope(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pemPath := filepath.Join(filepath.Dir(f), env.SigningCertURL[strings.LastIndex(env.SigningCertURL, "/")+1:])
		certPEM, err := os.ReadFile(pemPath)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fixture{
			name:    filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f),
			raw:     raw,
			env:     env,
			certPEM: certPEM,
		})
	}
	return out
}

// fixtureTopics returns the topics of fs.
func fixtureTopics(fs []fixture) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.env.TopicArn)
	}
	return out
}

// keys shares one RSA signing key per test process (generation is slow).
var keys = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func signingKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCA is a certificate authority of the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newTestCA returns a CA named cn, valid from 2020 to 2040 (around every
// message time of the tests).
func newTestCA(t testing.TB, cn string) testCA {
	t.Helper()
	return newTestCAUntil(t, cn, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC))
}

// newTestCAUntil returns a CA named cn, valid from 2020 to notAfter.
func newTestCAUntil(t testing.TB, cn string, notAfter time.Time) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

var (
	signingCAOnce sync.Once
	theSigningCA  testCA
)

// signingCA returns the CA, one per test process, that issues makeCert's
// certificates; certServer.config trusts it.
func signingCA(t testing.TB) testCA {
	t.Helper()
	signingCAOnce.Do(func() { theSigningCA = newTestCA(t, "sdevents test signing CA") })
	return theSigningCA
}

// certSpec describes a signing certificate made by makeCert.
type certSpec struct {
	cn        string
	dns       []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	key       any // *rsa.PrivateKey or *ecdsa.PrivateKey; signingKey when nil
	// issuer signs the certificate: signingCA when nil.
	issuer *testCA
	// selfSigned makes the certificate sign itself (issuer is ignored).
	selfSigned bool
}

// makeCert returns a certificate for spec as PEM, issued by the tests'
// signing CA unless spec says otherwise.
func makeCert(t testing.TB, spec certSpec) []byte {
	t.Helper()
	if spec.cn == "" && spec.dns == nil && spec.ips == nil {
		spec.cn, spec.dns = "sns.amazonaws.com", []string{"sns.amazonaws.com"}
	}
	if spec.notBefore.IsZero() {
		spec.notBefore, spec.notAfter = certStart, certEnd
	}
	var key any = spec.key
	if key == nil {
		key = signingKey(t)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: spec.cn},
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	var pub any
	switch k := key.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	}
	parent, parentKey := tmpl, key
	if !spec.selfSigned {
		ca := spec.issuer
		if ca == nil {
			sc := signingCA(t)
			ca = &sc
		}
		parent, parentKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// tlsPKI is a throwaway CA and a server certificate for loopback and the AWS
// host names the tests use.
type tlsPKI struct {
	caPEM  []byte
	server tls.Certificate
}

var awsTestHosts = []string{
	"sns.us-east-1.amazonaws.com", "sns.us-east-2.amazonaws.com", "sns.us-west-2.amazonaws.com",
	"sns.ap-southeast-2.amazonaws.com", "sns.cn-north-1.amazonaws.com.cn", "sns.af-south-1.amazonaws.com",
	"localhost",
}

func newTLSPKI(t testing.TB) tlsPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sdevents test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "sdevents test server"},
		DNSNames:     awsTestHosts,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tlsPKI{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey},
	}
}

// certServer is a local TLS server standing in for the SNS certificate hosts:
// with its dialer, every host name resolves to it.
type certServer struct {
	srv   *httptest.Server
	caPEM []byte
	// signingCAPEM is the tests' signing CA, which config trusts too.
	signingCAPEM []byte
	host         string // 127.0.0.1:port
	hits         atomic.Int64
	dials        atomic.Int64

	mu     sync.Mutex
	routes map[string]http.HandlerFunc
}

// newCertServer starts a certServer and stops it with the test.
func newCertServer(t testing.TB) *certServer {
	t.Helper()
	p := newTLSPKI(t)
	s := &certServer{caPEM: p.caPEM, signingCAPEM: signingCA(t).pem, routes: map[string]http.HandlerFunc{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		h := s.routes[r.URL.Path]
		s.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	s.host = s.srv.Listener.Addr().String()
	return s
}

// handle sets the handler of path.
func (s *certServer) handle(path string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = h
}

// serve answers path with body.
func (s *certServer) serve(path string, body []byte) {
	s.handle(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		_, _ = w.Write(body)
	})
}

// dial connects any address to the server, counting the dials.
func (s *certServer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	s.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, s.host)
}

// url returns the server's https URL of path, as an extra host.
func (s *certServer) url(path string) string { return "https://" + s.host + path }

// config returns a Config trusting s: its CA and the tests' signing CA, its
// host as an extra host, its dialer for AWS host names, and a frozen clock.
func (s *certServer) config(topics ...string) sns.Config {
	return sns.Config{
		TopicARNs:   topics,
		ExtraHosts:  []string{s.host},
		ExtraCAPEM:  append(append([]byte(nil), s.caPEM...), s.signingCAPEM...),
		DialContext: s.dial,
		Now:         func() time.Time { return msgTime },
	}
}

// verifier returns NewVerifier(s.config(topics...)).
func (s *certServer) verifier(t testing.TB, topics ...string) *sns.Verifier {
	t.Helper()
	v, err := sns.NewVerifier(s.config(topics...))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// verifierAt returns a verifier trusting s whose clock reads now.
func (s *certServer) verifierAt(t testing.TB, now time.Time, topics ...string) *sns.Verifier {
	t.Helper()
	cfg := s.config(topics...)
	cfg.Now = func() time.Time { return now }
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// at returns the fixture's Timestamp: the fixtures are years old, so the
// verifiers that check them have their clock moved there.
func (f fixture) at(t testing.TB) time.Time {
	t.Helper()
	ts, err := f.env.Time()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// note returns a Notification for testTopic at msgTime, signed with
// signingKey (version 2) for certURL.
func note(t testing.TB, certURL string) sns.Envelope {
	t.Helper()
	subject := "task finished"
	e := sns.Envelope{
		Type:           sns.TypeNotification,
		MessageId:      "2b6b2b1a-8d1e-5f0e-9c55-3f3d2b8b6c01",
		TopicArn:       testTopic,
		Subject:        &subject,
		Message:        `{"id":"t-1","result":true,"image_url":["s3://out/output/t-1-1.png"]}`,
		Timestamp:      msgTime.Format("2006-01-02T15:04:05.000Z"),
		SigningCertURL: certURL,
	}
	if err := sns.Sign(&e, signingKey(t), sns.SignatureV2); err != nil {
		t.Fatal(err)
	}
	return e
}

// confirmation returns a SubscriptionConfirmation for testTopic, signed with
// signingKey (version 1).
func confirmation(t testing.TB, certURL, subscribeURL string) sns.Envelope {
	t.Helper()
	e := sns.Envelope{
		Type:           sns.TypeSubscriptionConfirmation,
		MessageId:      "f3f2fc87-c426-4c2f-9044-b55890c0939c",
		Token:          "2336412f37fb687f5d51e6e2425929f5",
		TopicArn:       testTopic,
		Message:        "You have chosen to subscribe to the topic " + testTopic,
		SubscribeURL:   subscribeURL,
		Timestamp:      msgTime.Format("2006-01-02T15:04:05.000Z"),
		SigningCertURL: certURL,
	}
	if err := sns.Sign(&e, signingKey(t), sns.SignatureV1); err != nil {
		t.Fatal(err)
	}
	return e
}
