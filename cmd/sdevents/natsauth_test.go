package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// fetchOne pulls one message from c and returns nil when it got one.
func fetchOne(c jetstream.Consumer) error {
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return err
	}
	for range batch.Messages() {
		return nil
	}
	if err := batch.Error(); err != nil {
		return err
	}
	return errors.New("no message")
}

// streamMsgs is the number of messages in stream, read as the admin.
func (r *running) streamMsgs(t *testing.T, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.p.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// refused waits until the embedded server has counted one more permission
// violation than before.
func (r *running) refused(t *testing.T, before float64, what string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, what+" refused", func() bool { return violations(t, r.p) > before })
}

// runFlow starts `sdevents run` with the console on and an image server,
// and drives one job through every service: a grant through the operator
// API, a reservation decided for an apiAccessPreInvoke, an image archived
// from a task result, a job record published after the job result. It
// returns when ARCHIVE and JOBS hold their events.
func runFlow(t *testing.T) (*running, config.Config) {
	t.Helper()
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewGray(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(img.Bytes()) }))
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()
	cfg := exampleConfig(t, t.TempDir())
	cfg.Archive.AllowHosts = []string{host}
	cfg.Admin.Token = "perm-admin-token"
	r := startRun(t, cfg)
	addr := r.p.http.Addr()

	if _, _, err := sdevents(t, []string{"SDEVENTS_ADMIN_TOKEN=perm-admin-token"}, "quota", "grant", "token:user-perm", "10", "--url", "http://"+addr); err != nil {
		t.Fatal(err)
	}
	if code, body := sendCallback(t, "http://"+addr, cfg, callback.BizAPIPreInvoke, "user-perm", "i-perm", `{"batch_size":2,"n_iter":1}`); code != http.StatusOK || !strings.Contains(body, `"success":true`) {
		t.Fatalf("pre-invoke: %d %s", code, body)
	}
	task := `{"success":true,"data":{"generatedImageId":"g-perm","url":"http://` + host + `/p.png","type":"png"}}`
	if code, body := sendCallback(t, "http://"+addr, cfg, callback.BizTaskFinished, "user-perm", "i-perm", task); code != http.StatusOK {
		t.Fatalf("task result: %d %s", code, body)
	}
	if code, body := sendCallback(t, "http://"+addr, cfg, callback.BizJobFinished, "user-perm", "i-perm", `{"success":true}`); code != http.StatusOK {
		t.Fatalf("job result: %d %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "the image archived and the job published", func() bool {
		return r.streamMsgs(t, contract.StreamArchive) == 1 && r.streamMsgs(t, contract.StreamJobs) == 1
	})
	return r, cfg
}

