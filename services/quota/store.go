package quota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// The ledger is on contract.SubjectQuota + account, the expiry timers on
// contract.SubjectQuotaTimer (streams/quota.yaml, streams/quota-timers.yaml).
const (
	expiryDurable = "quota-expiry"            // the durable consumer of fired timers
	apiMsgGet     = "$JS.API.STREAM.MSG.GET." // + stream: answered by the stream leader
)

// ErrConflict is returned (wrapped) by store.append when the account's subject
// moved past the expected sequence: another writer got there first. The
// caller catches up with the stream and decides again.
var ErrConflict = errors.New("ledger moved on")

// ErrDuplicate is returned (wrapped, as a *duplicateError) by store.append
// when a message with the event's id is being or has been stored: the same
// transition of the same invokeId, decided by another replica (a twin
// request) or by an earlier attempt. It is not a failure: the caller waits
// until its state holds that message, then decides again and answers from
// the stored outcome.
var ErrDuplicate = errors.New("a message with this id is being or has been stored")

// jsErrDuplicateInProcess is nats-server's JSStreamDuplicateMessageConflict
// (409, "duplicate message id is in process"): on a replicated stream, a
// publish whose Nats-Msg-Id belongs to a message proposed but not yet
// stored. The server answers it before checking the expected last
// sequence.
const jsErrDuplicateInProcess jetstream.ErrorCode = 10158

// duplicateError is ErrDuplicate with what the server said: Seq is the
// stored message's sequence, 0 while it is still being stored.
type duplicateError struct {
	Seq uint64
	err string
}

func (e *duplicateError) Error() string { return e.err }

func (e *duplicateError) Unwrap() error { return ErrDuplicate }

// classify maps a publish error of an event to ErrConflict or ErrDuplicate
// when it is one, and wraps it otherwise.
func classify(err error, e ledger.Event, last uint64) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("append %s event: %w", e.Type, err)
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
		return fmt.Errorf("%w: %s expected last sequence %d: %v", ErrConflict, e.Account, last, err)
	case jsErrDuplicateInProcess:
		return &duplicateError{err: fmt.Sprintf("%s event of %s: %v: %v", e.Type, e.Account, ErrDuplicate, err)}
	}
	return fmt.Errorf("append %s event: %w", e.Type, err)
}

// store is the JetStream adapter of the ledger: optimistic appends to
// sd.quota.<account>, reads answered by the stream leader, and expiry timers
// in QUOTA_TIMERS.
type store struct {
	nc *nats.Conn
	js jetstream.JetStream
	// timerSent is handed the future of every expiry timer published
	// asynchronously (Service.watchTimer); nil leaves it alone.
	timerSent func(jetstream.PubAckFuture)
}

// ledgerSubject is the QUOTA subject of an account.
func ledgerSubject(account string) string { return contract.SubjectQuota + account }

// msgID is the Nats-Msg-Id (and ce-id) of e: deterministic for every
// transition of an invokeId (for each request, where an invokeId has one per
// request: confirmed, withdrawn) and for a grant with an id, so that a
// publish retried after a lost ack cannot be stored twice within the
// duplicate window, and twin requests deciding the same transition meet on
// one id; a snapshot's names the event it follows. The "i-"/"g-"/"s-" tags
// keep invoke ids, grant ids and snapshots apart.
func msgID(e ledger.Event) string {
	switch {
	case e.Type == ledger.TypeSnapshot && e.State != nil:
		return "q-" + e.Account + "-s-" + strconv.FormatUint(e.State.Seq, 10)
	case e.Type == ledger.TypeSnapshot:
		return "q-" + e.Account + "-s-" + nuid.Next()
	case e.Type == ledger.TypeConfirmed || e.Type == ledger.TypeWithdrawn:
		return "q-" + e.Account + "-i-" + e.InvokeID + "-" + string(e.Type) + "-" + e.Request
	case e.Type != ledger.TypeGranted:
		return "q-" + e.Account + "-i-" + e.InvokeID + "-" + string(e.Type)
	case e.ID != "":
		return "q-" + e.Account + "-g-" + e.ID
	default:
		return "q-" + e.Account + "-g-" + nuid.Next()
	}
}

