package archiver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// outcomes is the log of claimed outcomes: it makes the outcome of each image
// exactly one ARCHIVE event, whatever the redeliveries, replicas and crashes
// (docs/archiver.md, "Exactly once").
//
// The ARCHIVE_KEYS bucket holds one entry per image, keyed by EventID:
//
//  1. claim: Create (create-only, so the first outcome wins) a pending
//     record that holds the whole event, archived_at included;
//  2. publish the event with Nats-Msg-Id = EventID;
//  3. mark the record done (Update at the claim's revision).
//
// Whoever finds a pending record completes it with the recorded event. While
// the claim is younger than the ARCHIVE duplicate window (less a margin) a
// second publish is dropped by JetStream; an older claim is first taken over
// (compare-and-set, so one completer at a time) and ARCHIVE is searched for
// the event before it is published.
type outcomes struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
	// window is how long after a claim a publish may be repeated safely:
	// the ARCHIVE duplicate window less a margin.
	window time.Duration
	now    func() time.Time
}

// outcome is an ARCHIVE event to publish once.
type outcome struct {
	// ID is the event's ce-id and Nats-Msg-Id: EventID(key), or for the
	// outcome of a retry request EventID(key)+"-r<failed seq>".
	ID string `json:"id"`
	// Entry is the image's ARCHIVE_KEYS key when it differs from ID (a
	// retry's outcome); see entry.
	Entry   string          `json:"entry,omitempty"`
	Subject string          `json:"subject"`
	Account string          `json:"account"`
	Type    string          `json:"type"`
	At      time.Time       `json:"at"`
	Data    json.RawMessage `json:"data"`
	// cause is the error behind a failed outcome, for the log only.
	cause error
}

// entry is the ARCHIVE_KEYS key of the image: EventID(key).
func (o outcome) entry() string { return cmp.Or(o.Entry, o.ID) }

// record is the bucket entry of one image.
type record struct {
	State     string    `json:"state"`
	ClaimedAt time.Time `json:"claimed_at"`
	// Seq is the event's ARCHIVE sequence once done.
	Seq     uint64  `json:"seq,omitempty"`
	Outcome outcome `json:"outcome"`
}

const (
	statePending = "pending"
	stateDone    = "done"
	// windowMargin is kept between a claim's age and the duplicate window:
	// it covers a publish in flight and clock differences.
	windowMargin = 2 * time.Minute
	// scanMargin moves the search for a published event back, for clock
	// differences between a replica and the server.
	scanMargin = time.Minute
)

// errClaimBusy: another replica is completing the same outcome right now.
// Transient: the next delivery finds the record done.
var errClaimBusy = errors.New("archiver: outcome being completed elsewhere")

// settled reports whether the image with event id already has an outcome.
// A pending outcome is completed first; its error is returned with true.
func (l *outcomes) settled(ctx context.Context, id string) (bool, error) {
	e, err := l.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archiver: outcome get %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return true, fmt.Errorf("archiver: outcome record %s: %w", id, err)
	}
	if rec.State == stateDone {
		return true, nil
	}
	return true, l.complete(ctx, rec, e.Revision())
}

// record publishes o unless the image already has an outcome, in which case
// that one stands (first wins). It reports whether o was the one claimed.
func (l *outcomes) record(ctx context.Context, o outcome) (bool, error) {
	rec := record{State: statePending, ClaimedAt: l.now(), Outcome: o}
	raw, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("archiver: %w", err)
	}
	rev, err := l.kv.Create(ctx, o.entry(), raw)
	if errors.Is(err, jetstream.ErrKeyExists) {
		_, err := l.settled(ctx, o.entry())
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("archiver: outcome claim %s: %w", o.ID, err)
	}
	return true, l.publish(ctx, rec, rev)
}

// replace claims for o (a retry's outcome) the image's entry, found at
// revision rev holding the failure being retried, by compare-and-set, then
// publishes o. It returns false when the entry moved on meanwhile (another
// replica claimed it): the caller reads it again.
func (l *outcomes) replace(ctx context.Context, o outcome, rev uint64) (bool, error) {
	rec := record{State: statePending, ClaimedAt: l.now(), Outcome: o}
	raw, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("archiver: %w", err)
	}
	rev, err = l.kv.Update(ctx, o.entry(), raw, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archiver: outcome retry claim %s: %w", o.ID, err)
	}
	return true, l.publish(ctx, rec, rev)
}

// complete finishes a pending record found at revision rev.
func (l *outcomes) complete(ctx context.Context, rec record, rev uint64) error {
	if l.now().Sub(rec.ClaimedAt) < l.window {
		return l.publish(ctx, rec, rev)
	}
	since := rec.ClaimedAt
	rec.ClaimedAt = l.now()
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	rev, err = l.kv.Update(ctx, rec.Outcome.entry(), raw, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errClaimBusy
	}
	if err != nil {
		return fmt.Errorf("archiver: outcome take over %s: %w", rec.Outcome.ID, err)
	}
	seq, err := l.find(ctx, rec.Outcome, since.Add(-scanMargin))
	if err != nil {
		return err
	}
	if seq > 0 {
		return l.markDone(ctx, rec, seq, rev)
	}
	return l.publish(ctx, rec, rev)
}

// publish sends the recorded event and marks the record done. It refuses
// once the claim is older than the window, when a repeated publish could
// pass the duplicate check: the next delivery takes the claim over.
func (l *outcomes) publish(ctx context.Context, rec record, rev uint64) error {
	if l.now().Sub(rec.ClaimedAt) >= l.window {
		return fmt.Errorf("%w: claim of %s expired before publishing", errClaimBusy, rec.Outcome.ID)
	}
	o := rec.Outcome
	msg := event.Message(o.Subject, event.Meta{
		ID: o.ID, Source: contract.SourceArchiver, Type: o.Type, Time: o.At, Subject: o.Account, ContentType: "application/json",
	}, o.Data)
	ack, err := l.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(contract.StreamArchive))
	if err != nil {
		return fmt.Errorf("archiver: publish %s: %w", o.ID, err)
	}
	return l.markDone(ctx, rec, ack.Sequence, rev)
}

func (l *outcomes) markDone(ctx context.Context, rec record, seq, rev uint64) error {
	rec.State, rec.Seq = stateDone, seq
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	_, err = l.kv.Update(ctx, rec.Outcome.entry(), raw, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Someone completed or took over the record meanwhile; the event
		// is in the stream, where a taker's search finds it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("archiver: outcome done %s: %w", rec.Outcome.ID, err)
	}
	return nil
}

// find searches ARCHIVE for the event o (by Nats-Msg-Id) on its subject,
// from the time since, and returns its sequence, or 0 when it is not there.
// It reads headers only, through a short-lived consumer.
func (l *outcomes) find(ctx context.Context, o outcome, since time.Time) (uint64, error) {
	var seq uint64
	err := scanHeaders(ctx, l.js, contract.StreamArchive, []string{o.Subject}, since, func(m jetstream.Msg) error {
		if m.Headers().Get(nats.MsgIdHdr) != o.ID {
			return nil
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq = meta.Sequence.Stream
		return errStopScan
	})
	if err != nil {
		return 0, fmt.Errorf("archiver: search ARCHIVE for %s: %w", o.ID, err)
	}
	return seq, nil
}