// TestServicesDoTheirJobAndNoMore runs `sdevents run`, where every service
// connects as its own NATS user, through a whole job without one refusal;
// then, as each service's user, tries what another service does or what no
// service may do: every attempt is refused by the server and changes
// nothing.
func TestServicesDoTheirJobAndNoMore(t *testing.T) {
	t.Parallel()
	r, cfg := runFlow(t)
	acct := account.FromToken("user-perm")
	// A poison message is buried by the service that consumes it, as its
	// own user, and the console reads the record: a timer the quota
	// cannot read.
	if _, err := r.p.js.Publish(t.Context(), "sdevents.quota.due."+acct, []byte("{")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the timer buried", func() bool { return r.streamMsgs(t, "DEAD") == 1 })
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.p.http.Addr()+"/console/dead", nil)
	req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "quota-expiry") {
		t.Fatalf("dead letters page: %d\n%s", resp.StatusCode, page)
	}
	if n := violations(t, r.p); n != 0 {
		t.Fatalf("%v refusals during the normal flow", n)
	}
	r.forging = true
	grant, _ := json.Marshal(ledger.Event{Type: ledger.TypeGranted, Account: acct, Credits: 5000, At: time.Now()})
	for _, tc := range []struct {
		user, subject, stream string
	}{
		{natsauth.Ingress, "sd.quota." + acct, contract.StreamQuota},
		{natsauth.Archiver, "sd.quota." + acct, contract.StreamQuota},
		{natsauth.Aggregator, "sd.quota." + acct, contract.StreamQuota},
		{natsauth.Archiver, "sd.callback.default.sdTaskFinished", contract.StreamIngress},
		{natsauth.Quota, "sd.callback.default.sdTaskFinished", contract.StreamIngress},
		{natsauth.Console, "sd.sns.eks.Notification", contract.StreamIngress},
		{natsauth.Ingress, "sd.archive.stored." + acct, contract.StreamArchive},
		{natsauth.Quota, "sd.job.finished." + acct, contract.StreamJobs},
		{natsauth.Ingress, "sdevents.quota.due." + acct, contract.StreamQuotaTimers},
		{natsauth.Downstream, "sd.quota." + acct, contract.StreamQuota},
		{natsauth.Console, "sd.quota." + acct, contract.StreamQuota},
		{natsauth.Archiver, "sd.dead.aggregator", contract.StreamDead},
		{natsauth.Quota, "sd.dead.archiver", contract.StreamDead},
		{natsauth.Console, "sd.dead.quota-expiry", contract.StreamDead},
	} {
		t.Run(tc.user+" on "+tc.subject, func(t *testing.T) {
			before, msgs := violations(t, r.p), r.streamMsgs(t, tc.stream)
			_, js := r.connect(t, tc.user)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if ack, err := js.Publish(ctx, tc.subject, grant); err == nil {
				t.Fatalf("stored at %d", ack.Sequence)
			}
			r.refused(t, before, "the publication")
			if n := r.streamMsgs(t, tc.stream); n != msgs {
				t.Fatalf("%s went from %d to %d messages", tc.stream, msgs, n)
			}
		})
	}

	// A grant asked of the quota replicas: only the console and the admin
	// may ask.
	ask, _ := json.Marshal(quotarpc.GrantRequest{Account: acct, Credits: 5000})
	for _, user := range []string{natsauth.Ingress, natsauth.Archiver, natsauth.Aggregator, natsauth.Downstream} {
		t.Run(user+" asks for a grant", func(t *testing.T) {
			before, msgs := violations(t, r.p), r.streamMsgs(t, contract.StreamQuota)
			nc, _ := r.connect(t, user)
			if m, err := nc.Request(quotarpc.SubjectGrant, ask, time.Second); err == nil {
				t.Fatalf("answered %s", m.Data)
			}
			r.refused(t, before, "the grant request")
			if n := r.streamMsgs(t, contract.StreamQuota); n != msgs {
				t.Fatalf("QUOTA went from %d to %d messages", msgs, n)
			}
		})
	}

	// JetStream's API: another service's consumer, and the streams.
	for _, tc := range []struct {
		name, user string
		try        func(context.Context, jetstream.JetStream) error
	}{
		{"ingress pulls the archiver's messages", natsauth.Ingress, func(ctx context.Context, js jetstream.JetStream) error {
			c, err := js.Consumer(ctx, contract.StreamIngress, "archiver")
			if err != nil {
				return err
			}
			return fetchOne(c)
		}},
		{"aggregator changes the archiver's consumer", natsauth.Aggregator, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateConsumer(ctx, contract.StreamIngress, jetstream.ConsumerConfig{Durable: "archiver", AckPolicy: jetstream.AckExplicitPolicy,
				FilterSubject: "sd.callback.none"})
			return err
		}},
		{"archiver deletes the aggregator's consumer", natsauth.Archiver, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteConsumer(ctx, contract.StreamIngress, "aggregator")
		}},
		{"quota deletes INGRESS", natsauth.Quota, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, contract.StreamIngress)
		}},
		{"console purges QUOTA", natsauth.Console, func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, contract.StreamQuota)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"ingress updates QUOTA", natsauth.Ingress, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: contract.StreamQuota, Subjects: []string{"sd.quota.>"}, MaxAge: time.Second})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := violations(t, r.p)
			_, js := r.connect(t, tc.user)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := tc.try(ctx, js); err == nil {
				t.Fatal("done")
			}
			r.refused(t, before, tc.name)
		})
	}
	for stream, want := range map[string]uint64{contract.StreamIngress: 3, contract.StreamQuota: 2, contract.StreamArchive: 1, contract.StreamJobs: 1} {
		if n := r.streamMsgs(t, stream); n != want {
			t.Errorf("%s holds %d messages, want %d", stream, n, want)
		}
	}

	// Core subscriptions: only the console reads sd.> (its live view), and
	// nobody reads another user's replies.
	for _, tc := range []struct{ user, subject string }{
		{natsauth.Ingress, "sd.>"},
		{natsauth.Archiver, "sdevents.quota.rpc.decide"},
		{natsauth.Aggregator, natsauth.InboxPrefix(natsauth.Ingress) + ".>"},
		{natsauth.Downstream, natsauth.InboxPrefix(natsauth.Quota) + ".>"},
	} {
		t.Run(tc.user+" subscribes to "+tc.subject, func(t *testing.T) {
			before := violations(t, r.p)
			nc, _ := r.connect(t, tc.user, nats.PermissionErrOnSubscribe(true))
			sub, err := nc.SubscribeSync(tc.subject)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sub.NextMsg(5 * time.Second); !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("NextMsg: %v, want a permissions violation", err)
			}
			r.refused(t, before, "the subscription")
		})
	}
}