// errTooLarge is returned by store.append for an event larger than the
// server takes (a snapshot of a very large account).
var errTooLarge = errors.New("event larger than the server's max payload")

// append stores e on the account's subject, expecting last as the sequence of
// the subject's last message (0: no message yet), and returns e's sequence.
// With snap > 0, the message carries headerSnapshot = snap, the sequence of
// the account's latest snapshot.
//
// A reserved event gets its expiry timer (see schedule), published without
// waiting right before the event on the same connection: the two are stored
// concurrently, and append waits for the event only. A timer the server
// refuses, or whose ack does not come, is published again in the background
// (timerSent: Service.watchTimer); a reservation whose
// timer is lost all the same is expired by the sweep of overdue reservations
// or when its account is loaded (docs/quota.md, "Expiry"). A timer whose
// event is not stored fires once and is acknowledged as stray.
//
// It returns an error wrapping ErrConflict when the subject moved on,
// ErrDuplicate when a message with the event's id is being or has been
// stored; any other error means the event may or may not be stored (a lost
// ack): the next append of the account conflicts and catches up.
func (s *store) append(ctx context.Context, e ledger.Event, last, snap uint64) (uint64, error) {
	if e.Type == ledger.TypeReserved {
		msg, opts, err := s.timerMsg(e.Account, e.InvokeID, e.ExpiresAt)
		if err != nil {
			return 0, err
		}
		timer, err := s.js.PublishMsgAsync(msg, opts...)
		if err != nil {
			return 0, fmt.Errorf("expiry timer: %w", err)
		}
		if s.timerSent != nil {
			defer s.timerSent(timer)
		}
	}
	return s.appendEvent(ctx, e, last, snap)
}

// appendEvent publishes e with the expected last subject sequence.
func (s *store) appendEvent(ctx context.Context, e ledger.Event, last, snap uint64) (uint64, error) {
	data, err := e.AppendJSON(make([]byte, 0, 512))
	if err != nil {
		return 0, fmt.Errorf("encode %s event: %w", e.Type, err)
	}
	if limit := s.nc.MaxPayload() - 16<<10; int64(len(data)) > limit {
		return 0, fmt.Errorf("%w: %s event of %d bytes, limit %d", errTooLarge, e.Type, len(data), limit)
	}
	var extra []event.Header
	if snap > 0 {
		extra = append(extra, event.Header{Key: headerSnapshot, Value: strconv.FormatUint(snap, 10)})
	}
	msg := event.Message(ledgerSubject(e.Account), event.Meta{
		ID: msgID(e), Source: contract.SourceQuota, Type: contract.TypeQuota + string(e.Type),
		Time: e.At, Subject: e.Account, ContentType: "application/json",
	}, data, extra...)
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(last))
	if err != nil {
		return 0, classify(err, e, last)
	}
	if ack.Duplicate {
		return 0, &duplicateError{Seq: ack.Sequence,
			err: fmt.Sprintf("%s event of %s: %v at sequence %d", e.Type, e.Account, ErrDuplicate, ack.Sequence)}
	}
	return ack.Sequence, nil
}

// timer is the payload of an expiry timer.
type timer struct {
	Account  string `json:"account"`
	InvokeID string `json:"invoke_id"`
}

// timerSubject is the schedule subject of one reservation. The invokeId is
// hashed: it may hold any character, a subject token may not.
func timerSubject(account, invokeID string) string {
	sum := sha256.Sum256([]byte(invokeID))
	return contract.SubjectQuotaTimer + account + "." + hex.EncodeToString(sum[:16])
}

