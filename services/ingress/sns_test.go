package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/pkg/sns/snstest"
	"github.com/sdevents/sdevents/services/ingress"
)

const topic = "arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"

func startSNS(t *testing.T, autoConfirm bool, opts ...ingress.Option) (*harness, *snstest.Server) {
	t.Helper()
	local, err := snstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	return startHarness(t, snsConfig(t, local, autoConfirm), opts...), local
}

// snsConfig is the test configuration with an SNS source "eks" trusting
// local (its host and CA).
func snsConfig(t *testing.T, local *snstest.Server, autoConfirm bool) ingress.Config {
	t.Helper()
	ca := t.TempDir() + "/ca.pem"
	if err := writeFile(ca, local.CAPEM()); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.SNS = []ingress.SNSSource{{Name: "eks", TopicARNs: []string{topic}, AutoConfirm: autoConfirm, CertHosts: []string{local.Host()}, CAFile: ca}}
	return cfg
}

func (h *harness) postSNS(source string, env sns.Envelope, header map[string]string) int {
	h.t.Helper()
	code, _, err := deliverSNS(h.base, source, env, header)
	if err != nil {
		h.t.Fatal(err)
	}
	return code
}

// deliverSNS POSTs env to the ingress at base as SNS does and returns the
// answer's status and body. An error answer must say success:false.
func deliverSNS(base, source string, env sns.Envelope, header map[string]string) (int, []byte, error) {
	raw, err := json.Marshal(env)
	if err != nil {
		return 0, nil, err
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/sns/"+source, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	req.Header.Set("x-amz-sns-message-type", env.Type)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 && !bytes.Contains(body, []byte(`"success":false`)) {
		return 0, nil, fmt.Errorf("error answer without success:false: %s", body)
	}
	return resp.StatusCode, body, nil
}

// replica starts another ingress with cfg on h's NATS server (a second
// replica, or the first one restarted) and returns its base URL.
func (h *harness) replica(cfg ingress.Config, opts ...ingress.Option) string {
	h.t.Helper()
	_, js := natstest.Connect(h.t, h.node.URL())
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(h.logs), reg)
	in, err := ingress.New(context.Background(), cfg, js, reg, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	in.Routes(srv.Echo())
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = in.Run(ctx) })
	h.t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		wg.Wait()
	})
	natstest.Eventually(h.t, 10*time.Second, "replica ready", func() bool { return in.Ready(ctx) == nil })
	return "http://" + srv.Addr()
}

// TestSNSNotificationsStoredOnceAcrossRetries: v1 and v2 notifications from a
// local SNS with its own CA are stored once each, however often SNS retries.
func TestSNSNotificationsStoredOnceAcrossRetries(t *testing.T) {
	t.Parallel()
	h, local := startSNS(t, true)
	msg := `{"id":"task-7","status":"completed","result":true,"image_url":["s3://out/t/task-7-1.png"],"output_url":"s3://out/t/task-7.out","context":{"account":"user-42"}}`
	subject := "done"
	for _, v := range []string{sns.SignatureV1, sns.SignatureV2} {
		env, err := local.Notification(topic, msg, &subject, v)
		if err != nil {
			t.Fatal(err)
		}
		for retry := range 4 {
			if code := h.postSNS("eks", env, nil); code != http.StatusOK {
				t.Fatalf("v%s retry %d: %d", v, retry, code)
			}
		}
	}
	if n := h.count("sd.sns.eks.Notification"); n != 2 {
		t.Fatalf("stored %d notifications, want 2", n)
	}
	m := h.last("sd.sns.eks.Notification")
	if m.Header.Get("sd-task-id") != "task-7" || m.Header.Get("sd-account") != account.FromToken("user-42") {
		t.Fatalf("headers %v", m.Header)
	}
	var stored sns.Envelope
	if err := json.Unmarshal(m.Data, &stored); err != nil || stored.Signature == "" {
		t.Fatalf("data is not the signed envelope: %v", err)
	}
	if local.CertFetches() != 1 {
		t.Fatalf("certificate fetched %d times, want 1 (cached)", local.CertFetches())
	}
}

