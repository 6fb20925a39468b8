package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// env is an embedded JetStream server with the project's streams applied.
type env struct {
	t   *testing.T
	srv *natstest.Node
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg aggregator.Config
	ids atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.URL())
	natstest.ApplyStreams(t, js, 1)
	cfg := aggregator.Config{Jobs: jobs.Config{IdleTimeout: time.Hour}}
	return &env{t: t, srv: srv, nc: nc, js: js, cfg: cfg}
}

// setAckWait shortens the aggregator consumer's ack wait, to force
// redeliveries.
func (e *env) setAckWait(d time.Duration) {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.js.Consumer(ctx, contract.StreamIngress, aggregator.ConsumerName)
	if err != nil {
		e.t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.AckWait = d
	if _, err := e.js.UpdateConsumer(ctx, contract.StreamIngress, cc); err != nil {
		e.t.Fatal(err)
	}
}

// publish stores msg in INGRESS and returns its sequence.
func (e *env) publish(msg *nats.Msg) uint64 {
	e.t.Helper()
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatalf("publish %s: %v", msg.Subject, err)
	}
	return ack.Sequence
}

// callback publishes a callback as the ingress stores it: subject
// sd.callback.<source>.<bizType>, the body as data, the sd-* headers.
func (e *env) callback(source, bizType, account, invokeID string, body []byte) uint64 {
	msg := event.Message("sd.callback."+source+"."+bizType, event.Meta{
		ID: fmt.Sprintf("cb-%d", e.ids.Add(1)), Source: "/sdevents/callbacks/" + source,
		Type: "sd.callback." + bizType, Time: time.Now(), Subject: account, ContentType: "application/json",
	}, body)
	event.Set(msg, event.HeaderSDSource, source)
	if account != "" {
		event.Set(msg, event.HeaderSDAccount, account)
	}
	for k, v := range map[string]string{
		event.HeaderAPIID: "api-1", event.HeaderBizType: bizType, event.HeaderInvokeID: invokeID,
		event.HeaderAPIToken: "encrypted", event.HeaderSign: "sig", event.HeaderNonce: "n",
		event.HeaderTimestamp: "1700000000",
	} {
		event.Set(msg, k, v)
	}
	return e.publish(msg)
}

// taskBody is an sdTaskFinished or sdJobFinished body with one image per id.
func taskBody(ok bool, imageIDs ...string) []byte {
	var data []map[string]any
	for _, id := range imageIDs {
		data = append(data, map[string]any{"generatedImageId": id, "url": imageURL(id), "type": "png", "width": 512, "height": 512})
	}
	b, _ := json.Marshal(map[string]any{"success": ok, "data": data})
	return b
}

// imageURL is an image URL as the callback platform sends it: signed, its
// query a time-limited credential (the archiver records it without).
func imageURL(id string) string {
	return "https://img.example/" + id + ".png?Expires=1764720000&OSSAccessKeyId=ak&Signature=s%2Bg"
}

// sns publishes an SNS Notification as the ingress stores it: subject
// sd.sns.<source>.Notification, the whole envelope as data.
func (e *env) sns(source, account string, message map[string]any) uint64 {
	m, _ := json.Marshal(message)
	id := fmt.Sprintf("sns-%d", e.ids.Add(1))
	env, _ := json.Marshal(map[string]any{
		"Type": "Notification", "MessageId": id, "TopicArn": "arn:aws:sns:us-east-1:1:t",
		"Message": string(m), "Timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
	})
	msg := event.Message("sd.sns."+source+".Notification", event.Meta{
		ID: id, Source: "/sdevents/sns/" + source, Type: "sd.sns.Notification", Time: time.Now(),
		Subject: account, ContentType: "application/json",
	}, env)
	for k, v := range map[string]string{
		event.HeaderSDSource: source, event.HeaderSDAccount: account, event.HeaderSNSType: "Notification",
		event.HeaderSNSMsgID: id, event.HeaderSNSTopicARN: "arn:aws:sns:us-east-1:1:t",
		event.HeaderTaskID: fmt.Sprint(message["id"]),
	} {
		event.Set(msg, k, v)
	}
	return e.publish(msg)
}

// replica is one running aggregator with its own connection.
type replica struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(opts ...aggregator.Option) *replica {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.URL(), nats.MaxReconnects(-1))
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := aggregator.New(context.Background(), e.cfg, natstest.JetStream(e.t, nc), prometheus.NewRegistry(), opts...)
	if err != nil {
		nc.Close()
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

// stop shuts the replica down gracefully; it may be called more than once.
func (r *replica) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.nc.Close()
	r.cancel = nil
}

// kill drops the replica's connection without draining, as a crash does:
// whatever it held is redelivered after the ack wait.
func (r *replica) kill() {
	if r.cancel == nil {
		return
	}
	r.nc.Close()
	r.cancel()
	<-r.done
	r.cancel = nil
}

// jobsStored returns every record in JOBS.
func (e *env) jobsStored() []jobs.Record {
	e.t.Helper()
	recs, err := aggregator.ReadJobs(context.Background(), e.js, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// jobCount is the number of messages in JOBS.
func (e *env) jobCount() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), contract.StreamJobs)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) jobsConfig() jobs.Config {
	return e.cfg.Jobs
}

// rebuild is the oracle: the pure jobs package over INGRESS, in order.
func (e *env) rebuild(now time.Time) aggregator.ReplayResult {
	e.t.Helper()
	res, err := aggregator.Replay(context.Background(), e.js, e.jobsConfig(), now, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// waitJobs polls until JOBS holds n records or timeout passes; the caller
// then compares what is there.
func (e *env) waitJobs(timeout time.Duration, n int) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for e.jobCount() < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// rebuildLastSeq reads the applied sequence of a stored state entry.
func (e *env) rebuildLastSeq(raw []byte) uint64 {
	var v struct {
		State jobs.State `json:"state"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.State.LastSeq
}
