package simulator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/sdevents/sdevents/pkg/sns"
)

// CA is the local SNS's certificate authority: it issues the TLS
// certificate of the HTTPS server that serves the signing certificate and
// answers SubscribeURL. A receiver trusts it with sns[].ca_file.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the certificate, what ca_file holds.
	PEM []byte
}

// NewCA creates a CA valid for ten years.
func NewCA() (CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, fmt.Errorf("simulator: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sdevents simulator SNS CA", Organization: []string{"sdevents"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return CA{}, fmt.Errorf("simulator: CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LoadOrCreateCA reads the CA from certFile and keyFile, or creates one and
// writes both files (the key with mode 0600) when neither exists. Keeping the
// CA across runs lets a receiver configured once (ca_file) trust every run.
func LoadOrCreateCA(certFile, keyFile string) (CA, bool, error) {
	certPEM, errC := os.ReadFile(certFile)
	keyPEM, errK := os.ReadFile(keyFile)
	if errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
		ca, err := NewCA()
		if err != nil {
			return CA{}, false, err
		}
		der, err := x509.MarshalECPrivateKey(ca.Key)
		if err != nil {
			return CA{}, false, err
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return CA{}, false, fmt.Errorf("simulator: write CA key: %w", err)
		}
		if err := os.WriteFile(certFile, ca.PEM, 0o644); err != nil {
			return CA{}, false, fmt.Errorf("simulator: write CA: %w", err)
		}
		return ca, true, nil
	}
	if errC != nil || errK != nil {
		return CA{}, false, fmt.Errorf("simulator: CA files: %w", errors.Join(errC, errK))
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return CA{}, false, errors.New("simulator: CA files hold no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return CA{}, false, fmt.Errorf("simulator: CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return CA{}, false, fmt.Errorf("simulator: CA key: %w", err)
	}
	return CA{Cert: cert, Key: key, PEM: certPEM}, false, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// LocalSNS is a local SNS endpoint: an HTTPS server (certificate issued by
// its CA) that serves the signing certificate at
// /SimpleNotificationService-<hex>.pem and answers SubscribeURL
// confirmations, and a signer that builds envelopes as SNS does.
type LocalSNS struct {
	ca       CA
	ln       net.Listener
	srv      *http.Server
	key      *rsa.PrivateKey
	certPath string

	mu        sync.Mutex
	certs     map[string][]byte        // path → PEM
	confirmed map[string]chan struct{} // subscription token → closed once confirmed

	certGets, confirms atomic.Int64
}

// NewLocalSNS starts a local SNS on addr (host:port; port 0 picks one) with
// a fresh 2048-bit signing key and a TLS certificate issued by ca for the
// loopback addresses, "localhost" and addr's host. Close stops it.
func NewLocalSNS(addr string, ca CA) (*LocalSNS, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("simulator: signing key: %w", err)
	}
	signTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sns.amazonaws.com"},
		DNSNames:     []string{"sns.amazonaws.com"},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signDER, err := x509.CreateCertificate(rand.Reader, signTmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("simulator: signing certificate: %w", err)
	}
	sum := sha256.Sum256(signDER)
	s := &LocalSNS{
		ca: ca, key: key, certPath: "/SimpleNotificationService-" + hex.EncodeToString(sum[:16]) + ".pem",
		certs: map[string][]byte{}, confirmed: map[string]chan struct{}{},
	}
	s.certs[s.certPath] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signDER})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: local SNS: %w", err)
	}
	tlsCert, err := s.serverCert(ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{file}", s.serveCert)
	mux.HandleFunc("GET /{$}", s.serveAction)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          nil,
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// serverCert issues the HTTPS certificate for the listener's address.
func (s *LocalSNS) serverCert(addr string) (tls.Certificate, error) {
	host, _, _ := net.SplitHostPort(addr)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sdevents simulator SNS"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(0, 0, 30),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.Cert, &key.PublicKey, s.ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("simulator: TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Close stops the server.
func (s *LocalSNS) Close() error { return s.srv.Close() }

// Host is the server's host:port: what the receiver's sns[].cert_hosts must
// hold.
func (s *LocalSNS) Host() string { return s.ln.Addr().String() }

// CAPEM is the CA certificate: what the receiver's sns[].ca_file must hold.
func (s *LocalSNS) CAPEM() []byte { return s.ca.PEM }

// CertURL is the SigningCertURL of the envelopes the server signs.
func (s *LocalSNS) CertURL() string { return "https://" + s.Host() + s.certPath }

// CertFetches counts the signing-certificate downloads served.
func (s *LocalSNS) CertFetches() int64 { return s.certGets.Load() }

// ServeCert serves pemBytes at path as well (for instance a real AWS
// signing certificate, to verify AWS-signed messages through this host).
func (s *LocalSNS) ServeCert(path string, pemBytes []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[path] = pemBytes
}

// ReceiverConfig is the verifier configuration that a receiver trusting this
// SNS (cert_hosts: [Host()], ca_file holding CAPEM()) builds for topics.
func (s *LocalSNS) ReceiverConfig(topics ...string) sns.Config {
	return sns.Config{TopicARNs: topics, ExtraHosts: []string{s.Host()}, ExtraCAPEM: s.CAPEM()}
}

func (s *LocalSNS) serveCert(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, ok := s.certs["/"+r.PathValue("file")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.certGets.Add(1)
	w.Header().Set("Content-Type", "application/x-x509-ca-cert")
	_, _ = w.Write(body)
}

func (s *LocalSNS) serveAction(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "text/xml")
	switch q.Get("Action") {
	case "ConfirmSubscription":
		s.mu.Lock()
		ch, ok := s.confirmed[q.Get("Token")]
		if ok {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Invalid token</Message></Error></ErrorResponse>`))
			return
		}
		s.confirms.Add(1)
		var arn strings.Builder
		_ = xml.EscapeText(&arn, []byte(q.Get("TopicArn")+":"+nuid.Next()))
		_, _ = fmt.Fprintf(w, `<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ConfirmSubscriptionResult><SubscriptionArn>%s</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>`,
			arn.String())
	case "Unsubscribe":
		_, _ = w.Write([]byte(`<UnsubscribeResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"/>`))
	default:
		http.Error(w, "unknown action", http.StatusBadRequest)
	}
}

// timestamp formats t as SNS does (milliseconds, UTC).
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Notification returns a Notification of message on topic, signed with
// version ("1" or "2"). A nil subject leaves Subject out.
func (s *LocalSNS) Notification(topic, message string, subject *string, version string) (sns.Envelope, error) {
	e := sns.Envelope{
		Type: sns.TypeNotification, MessageId: newMessageID(), TopicArn: topic, Subject: subject,
		Message: message, Timestamp: timestamp(time.Now()), SigningCertURL: s.CertURL(),
		UnsubscribeURL: "https://" + s.Host() + "/?Action=Unsubscribe&SubscriptionArn=" + url.QueryEscape(topic+":sim"),
	}
	return e, sns.Sign(&e, s.key, version)
}

// SubscriptionConfirmation returns a signed confirmation request for topic
// whose SubscribeURL points at the server; WaitConfirmed waits for its GET.
func (s *LocalSNS) SubscriptionConfirmation(topic, version string) (sns.Envelope, error) {
	token := hex.EncodeToString([]byte(nuid.Next() + nuid.Next()))
	e := sns.Envelope{
		Type: sns.TypeSubscriptionConfirmation, MessageId: newMessageID(), TopicArn: topic, Token: token,
		Message: "You have chosen to subscribe to the topic " + topic +
			".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
		SubscribeURL:   "https://" + s.Host() + "/?Action=ConfirmSubscription&TopicArn=" + url.QueryEscape(topic) + "&Token=" + token,
		Timestamp:      timestamp(time.Now()),
		SigningCertURL: s.CertURL(),
	}
	if err := sns.Sign(&e, s.key, version); err != nil {
		return e, err
	}
	s.mu.Lock()
	s.confirmed[token] = make(chan struct{})
	s.mu.Unlock()
	return e, nil
}

// WaitConfirmed blocks until the SubscribeURL of the confirmation with
// token has been fetched, or ctx ends.
func (s *LocalSNS) WaitConfirmed(ctx context.Context, token string) error {
	s.mu.Lock()
	ch, ok := s.confirmed[token]
	s.mu.Unlock()
	if !ok {
		return errors.New("simulator: unknown subscription token")
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newMessageID returns a UUID-shaped message id, as SNS's.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