func TestSNSSubscriptionConfirmed(t *testing.T) {
	t.Parallel()
	for _, auto := range []bool{true, false} {
		h, local := startSNS(t, auto)
		env, err := local.SubscriptionConfirmation(topic, sns.SignatureV1)
		if err != nil {
			t.Fatal(err)
		}
		if code := h.postSNS("eks", env, nil); code != http.StatusOK {
			t.Fatalf("auto_confirm=%v: %d", auto, code)
		}
		if local.Confirmed(env.Token) != auto {
			t.Fatalf("auto_confirm=%v: confirmed = %v", auto, local.Confirmed(env.Token))
		}
		if n := h.count("sd.sns.eks.SubscriptionConfirmation"); n != 1 {
			t.Fatalf("stored %d", n)
		}
	}
}

func TestSNSRefusals(t *testing.T) {
	t.Parallel()
	h, local := startSNS(t, true)
	good, err := local.Notification(topic, `{"id":1,"result":true,"image_url":[]}`, nil, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	otherTopic, err := local.Notification("arn:aws:sns:us-east-1:123456789012:other", `{}`, nil, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	forged := good
	forged.Message = `{"id":1,"result":true,"image_url":["s3://evil/x.png"]}`
	badConfirm, err := local.SubscriptionConfirmation(topic, sns.SignatureV1)
	if err != nil {
		t.Fatal(err)
	}
	badConfirm.SubscribeURL = "https://evil.example/?Action=ConfirmSubscription"
	tests := []struct {
		name   string
		source string
		env    sns.Envelope
		header map[string]string
		want   int
	}{
		{"unknown source", "nope", good, nil, 404},
		{"raw delivery", "eks", good, map[string]string{"x-amz-sns-rawdelivery": "true"}, 403},
		{"forged message", "eks", forged, nil, 403},
		{"unknown topic", "eks", otherTopic, nil, 403},
		{"foreign SubscribeURL", "eks", badConfirm, nil, 403},
		{"type header mismatch", "eks", good, map[string]string{"x-amz-sns-message-type": "SubscriptionConfirmation"}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code := h.postSNS(tc.source, tc.env, tc.header); code != tc.want {
				t.Fatalf("code = %d, want %d", code, tc.want)
			}
		})
	}
	if local.CertFetches() > 1 {
		t.Fatalf("%d certificate fetches: refusals before the signature check must not fetch", local.CertFetches())
	}
	if local.Confirmed(badConfirm.Token) {
		t.Fatal("a foreign SubscribeURL was confirmed")
	}
	if n := h.count(">"); n != 0 {
		t.Fatalf("refused messages stored %d", n)
	}
}

// movingClock is a clock a test moves.
type movingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *movingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *movingClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestSNSStaleReplayRefused replays one signed notification while the SNS
// verifier's clock moves: stored once while fresh, then refused (403, nothing
// stored) once older than ingress.sns_max_age, and in particular once the
// de-duplication horizon and JetStream's duplicate window are behind it. A
// Timestamp more than 5 minutes ahead is refused too.
func TestSNSStaleReplayRefused(t *testing.T) {
	t.Parallel()
	clock := &movingClock{now: time.Now()}
	h, local := startSNS(t, true, ingress.WithSNSConfig(func(c *sns.Config) { c.Now = clock.Now }))
	env, err := local.Notification(topic, `{"id":"t-stale","result":true,"image_url":[]}`, nil, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := env.Time()
	if err != nil {
		t.Fatal(err)
	}
	maxAge := ingress.DefaultSNSMaxAge
	for _, step := range []struct {
		name  string
		clock time.Duration // after the Timestamp
		want  int
	}{
		{"fresh", 0, http.StatusOK},
		{"retried at the maximum age", maxAge, http.StatusOK},
		{"past the maximum age", maxAge + time.Second, http.StatusForbidden},
		{"past the de-duplication horizon", ingress.DefaultDedupHorizon + 11*time.Minute, http.StatusForbidden},
		{"from the future", -sns.MaxClockSkew - time.Second, http.StatusForbidden},
	} {
		clock.Set(signed.Add(step.clock))
		if code := h.postSNS("eks", env, nil); code != step.want {
			t.Fatalf("%s: %d, want %d", step.name, code, step.want)
		}
	}
	if n := h.count("sd.sns.eks.Notification"); n != 1 {
		t.Fatalf("stored %d times, want 1", n)
	}
}