// TestDownstreamUser: the user of downstream.url reads the event streams,
// core and through consumers of its own, durable ones included; it may not
// publish events, delete streams, or touch the services' consumers.
func TestDownstreamUser(t *testing.T) {
	t.Parallel()
	r, cfg := runFlow(t)
	path := downstreamURLFile(cfg.NATS.Embedded.StoreDir)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode())
	}
	u, err := url.Parse(strings.TrimSpace(string(raw)))
	if err != nil || u.User.Username() != natsauth.Downstream || u.Host != strings.TrimPrefix(r.p.srv.ClientURL(), "nats://") {
		t.Fatalf("downstream.url %v (%v)", u.Redacted(), err)
	}
	nc, err := nats.Connect(u.String(), nats.PermissionErrOnSubscribe(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Reads: stream info, message gets, an ordered consumer, core sd.>.
	live, err := nc.SubscribeSync("sd.>")
	if err != nil {
		t.Fatal(err)
	}
	ingress, err := js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := ingress.GetMsg(ctx, 1); err != nil || !strings.HasPrefix(m.Subject, "sd.callback.") {
		t.Fatalf("message get: %v", err)
	}
	oc, err := js.OrderedConsumer(ctx, contract.StreamQuota, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || !strings.HasPrefix(m.Subject(), "sd.quota.") {
		t.Fatalf("ordered consumer: %v", err)
	}

	// A durable consumer of its own, consumed and acknowledged.
	c, err := js.CreateOrUpdateConsumer(ctx, contract.StreamJobs, jetstream.ConsumerConfig{Durable: "downstream-x", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := c.Info(ctx); err != nil || info.AckFloor.Stream != 1 {
		t.Fatalf("downstream-x: %+v %v", info, err)
	}
	if err := js.DeleteConsumer(ctx, contract.StreamJobs, "downstream-x"); err != nil {
		t.Fatal(err)
	}

	// The live view sees a new event.
	sendCallback(t, "http://"+r.p.http.Addr(), cfg, callback.BizTaskFinished, "user-perm", "i-live", `{"success":true,"data":{}}`)
	if m, err := live.NextMsg(10 * time.Second); err != nil || !strings.HasPrefix(m.Subject, "sd.") {
		t.Fatalf("core subscription to sd.>: %v", err)
	}

	// Refused.
	r.forging = true
	for _, tc := range []struct {
		name string
		try  func(context.Context) error
	}{
		{"publish a grant", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "sd.quota."+account.FromToken("user-perm"), []byte(`{"type":"granted","credits":5000}`))
			return err
		}},
		{"delete INGRESS", func(ctx context.Context) error { return js.DeleteStream(ctx, contract.StreamIngress) }},
		{"update the archiver's consumer", func(ctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(ctx, contract.StreamIngress, jetstream.ConsumerConfig{Durable: "archiver", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"pull from the aggregator's consumer", func(ctx context.Context) error {
			c, err := js.Consumer(ctx, contract.StreamIngress, "aggregator")
			if err != nil {
				return err
			}
			return fetchOne(c)
		}},
		{"read an internal stream", func(ctx context.Context) error {
			_, err := js.OrderedConsumer(ctx, contract.StreamQuotaTimers, jetstream.OrderedConsumerConfig{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := violations(t, r.p)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := tc.try(ctx); err == nil {
				t.Fatal("done")
			}
			r.refused(t, before, tc.name)
		})
	}
	if n := r.streamMsgs(t, contract.StreamQuota); n != 2 {
		t.Errorf("QUOTA holds %d messages, want 2", n)
	}
}

// TestRedirectedRepliesCannotMintCredits: a user that may read QUOTA can
// name a ledger subject as the reply subject of a message get, and the
// server publishes its answer there: a direct get answers with the stored
// grant itself. The copy carries the grant's Nats-Msg-Id (dropped as a
// duplicate within QUOTA's duplicate window) and the expected last subject
// sequence it was appended with (refused after it, but on a subject that was
// empty then, where the ledger skips an event of another account); a
// message get's JSON answer is stored and skipped as no ledger event. No
// balance changes.
func TestRedirectedRepliesCannotMintCredits(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	cfg.Admin.Token = "redirect-admin-token"
	r := startRun(t, cfg)
	base := "http://" + r.p.http.Addr()
	env := []string{"SDEVENTS_ADMIN_TOKEN=redirect-admin-token"}
	for _, n := range []string{"5", "7"} {
		if _, _, err := sdevents(t, env, "quota", "grant", "token:rich", n, "--url", base); err != nil {
			t.Fatal(err)
		}
	}
	rich, poor := account.FromToken("rich"), account.FromToken("poor")
	nc, _ := r.connect(t, natsauth.Downstream)
	for _, reply := range []string{"sd.quota." + rich, "sd.quota." + poor} {
		for seq := range 2 {
			req := fmt.Sprintf(`{"seq":%d}`, seq+1)
			if err := nc.PublishRequest("$JS.API.DIRECT.GET."+contract.StreamQuota, reply, []byte(req)); err != nil {
				t.Fatal(err)
			}
			if err := nc.PublishRequest("$JS.API.STREAM.MSG.GET."+contract.StreamQuota, reply, []byte(req)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// What landed: the copies the stream took (poor's subject was empty)
	// and the message-get answers (JSON that is no ledger event).
	natstest.Eventually(t, 10*time.Second, "the redirected answers stored", func() bool { return r.streamMsgs(t, contract.StreamQuota) > 2 })
	// What landed is no ledger event: QUOTA holds the two grants, and
	// copies of them nowhere.
	oc, err := r.p.js.OrderedConsumer(t.Context(), contract.StreamQuota, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := oc.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	grants := 0
	for m := range batch.Messages() {
		var e ledger.Event
		if json.Unmarshal(m.Data(), &e) == nil && e.Type == ledger.TypeGranted {
			grants++
		}
	}
	if grants != 2 {
		t.Errorf("QUOTA holds %d grants, want 2", grants)
	}
	for acct, want := range map[string]string{rich: "12", poor: "0"} {
		out, _, err := sdevents(t, env, "quota", "balance", acct, "--url", base)
		if fields := strings.Fields(out); err != nil || len(fields) < 4 || fields[2] != "balance" || fields[3] != want {
			t.Errorf("%s: want balance %s: %v\n%s", acct, want, err, out)
		}
	}
}

// TestServiceAloneAsItsOwnUser: `sdevents quota` against a NATS where it
// connects as the quota user starts and gets ready without touching the
// stream definitions (the user may not manage streams: nothing is refused),
// and `sdevents streams apply` applies them as the admin only.
func TestServiceAloneAsItsOwnUser(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	r := startRun(t, cfg)

	env := r.natsEnv(natsauth.Quota)
	alone, err := config.Load("../../sdevents.example.yaml", config.EnvFrom(append(env, "SDEVENTS_HTTP_ADDR=127.0.0.1:0", "SDEVENTS_LOG_LEVEL=warn")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, cleanup, err := build(ctx, alone, []string{"quota"})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if restricted, err := restrictedUser(ctx, p.nc); err != nil || !restricted {
		t.Fatalf("the quota user is restricted: %v (%v)", restricted, err)
	}
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	natstest.Eventually(t, 10*time.Second, "quota alone ready", func() bool {
		resp, err := http.Get("http://" + p.http.Addr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if _, _, err := sdevents(t, env, "streams", "apply"); !errors.Is(err, errRestrictedUser) {
		t.Fatalf("streams apply as quota: %v, want %v", err, errRestrictedUser)
	}
	out, _, err := sdevents(t, r.natsEnv(natsauth.Admin), "streams", "apply")
	if err != nil || !strings.Contains(out, "applied") {
		t.Fatalf("streams apply as admin: %v\n%s", err, out)
	}
}