// schedule publishes a message schedule in QUOTA_TIMERS that makes the server
// publish {account, invoke_id} on sdevents.quota.due.<account> at `at`
// (rounded up to the second, the resolution of @at schedules). Publishing the
// same reservation again replaces its schedule (the server rolls the subject
// up), so retries are harmless; a schedule of a reservation that was never
// stored fires once and is acknowledged as stray.
func (s *store) schedule(ctx context.Context, account, invokeID string, at time.Time) error {
	msg, opts, err := s.timerMsg(account, invokeID, at)
	if err != nil {
		return err
	}
	if _, err := s.js.PublishMsg(ctx, msg, opts...); err != nil {
		return fmt.Errorf("expiry timer: %w", err)
	}
	return nil
}

// timerMsg builds the schedule message of one reservation, due at at
// (rounded up to the second, the resolution of @at schedules).
func (s *store) timerMsg(account, invokeID string, at time.Time) (*nats.Msg, []jetstream.PublishOpt, error) {
	data, err := json.Marshal(timer{Account: account, InvokeID: invokeID})
	if err != nil {
		return nil, nil, fmt.Errorf("encode expiry timer: %w", err)
	}
	if r := at.Truncate(time.Second); !r.Equal(at) {
		at = r.Add(time.Second)
	}
	msg := &nats.Msg{Subject: timerSubject(account, invokeID), Data: data, Header: nats.Header{}}
	return msg, []jetstream.PublishOpt{jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(contract.SubjectQuotaDue + account)}, nil
}

// storedMsg is a message as the stream leader returns it.
type storedMsg struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Header  []byte    `json:"hdrs"`
	Data    []byte    `json:"data"`
	Time    time.Time `json:"time"`
}

// errNoMsg is returned by store.get when no message matches.
var errNoMsg = errors.New("no such message")

// get asks the QUOTA stream leader for one message: the last one of subject
// (next == false) or the first one of subject at or after seq (next == true).
// It returns errNoMsg when there is none.
//
// It does not use direct gets on purpose: with allow_direct, a follower of a
// replicated stream may answer and lag behind an append it just acknowledged,
// while the leader answers with everything acknowledged so far. Catching up
// must see the event that caused a conflict.
func (s *store) get(ctx context.Context, subject string, seq uint64, next bool) (storedMsg, error) {
	req := map[string]any{"last_by_subj": subject}
	if next {
		req = map[string]any{"seq": seq, "next_by_subj": subject}
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return storedMsg{}, err
	}
	resp, err := s.nc.RequestWithContext(ctx, apiMsgGet+contract.StreamQuota, payload)
	if err != nil {
		return storedMsg{}, fmt.Errorf("read %s: %w", subject, err)
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *storedMsg          `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return storedMsg{}, fmt.Errorf("read %s: %w", subject, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return storedMsg{}, errNoMsg
	case r.Error != nil:
		return storedMsg{}, fmt.Errorf("read %s: %w", subject, r.Error)
	case r.Message == nil:
		return storedMsg{}, fmt.Errorf("read %s: empty answer", subject)
	}
	return *r.Message, nil
}

// lastSeq returns the sequence of the last message on the account's subject,
// 0 when it has none.
func (s *store) lastSeq(ctx context.Context, account string) (uint64, error) {
	m, err := s.get(ctx, ledgerSubject(account), 0, false)
	switch {
	case errors.Is(err, errNoMsg):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return m.Seq, nil
}

// readRange calls fn for every message of stream on filter with a sequence
// in [from, to], in order, through an ordered consumer (one pass, cheap for
// long histories). fn's error stops the read and is returned.
func readRange(ctx context.Context, js jetstream.JetStream, stream, filter string, from, to uint64, fn func(jetstream.Msg) error) error {
	if to < from {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{filter},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		if md.Sequence.Stream > to {
			return nil
		}
		if err := fn(m); err != nil {
			return err
		}
		if md.Sequence.Stream >= to || md.NumPending == 0 {
			return nil
		}
	}
}
