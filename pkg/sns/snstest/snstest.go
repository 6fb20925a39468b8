// Package snstest is a local SNS for tests and the simulator: an HTTPS server
// on loopback with its own CA that serves a signing certificate (issued by
// that CA, as AWS's are by Amazon's) and answers SubscribeURL confirmations,
// and a signer that builds envelopes the way SNS does. Configure a receiver
// with Host() as an extra trusted host and CAPEM() as an extra CA.
package snstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/sdevents/sdevents/pkg/sns"
)

// CertPath is where the server serves its signing certificate.
const CertPath = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"

// Server is a running local SNS.
type Server struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	certPEM []byte
	caPEM   []byte

	mu           sync.Mutex
	confirmed    map[string]bool // subscription tokens confirmed by a GET
	confirmGets  map[string]int  // ConfirmSubscription GETs per token
	failConfirms int             // GETs still to answer 500
	certGets     atomic.Int64
}

// New starts a server; Close stops it.
func New() (*Server, error) {
	ca, caKey, caPEM, err := newCA()
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("snstest: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sns.amazonaws.com"},
		DNSNames:     []string{"sns.amazonaws.com"},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("snstest: certificate: %w", err)
	}
	s := &Server{
		key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM: caPEM,
		confirmed: map[string]bool{}, confirmGets: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CertPath, func(w http.ResponseWriter, _ *http.Request) {
		s.certGets.Add(1)
		_, _ = w.Write(s.certPEM)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("Action") != "ConfirmSubscription" {
			http.Error(w, "unknown action", http.StatusBadRequest)
			return
		}
		token := r.URL.Query().Get("Token")
		s.mu.Lock()
		s.confirmGets[token]++
		fail := s.failConfirms > 0
		if fail {
			s.failConfirms--
		} else {
			s.confirmed[token] = true
		}
		s.mu.Unlock()
		if fail {
			http.Error(w, "internal failure", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>`))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("snstest: listen: %w", err)
	}
	tlsCert, err := serverCert(ca, caKey)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12}
	s.srv.StartTLS()
	return s, nil
}

// newCA returns a CA valid from two days ago for a year: it issues the TLS
// and the signing certificate.
func newCA() (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snstest: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sdevents snstest CA"},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snstest: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snstest: CA: %w", err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// serverCert issues the HTTPS certificate of the loopback listener.
func serverCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("snstest: TLS key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sdevents snstest"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("snstest: TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serial returns a random certificate serial number.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Host is the server's host:port, to trust as an extra host.
func (s *Server) Host() string { return s.srv.Listener.Addr().String() }

// CAPEM is the CA of the server's TLS and signing certificates, to trust as
// an extra CA.
func (s *Server) CAPEM() []byte { return s.caPEM }

// CertURL is the SigningCertURL of the envelopes the server signs.
func (s *Server) CertURL() string { return "https://" + s.Host() + CertPath }

// CertFetches counts the certificate downloads served.
func (s *Server) CertFetches() int64 { return s.certGets.Load() }

// Confirmed reports whether the subscription with token was confirmed.
func (s *Server) Confirmed(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed[token]
}

// ConfirmGets counts the ConfirmSubscription GETs made with token, failed
// ones included.
func (s *Server) ConfirmGets(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmGets[token]
}

// FailConfirmations makes the next n ConfirmSubscription GETs answer 500
// without confirming.
func (s *Server) FailConfirmations(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failConfirms = n
}

// Sign signs e with the server's key as SNS does (version "1" or "2"),
// after pointing its SigningCertURL at the server. The caller sets every
// other field; e is unchanged on error (the errors of sns.Sign).
func (s *Server) Sign(e *sns.Envelope, version string) error {
	cp := *e
	cp.SigningCertURL = s.CertURL()
	if err := sns.Sign(&cp, s.key, version); err != nil {
		return err
	}
	*e = cp
	return nil
}

// Notification returns a signed Notification of message on topicARN. A nil
// subject leaves Subject out.
func (s *Server) Notification(topicARN, message string, subject *string, version string) (sns.Envelope, error) {
	e := sns.Envelope{
		Type: sns.TypeNotification, MessageId: nuid.Next(), TopicArn: topicARN, Subject: subject,
		Message: message, Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		SigningCertURL: s.CertURL(), UnsubscribeURL: "https://" + s.Host() + "/?Action=Unsubscribe",
	}
	return e, sns.Sign(&e, s.key, version)
}

// SubscriptionConfirmation returns a signed confirmation request for topicARN
// whose SubscribeURL points at the server.
func (s *Server) SubscriptionConfirmation(topicARN, version string) (sns.Envelope, error) {
	token := nuid.Next()
	e := sns.Envelope{
		Type: sns.TypeSubscriptionConfirmation, MessageId: nuid.Next(), TopicArn: topicARN, Token: token,
		Message:        "You have chosen to subscribe to the topic " + topicARN + ".",
		SubscribeURL:   "https://" + s.Host() + "/?Action=ConfirmSubscription&TopicArn=" + topicARN + "&Token=" + token,
		Timestamp:      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		SigningCertURL: s.CertURL(),
	}
	return e, sns.Sign(&e, s.key, version)
}
