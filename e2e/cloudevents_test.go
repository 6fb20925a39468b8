package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/pkg/sns/snstest"
	"github.com/sdevents/sdevents/services/console"
	"github.com/sdevents/sdevents/services/ingress"
)

const snsTopic = "arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"

// sdkStreams are the public streams and the subjects a downstream team
// subscribes to with the CloudEvents SDK, one consumer per subject.
var sdkStreams = []struct{ stream, subject string }{
	{contract.StreamIngress, "sd.callback.>"},
	{contract.StreamIngress, "sd.sns.>"},
	{"QUOTA", "sd.quota.>"},
	{contract.StreamArchive, "sd.archive.>"},
	{contract.StreamJobs, "sd.job.>"},
}

// TestEveryStreamReadWholeByCloudEventsSDK drives the real ingress, quota,
// archiver and aggregator on one embedded JetStream node with signed
// callbacks, an operator grant and SNS messages from a local SNS, until every
// public stream holds every kind of event sdevents writes there: INGRESS
// callbacks (with and without a Content-Type, with parameters, with one that
// is not a media type, with a bizType that needs percent-encoding) and SNS
// messages, QUOTA granted/reserved/committed/released/denied/expired, ARCHIVE
// stored/failed, JOBS from callbacks and from SNS.
//
// It then reads the streams as a downstream team would, with the CloudEvents
// Go SDK's JetStream binding (sdk-go/protocol/nats_jetstream/v2 v2.16.2):
//   - the SDK's client receives every message as a valid event (none is
//     dropped by its validation);
//   - each message, decoded in binary mode, has every attribute
//     (specversion, id, source, type, time, subject, datacontenttype,
//     extensions) equal to its ce-* header, the data equal to the body, and
//     datacontenttype what sdevents means it to be.
//
// The SDK reads header values verbatim: it does not undo the binding's
// percent-encoding, so the one attribute here that needed it (the type of
// the unusual bizType) reaches it encoded, and one round of percent-decoding
// gives sdevents' value.
func TestEveryStreamReadWholeByCloudEventsSDK(t *testing.T) {
	t.Parallel()
	const (
		token    = "user-cloudevents"
		snsToken = "user-cloudevents-sns"
		ttl      = 15 * time.Second // several sync deadlines: a reserve is committed long before
	)
	d := singleNode(t)
	local, err := snstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	ca := filepath.Join(t.TempDir(), "sns-ca.pem")
	if err := os.WriteFile(ca, local.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	d.ingress.SNS = []ingress.SNSSource{{Name: "eks", TopicARNs: []string{snsTopic}, AutoConfirm: true, CertHosts: []string{local.Host()}, CAFile: ca}}
	imgs := newImageServer(t, 0)
	d.archiveDir = t.TempDir()
	d.archiver.AllowHosts = []string{imgs.host}
	d.quota.ReservationTTL = ttl
	d.aggregator.CreditLookback = ttl

	q := d.startQuota()
	front := d.serveIngress(q)
	startArchiver(t, d)
	startAggregator(t, d)
	p := newPlatform()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	acct := account.FromToken(token)

	// QUOTA: granted, reserved (then expired), reserved + committed,
	// reserved + released, denied.
	if err := grant(ctx, p, front.base, acct, 10, "grant-ce-1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ biz, invoke, body string }{
		{callback.BizAPIPreInvoke, "i-expires", `{"batch_size":1,"n_iter":1}`},
		{callback.BizAPIPreInvoke, "i-commit", `{"batch_size":2,"n_iter":1}`},
		{callback.BizAPICommit, "i-commit", `{}`},
		{callback.BizAPIPreInvoke, "i-rollback", `{"batch_size":1,"n_iter":1}`},
		{callback.BizAPIRollback, "i-rollback", `{}`},
		{callback.BizAPIPreInvoke, "i-denied", `{"batch_size":50,"n_iter":1}`},
	} {
		a, err := p.send(ctx, front.base, c.biz, c.invoke, token, []byte(c.body))
		if err != nil || a.Code != http.StatusOK || a.success() != (c.invoke != "i-denied") {
			t.Fatalf("%s %s: %+v %v", c.biz, c.invoke, a, err)
		}
	}

	// INGRESS callbacks with the Content-Types a platform may send, ARCHIVE
	// stored (the image is served) and failed (404), and a JOBS record.
	img := imgs.serve("/img/ce.png", pngOf(7, 12, 8))
	for _, c := range []struct{ biz, invoke, contentType, body string }{
		{callback.BizTaskFinished, "t-stored", "application/json; charset=UTF-8",
			fmt.Sprintf(`{"success":true,"data":{"generatedImageId":"g-1","url":%q,"type":"png","width":12,"height":8}}`, img)},
		{callback.BizTaskFinished, "t-failed", "application/json",
			fmt.Sprintf(`{"success":true,"data":{"generatedImageId":"g-2","url":%q,"type":"png"}}`, "http://"+imgs.host+"/img/missing.png")},
		{callback.BizJobFinished, "j-1", "application/json; charset", `{"success":true}`},
		{"sd.New Event", "n-1", "", `{"note":"a bizType sdevents does not know"}`},
	} {
		if code := sendCallback(ctx, t, front.base, c.biz, c.invoke, token, c.contentType, []byte(c.body)); code != http.StatusOK {
			t.Fatalf("%s %s: %d", c.biz, c.invoke, code)
		}
	}

	// INGRESS SNS messages and a JOBS record closed by a terminal result.
	conf, err := local.SubscriptionConfirmation(snsTopic, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	note, err := local.Notification(snsTopic,
		fmt.Sprintf(`{"id":"task-ce-1","status":"completed","result":true,"image_url":[],"output_url":"","context":{"account":%q}}`, snsToken), nil, sns.SignatureV1)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []sns.Envelope{conf, note} {
		if code, body, err := deliverSNS(front.base, "eks", env); err != nil || code != http.StatusOK {
			t.Fatalf("SNS %s: %d %s %v", env.Type, code, body, err)
		}
	}

	want := map[string]uint64{contract.StreamIngress: 12, "QUOTA": 8, contract.StreamArchive: 2, contract.StreamJobs: 2}
	for stream, n := range want {
		natstest.Eventually(t, time.Minute, fmt.Sprintf("%d messages in %s", n, stream), func() bool { return d.streamMsgs(stream) >= n })
	}

	// Every message, decoded by the SDK in binary mode.
	types := map[string]bool{}
	byID := map[string]jetstream.Msg{}
	decoded := map[string]*cloudevents.Event{}
	for stream, n := range want {
		msgs := readAll(t, d.js, stream, "")
		if uint64(len(msgs)) != n {
			t.Fatalf("%s holds %d messages, want %d", stream, len(msgs), n)
		}
		for _, m := range msgs {
			e := decodeBinary(t, m)
			checkAttributes(t, m, e)
			types[e.Type()] = true
			if _, dup := byID[e.ID()]; dup {
				t.Errorf("%s: id %s seen twice", m.Subject(), e.ID())
			}
			byID[e.ID()], decoded[e.ID()] = m, e
		}
	}
	for _, typ := range []string{
		"sd.callback.apiAccessPreInvoke", "sd.callback.apiAccessCommit", "sd.callback.apiAccessRollback",
		"sd.callback.sdTaskFinished", "sd.callback.sdJobFinished", "sd.callback.sd.New%20Event",
		"sd.sns.SubscriptionConfirmation", "sd.sns.Notification",
		"sd.quota.granted", "sd.quota.reserved", "sd.quota.committed", "sd.quota.released", "sd.quota.denied", "sd.quota.expired",
		"sd.archive.stored", "sd.archive.failed", "sd.job.finished",
	} {
		if !types[typ] {
			t.Errorf("no %s event was decoded", typ)
		}
	}

	// What sdevents means datacontenttype to be: the request's media type
	// in compact form, application/json where it sent none, none where it
	// sent something else; application/json for what sdevents writes.
	for id, m := range byID {
		want := "application/json"
		switch event.Get(m.Headers(), event.HeaderInvokeID) {
		case "t-stored":
			want = "application/json;charset=UTF-8"
		case "j-1":
			want = ""
		}
		if got := decoded[id].DataContentType(); got != want {
			t.Errorf("%s %s: the SDK's datacontenttype is %q, want %q", m.Subject(), id, got, want)
		}
	}

	// The SDK's client: every message arrives as a valid event.
	received := 0
	for _, s := range sdkStreams {
		got := receiveWithSDK(t, d.urls, s.stream, s.subject, byID)
		for id, e := range got {
			m := byID[id]
			if !bytes.Equal(e.Data(), m.Data()) || e.Type() != m.Headers().Get(event.HeaderType) {
				t.Errorf("%s: the SDK client received %s %q, the stream holds %s %q", id, e.Type(), e.Data(), m.Headers().Get(event.HeaderType), m.Data())
			}
		}
		received += len(got)
	}
	if received != len(byID) {
		t.Errorf("the SDK client received %d events, the streams hold %d", received, len(byID))
	}
}

// TestInternalEventsReadWholeByCloudEventsSDK: the one event sdevents writes
// outside the public streams, the archive retry request of the console, is a
// valid CloudEvent for the SDK too.
func TestInternalEventsReadWholeByCloudEventsSDK(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	msg, err := console.RetryMessage(archiveretry.Request{ID: archiveretry.ID(42), Account: account.FromToken("u"),
		FailedSeq: 42, RequestedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	e := decodeBinary(t, storedMsg{msg})
	checkAttributes(t, storedMsg{msg}, e)
	if e.Type() != contract.TypeArchiverRetry || !e.Time().Equal(at) || e.DataContentType() != "application/json" {
		t.Errorf("decoded %s", e)
	}
}

// storedMsg shows a *nats.Msg as the part of jetstream.Msg the checks read.
type storedMsg struct{ *nats.Msg }

func (m storedMsg) Subject() string      { return m.Msg.Subject }
func (m storedMsg) Headers() nats.Header { return m.Msg.Header }
func (m storedMsg) Data() []byte         { return m.Msg.Data }

// streamMsg is what decodeBinary and checkAttributes read of a message.
type streamMsg interface {
	Subject() string
	Headers() nats.Header
	Data() []byte
}

// singleNode is a deployment on one embedded JetStream node with the
// project's streams at R1.
func singleNode(t *testing.T) *deployment {
	t.Helper()
	n := natstest.Start(t)
	_, js := natstest.Connect(t, n.URL())
	natstest.ApplyStreams(t, js, 1)
	return &deployment{t: t, urls: n.URL(), js: js, ingress: platformIngress(), quota: operatedQuota()}
}

// sendCallback signs and POSTs one callback to base with the given
// Content-Type ("" sends none) and returns the answer's status.
func sendCallback(ctx context.Context, t *testing.T, base, bizType, invokeID, token, contentType string, body []byte) int {
	t.Helper()
	enc, err := callback.EncryptToken(token, platformKey.SK, nil)
	if err != nil {
		t.Fatal(err)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	par := callback.Params{APIID: "api-e2e", BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: hex.EncodeToString(nonce[:]), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	par.Sign = callback.Sign(platformKey, par, body, token)
	q := url.Values{"apiId": {par.APIID}, "bizType": {par.BizType}, "invokeId": {par.InvokeID}, "apiToken": {par.APIToken},
		"sign": {par.Sign}, "nonce": {par.Nonce}, "timestamp": {par.Timestamp}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/callbacks/default?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// deliverSNS POSTs env to the SNS endpoint of source as SNS does.
func deliverSNS(base, source string, env sns.Envelope) (int, string, error) {
	raw, err := json.Marshal(env)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/sns/"+source, bytes.NewReader(raw))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	req.Header.Set("x-amz-sns-message-type", env.Type)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

// subjectMatches reports whether subject is under pattern, a subject
// ending in the wildcard ">".
func subjectMatches(pattern, subject string) bool {
	return strings.HasPrefix(subject, strings.TrimSuffix(pattern, ">"))
}

// decodeBinary decodes m with the SDK's JetStream binding, which must see it
// in binary mode, into a valid event.
func decodeBinary(t *testing.T, m streamMsg) *cloudevents.Event {
	t.Helper()
	msg := cejs.NewMessage(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
		t.Fatalf("%s: the SDK reads it in %s mode, want binary", m.Subject(), enc)
	}
	e, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		t.Fatalf("%s: SDK decode: %v", m.Subject(), err)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("%s: the SDK finds the event invalid: %v", m.Subject(), err)
	}
	return e
}

// checkAttributes compares every attribute the SDK decoded with the ce-*
// header it came from, verbatim, and after one round of percent-decoding
// with the value sdevents wrote; and the data with the body.
func checkAttributes(t *testing.T, m streamMsg, e *cloudevents.Event) {
	t.Helper()
	h := m.Headers()
	at := m.Subject() + " " + h.Get(event.HeaderID)
	raw := func(name string) string {
		if v := h.Values(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for _, a := range []struct{ name, got string }{
		{"specversion", e.SpecVersion()}, {"id", e.ID()}, {"source", e.Source()}, {"type", e.Type()},
		{"subject", e.Subject()}, {"datacontenttype", e.DataContentType()},
	} {
		header := "ce-" + a.name
		if a.got != raw(header) {
			t.Errorf("%s: the SDK's %s is %q, header %s is %q", at, a.name, a.got, header, raw(header))
		}
		if dec, err := url.PathUnescape(a.got); err != nil || dec != event.Get(h, header) {
			t.Errorf("%s: the SDK's %s %q percent-decodes to %q (%v), sdevents wrote %q", at, a.name, a.got, dec, err, event.Get(h, header))
		}
	}
	if e.SpecVersion() != "1.0" || e.ID() == "" || e.Source() == "" || e.Type() == "" {
		t.Errorf("%s: required attributes %q %q %q %q", at, e.SpecVersion(), e.ID(), e.Source(), e.Type())
	}
	if e.ID() != h.Get(nats.MsgIdHdr) {
		t.Errorf("%s: id %q, Nats-Msg-Id %q", at, e.ID(), h.Get(nats.MsgIdHdr))
	}
	wantTime, err := time.Parse(time.RFC3339Nano, raw(event.HeaderTime))
	if err != nil || !e.Time().Equal(wantTime) || e.Time().IsZero() {
		t.Errorf("%s: the SDK's time %s, header ce-time %q (%v)", at, e.Time(), raw(event.HeaderTime), err)
	}
	known := map[string]bool{}
	for _, a := range spec.WithPrefix("ce-").Version("1.0").Attributes() {
		known[a.PrefixedName()] = true
	}
	wantExt := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "ce-") && !known[k] {
			wantExt[strings.TrimPrefix(k, "ce-")] = v[0]
		}
	}
	gotExt := e.Extensions()
	if len(gotExt) != len(wantExt) {
		t.Errorf("%s: the SDK's extensions %v, ce-* headers %v", at, gotExt, wantExt)
	}
	for k, v := range wantExt {
		if fmt.Sprint(gotExt[k]) != v {
			t.Errorf("%s: extension %s = %v, header %q", at, k, gotExt[k], v)
		}
	}
	if !bytes.Equal(e.Data(), m.Data()) {
		t.Errorf("%s: the SDK's data %q, body %q", at, e.Data(), m.Data())
	}
}

// receiveWithSDK reads subject of stream with the SDK's client over its
// JetStream consumer, as a downstream service would, until it has received
// an event for every id of want on subject. It returns the events by id.
func receiveWithSDK(t *testing.T, url, stream, subject string, want map[string]jetstream.Msg) map[string]cloudevents.Event {
	t.Helper()
	ids := map[string]bool{}
	for id, m := range want {
		if subjectMatches(subject, m.Subject()) {
			ids[id] = true
		}
	}
	durable := "sdk-" + strings.NewReplacer(".", "-", ">", "all").Replace(subject)
	consumer, err := cejs.NewConsumer(url, stream, subject, nil, nil, []nats.SubOpt{nats.Durable(durable), nats.DeliverAll()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClient(consumer)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]cloudevents.Event{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.StartReceiver(ctx, func(e cloudevents.Event) {
			mu.Lock()
			defer mu.Unlock()
			got[e.ID()] = e
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("SDK receiver on %s: %v", subject, err)
		}
		_ = consumer.Close(context.Background())
	}()
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range ids {
			if _, ok := got[id]; !ok {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !complete() {
		if time.Now().After(deadline) {
			mu.Lock()
			var missing []string
			for id := range ids {
				if _, ok := got[id]; !ok {
					missing = append(missing, want[id].Subject()+" "+id)
				}
			}
			mu.Unlock()
			slices.Sort(missing)
			t.Fatalf("the SDK client on %s did not receive %d of %d events: %v", subject, len(missing), len(ids), missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(got)
}
