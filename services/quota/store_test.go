package quota

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// TestScheduleFires checks, against the embedded nats-server, what expiry
// relies on: an @at schedule in QUOTA_TIMERS fires once, at (not before) its
// second, on the target subject, with the payload, to the durable consumer;
// and a schedule published again for the same reservation replaces the first.
func TestScheduleFires(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	st := &store{nc: nc, js: js}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const acct = "a_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	at := time.Now().Add(1200 * time.Millisecond)
	if err := st.schedule(ctx, acct, "inv/1 with spaces", at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Replaces the schedule above (already due) before it fires.
	if err := st.schedule(ctx, acct, "inv/1 with spaces", at); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, contract.StreamQuotaTimers, expiryDurable)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
		_ = m.Ack()
	}
	if len(got) != 1 {
		t.Fatalf("fired %d messages, want 1", len(got))
	}
	m := got[0]
	md, _ := m.Metadata()
	if md.Timestamp.Before(at.Truncate(time.Second)) {
		t.Fatalf("fired at %s, before %s", md.Timestamp, at)
	}
	if m.Subject() != contract.SubjectQuotaDue+acct {
		t.Fatalf("fired on %s", m.Subject())
	}
	var tm timer
	if err := json.Unmarshal(m.Data(), &tm); err != nil || tm.Account != acct || tm.InvokeID != "inv/1 with spaces" {
		t.Fatalf("payload %q (%v)", m.Data(), err)
	}
	// The schedule itself is gone once fired.
	s, err := js.Stream(ctx, contract.StreamQuotaTimers)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, "schedule purged", func() bool {
		_, err := s.GetLastMsgForSubject(ctx, timerSubject(acct, "inv/1 with spaces"))
		return err != nil
	})
}

// TestAppendOptimistic checks the expected-last-subject-sequence semantics
// the ledger relies on: 0 means "no message yet", a stale sequence is a
// conflict, and a replayed message id is a duplicate naming the stored
// message.
func TestAppendOptimistic(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	st := &store{nc: nc, js: js}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const acct = "a_bbbbbbbbbbbbbbbbbbbbbbbbbb"
	grant := ledger.Event{Type: ledger.TypeGranted, Account: acct, Credits: 5, Balance: 5, ID: "g1", At: time.Now()}
	if _, err := st.append(ctx, grant, 7, 0); !isConflict(err) {
		t.Fatalf("append to an empty subject expecting 7: %v", err)
	}
	seq, err := st.append(ctx, grant, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.append(ctx, grant, 0, 0); !isConflict(err) {
		t.Fatalf("stale expected sequence: %v", err)
	}
	var dup *duplicateError
	if _, err := st.append(ctx, grant, seq, 0); !errors.As(err, &dup) || !errors.Is(err, ErrDuplicate) || dup.Seq != seq {
		t.Fatalf("duplicate message id: %v, want ErrDuplicate naming sequence %d", err, seq)
	}
	last, err := st.lastSeq(ctx, acct)
	if err != nil || last != seq {
		t.Fatalf("last = %d, %v; want %d", last, err, seq)
	}
	if _, err := st.get(ctx, ledgerSubject(acct), seq+1, true); err != errNoMsg {
		t.Fatalf("next after last: %v", err)
	}
}

func isConflict(err error) bool { return err != nil && errors.Is(err, ErrConflict) }

// TestClassifyPublishErrors: what nats-server answers a publish of a
// ledger event becomes a conflict (catch up, decide again), a duplicate
// (wait for the stored message, answer from it) or a failure. 10158 comes
// only from a replicated stream (TestTwinRequestsOnACluster in e2e meets
// it for real).
func TestClassifyPublishErrors(t *testing.T) {
	t.Parallel()
	e := ledger.Event{Type: ledger.TypeReserved, Account: "a_cccccccccccccccccccccccccc", InvokeID: "i"}
	cases := []struct {
		code    jetstream.ErrorCode
		wantErr error
	}{
		{jetstream.JSErrCodeStreamWrongLastSequence, ErrConflict},
		{jetstream.JSErrCodeStreamWrongLastSequenceConstant, ErrConflict},
		{10158, ErrDuplicate},
		{jetstream.JSErrCodeStreamNotFound, nil},
	}
	for _, tc := range cases {
		err := classify(&jetstream.APIError{Code: 409, ErrorCode: tc.code, Description: "x"}, e, 3)
		var dup *duplicateError
		switch {
		case tc.wantErr == nil && (errors.Is(err, ErrConflict) || errors.Is(err, ErrDuplicate)):
			t.Errorf("code %d: %v, want a failure", tc.code, err)
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("code %d: %v, want %v", tc.code, err, tc.wantErr)
		case tc.wantErr == ErrDuplicate && (!errors.As(err, &dup) || dup.Seq != 0):
			t.Errorf("code %d: %v, want a duplicate still being stored", tc.code, err)
		}
	}
}
