package ingress_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/services/ingress"
)

// nxDNS is a DNS server on loopback that answers every query "no such
// domain", and a dialer that resolves through it with Go's resolver: a host
// that does not resolve, without sending anything off the machine.
type nxDNS struct {
	addr string
}

func startNXDNS(t *testing.T) *nxDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			resp := append([]byte(nil), buf[:n]...)
			resp[2] = 0x80 | resp[2]&0x79 // a response; opcode and RD kept
			resp[3] = 0x80 | 3            // RA, RCODE 3: no such domain
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	return &nxDNS{addr: pc.LocalAddr().String()}
}

// dial connects like net.Dialer, resolving names through the server.
func (d *nxDNS) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := &net.Dialer{Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "udp", d.addr)
		},
	}}
	return dialer.DialContext(ctx, network, addr)
}

// TestSNSAnswersHideInternalDetails: a certificate fetch or a confirmation
// that fails because its host does not resolve is answered 502 with a
// generic reason; the resolver's error (its address, the host name, the
// lookup) goes to the request's log line only.
func TestSNSAnswersHideInternalDetails(t *testing.T) {
	t.Parallel()
	dns := startNXDNS(t)
	h, local := startSNS(t, true, ingress.WithSNSConfig(func(c *sns.Config) { c.DialContext = dns.dial }))
	const unresolvable = "sns.us-east-1.amazonaws.com"

	note, err := local.Notification(topic, `{"id":"t-1","result":true,"image_url":[]}`, nil, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	note.SigningCertURL = "https://" + unresolvable + "/SimpleNotificationService-0123456789abcdef.pem" // not signed

	confirm := sns.Envelope{
		Type: sns.TypeSubscriptionConfirmation, MessageId: "b1d7b7bc-3a29-4c55-9d0c-2e4b6c8f1a10", TopicArn: topic,
		Token: "2336412f37fb687f5d51e6e2425929f5", Message: "You have chosen to subscribe to the topic " + topic + ".",
		SubscribeURL: "https://" + unresolvable + "/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=2336412f37fb687f5d51e6e2425929f5",
	}
	confirm.Timestamp = note.Timestamp
	if err := local.Sign(&confirm, sns.SignatureV1); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		env  sns.Envelope
	}{
		{"certificate fetch", note},
		{"confirmation", confirm},
	} {
		code, body, err := deliverSNS(h.base, "eks", tc.env, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusBadGateway {
			t.Fatalf("%s: %d %s, want 502", tc.name, code, body)
		}
		for _, detail := range []string{"lookup", "no such host", dns.addr, ":53", unresolvable, "amazonaws", "dial", "Token", "2336412f"} {
			if strings.Contains(string(body), detail) {
				t.Errorf("%s: answer %s holds %q", tc.name, body, detail)
			}
		}
	}
	if logs := h.logs.String(); strings.Count(logs, "no such host") < 2 {
		t.Fatalf("the resolver's errors are not in the log:\n%s", logs)
	}
}
