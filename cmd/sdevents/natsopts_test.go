package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/sdevents/sdevents/pkg/config"
)

// testPKI is a CA and the certificates it signed, as PEM files.
type testPKI struct {
	dir                            string
	ca, serverCert, serverKey      string
	clientCert, clientKey, otherCA string
	caCert                         *x509.Certificate
	caKey                          *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caCert, p.caKey, p.ca = p.authority(t, "ca.pem")
	_, _, p.otherCA = p.authority(t, "other-ca.pem")
	p.serverCert, p.serverKey = p.leaf(t, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.leaf(t, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) authority(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sdevents test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, p.write(t, name, "CERTIFICATE", der)
}

func (p *testPKI) leaf(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// startServer starts a JetStream nats-server on loopback with opts
// changed by change, and returns its client port's host:port.
func startServer(t *testing.T, change func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8 << 20}
	change(opts)
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s.Addr().String()
}

// TestNATSClientTLS: a service against a NATS that requires TLS with client
// certificates connects with nats.tls (CA, certificate, key), stores the
// stream definitions and gets ready; without the client certificate, or
// trusting another CA, it does not start.
func TestNATSClientTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	addr := startServer(t, func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, tc, 5
	})
	base := exampleConfig(t, t.TempDir())
	base.NATS.URL = "tls://" + addr
	for _, tc := range []struct {
		name    string
		tls     config.NATSTLS
		wantErr string
	}{
		{"CA and client certificate", config.NATSTLS{CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}, ""},
		{"no client certificate", config.NATSTLS{CAFile: pki.ca}, "connect nats"},
		{"another CA", config.NATSTLS{CAFile: pki.otherCA, CertFile: pki.clientCert, KeyFile: pki.clientKey}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.NATS.TLS = tc.tls
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, cleanup, err := build(ctx, cfg, []string{"ingress"})
			if tc.wantErr != "" {
				if err == nil {
					cleanup()
					t.Fatal("started")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not name %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			if !p.nc.IsConnected() || !p.nc.TLSRequired() {
				t.Fatalf("connected %v, TLS %v", p.nc.IsConnected(), p.nc.TLSRequired())
			}
			if st, err := p.nc.TLSConnectionState(); err != nil || len(st.PeerCertificates) == 0 {
				t.Fatalf("TLS state: %v", err)
			}
		})
	}
}

// TestNATSClientNkeyAndPassword: the other ways to authenticate to an
// external NATS, against a server that knows an nkey user and a password
// user: each connects, and a wrong secret does not.
func TestNATSClientNkeyAndPassword(t *testing.T) {
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	dir := t.TempDir()
	seedFile, otherFile := filepath.Join(dir, "user.nk"), filepath.Join(dir, "other.nk")
	for f, s := range map[string][]byte{seedFile: seed, otherFile: otherSeed} {
		if err := os.WriteFile(f, s, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := startServer(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		o.Users = []*server.User{{Username: "svc", Password: "right"}}
	})
	for _, tc := range []struct {
		name string
		n    config.NATS
		ok   bool
	}{
		{"nkey", config.NATS{NkeyFile: seedFile}, true},
		{"another nkey", config.NATS{NkeyFile: otherFile}, false},
		{"password", config.NATS{User: "svc", Password: "right"}, true},
		{"wrong password", config.NATS{User: "svc", Password: "wrong"}, false},
		{"nothing", config.NATS{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.NATS = tc.n
			cfg.NATS.URL = "nats://" + addr
			nc, err := connectNATS(cfg)
			if err == nil {
				nc.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("connect: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
