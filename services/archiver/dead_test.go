package archiver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// deadRecord is one record of DEAD with the subject it was stored on.
type deadRecord struct {
	On string
	deadletter.Record
}

// deadRecords returns every record of DEAD.
func (e *env) deadRecords() []deadRecord {
	e.t.Helper()
	ctx := e.t.Context()
	s, err := e.js.Stream(ctx, contract.StreamDead)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []deadRecord
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		r := deadRecord{On: m.Subject}
		if err := json.Unmarshal(m.Data, &r.Record); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestUnprocessableMessagesAreBuried: a fired retry schedule or an
// operator's retry request that the archiver cannot read is buried on its
// first delivery: one record on sd.dead.<consumer> naming its stream,
// sequence and subject, with a reason that holds none of its data, counted
// once; the consumer moves on and handles the good message that follows.
func TestUnprocessableMessagesAreBuried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		consumer, stream, subject string
		// good has the consumer handle a good message, and reports when
		// it did.
		good func(t *testing.T, e *env) func() bool
	}{
		{
			consumer: archiver.DueConsumerName, stream: contract.StreamArchiverTimers,
			subject: contract.SubjectArchiverDue + "ar-0123456789abcdef0123456789abcdef",
			good: func(t *testing.T, e *env) func() bool {
				// An image whose source fails once: its retry schedule
				// fires and archiver-due stores it.
				var up atomic.Bool
				body := pngOf(t, 5, 8, 8)
				url := e.images.handle("/later.png", func(w http.ResponseWriter, r *http.Request) {
					if !up.Swap(true) {
						unavailable(w, r)
						return
					}
					w.Header().Set("Content-Type", "image/png")
					w.Write(body)
				})
				at := time.Now()
				e.publishCallback("a_due", "inv", at, map[string]any{"success": true, "data": map[string]any{
					"generatedImageId": "g", "url": url, "type": "png"}})
				key := archiverKey("a_due", at, "inv")
				return func() bool {
					evs := e.events()
					return len(evs) == 1 && evs[0].stored() && evs[0].Stored.Key == key && e.images.count("/later.png") == 2
				}
			},
		},
		{
			consumer: archiver.RetryConsumerName, stream: contract.StreamArchiverRetry,
			subject: contract.SubjectArchiverRetry + "a_retry",
			good: func(t *testing.T, e *env) func() bool {
				// A well-formed request for an image without an outcome:
				// acknowledged without effect.
				req := archiveretry.Request{ID: archiveretry.ID(7), FailedSeq: 7, FailedID: "ar-none", Account: "a_retry",
					TaskID: "inv", ImageID: "g", Key: "a_retry/2026/01/01/inv/g.png", RequestedAt: time.Now().UTC()}
				msg := nats.NewMsg(archiveretry.Subject(req.Account))
				var err error
				if msg.Data, err = json.Marshal(req); err != nil {
					t.Fatal(err)
				}
				msg.Header.Set(nats.MsgIdHdr, req.ID)
				e.publish(msg)
				return func() bool { return e.streamMsgs(contract.StreamArchiverRetry) == 0 }
			},
		},
	} {
		t.Run(tc.consumer, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			reg := newRegistry()
			e.startWith(reg)
			ack, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: tc.subject, Data: []byte(`{"secret":"not json`), Header: nats.Header{}})
			if err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, 30*time.Second, "the message buried", func() bool {
				return metricValue(t, reg, deadletter.MetricName, "consumer", tc.consumer) == 1 && e.consumerIdle(tc.stream, tc.consumer)
			})
			recs := e.deadRecords()
			if len(recs) != 1 {
				t.Fatalf("%d records: %+v", len(recs), recs)
			}
			r := recs[0]
			if r.On != contract.SubjectDead+tc.consumer || r.Consumer != tc.consumer || r.Stream != tc.stream ||
				r.Sequence != ack.Sequence || r.Subject != tc.subject || r.Deliveries != 1 ||
				!strings.Contains(r.Reason, "cannot be processed") || strings.Contains(r.Reason, "secret") {
				t.Fatalf("record %+v", r)
			}
			natstest.Eventually(t, 30*time.Second, "the next message handled", tc.good(t, e))
			natstest.Eventually(t, 30*time.Second, "the consumer idle", func() bool { return e.consumerIdle(tc.stream, tc.consumer) })
			if n := len(e.deadRecords()); n != 1 || metricValue(t, reg, deadletter.MetricName, "consumer", tc.consumer) != 1 {
				t.Fatalf("%d records after the good message", n)
			}
		})
	}
}
