package archiver

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// newTestOutcomes returns the outcome log on a fresh JetStream whose ARCHIVE stream
// has a duplicate window of dup, so tests can step outside it.
func newTestOutcomes(t *testing.T, dup time.Duration) (*outcomes, jetstream.JetStream) {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	ctx := t.Context()
	st, err := js.Stream(ctx, contract.StreamArchive)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = dup
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, contract.BucketArchiveKeys)
	if err != nil {
		t.Fatal(err)
	}
	return &outcomes{js: js, kv: kv, window: time.Minute, now: time.Now}, js
}

func testOutcome(t *testing.T, key string, at time.Time) outcome {
	t.Helper()
	o, err := newOutcome(key, contract.SubjectArchiveStored, contract.TypeArchiveStored, "a_l", at, contract.ArchiveStored{Account: "a_l", Key: key, ArchivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// archiveMsgs returns the data of every ARCHIVE message with id.
func archiveMsgs(t *testing.T, js jetstream.JetStream, id string) [][]byte {
	t.Helper()
	st, err := js.Stream(t.Context(), contract.StreamArchive)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("Nats-Msg-Id") == id {
			out = append(out, m.Data)
		}
	}
	return out
}

// TestFirstOutcomeWinsOnce records different outcomes of one image
// from many goroutines: one event is published, the first claimed.
func TestFirstOutcomeWinsOnce(t *testing.T) {
	t.Parallel()
	l, js := newTestOutcomes(t, 10*time.Minute)
	key := "a_l/2026/01/02/t/race.png"
	var wg sync.WaitGroup
	for i := range 8 {
		o := testOutcome(t, key, time.Unix(int64(1000+i), 0).UTC())
		wg.Go(func() {
			if _, err := l.record(t.Context(), o); err != nil && err != errClaimBusy {
				t.Errorf("record: %v", err)
			}
		})
	}
	wg.Wait()
	msgs := archiveMsgs(t, js, EventID(key))
	if len(msgs) != 1 {
		t.Fatalf("%d events, want 1", len(msgs))
	}
	e, err := l.kv.Get(t.Context(), EventID(key))
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.State != stateDone || string(rec.Outcome.Data) != string(msgs[0]) {
		t.Errorf("record %s %s, event %s", rec.State, rec.Outcome.Data, msgs[0])
	}
}

// TestPendingOutcomesCompleted plays the crashes between claim, publish
// and done: whoever finds the pending record completes it, and the event is
// in ARCHIVE once. A young claim is completed inside the server's duplicate
// window (Nats-Msg-Id drops a second publish); an old one, outside it, by
// searching the stream first.
func TestPendingOutcomesCompleted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		dup        time.Duration // the server's duplicate window
		claimedAgo time.Duration
	}{
		{"young claim", 10 * time.Minute, 0},
		{"old claim, outside the duplicate window", time.Second, time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l, js := newTestOutcomes(t, c.dup)
			ids := map[bool]string{}
			for _, published := range []bool{false, true} {
				key := fmt.Sprintf("a_l/2026/01/02/t/published-%v.png", published)
				o := testOutcome(t, key, time.Now().UTC())
				ids[published] = o.ID
				rec := record{State: statePending, ClaimedAt: time.Now().Add(-c.claimedAgo), Outcome: o}
				raw, _ := json.Marshal(rec)
				if _, err := l.kv.Create(t.Context(), o.ID, raw); err != nil {
					t.Fatal(err)
				}
				if published {
					msg := event.Message(o.Subject, event.Meta{ID: o.ID, Source: contract.SourceArchiver, Type: o.Type, Time: o.At, Subject: o.Account}, o.Data)
					if _, err := js.PublishMsg(t.Context(), msg); err != nil {
						t.Fatal(err)
					}
				}
			}
			if c.claimedAgo > 0 {
				time.Sleep(c.dup + 200*time.Millisecond) // a second publish would be stored
			}
			for published, id := range ids {
				runSettled(t, l, id)
				if n := len(archiveMsgs(t, js, id)); n != 1 {
					t.Errorf("crashed after publishing = %v: %d events, want 1", published, n)
				}
			}
		})
	}
}

func runSettled(t *testing.T, l *outcomes, id string) {
	t.Helper()
	ok, err := l.settled(t.Context(), id)
	if !ok || err != nil {
		t.Fatalf("settled = %v, %v", ok, err)
	}
	e, err := l.kv.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.State != stateDone || rec.Seq == 0 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if ok, err := l.settled(t.Context(), id); !ok || err != nil {
		t.Fatalf("settled again = %v, %v", ok, err)
	}
}
