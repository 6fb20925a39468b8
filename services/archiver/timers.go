package archiver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
)

// Retries after a transient failure are JetStream message schedules
// (streams/archiver-timers.yaml): the archiver publishes a schedule on
// contract.SubjectArchiverTimer+<event id> and acknowledges the message the image came
// from, so the consumers' windows hold only work in progress. When the
// schedule fires, the server publishes its data on contract.SubjectArchiverDue+<event
// id>, read by the durable consumer DueConsumerName by every replica. A
// schedule replaces the previous one of the same image, so a redelivery
// that schedules again leaves one; the schedule lives in the stream, so it
// fires while no archiver runs.
const DueConsumerName = "archiver-due"

// timer is the data of a retry schedule: what to try again, and how often
// it was tried.
type timer struct {
	// Seq is the INGRESS sequence of the task result holding the image, Key
	// the image's object key: the image is read again from there (the
	// schedule does not copy its signed URL).
	Seq uint64 `json:"seq,omitempty"`
	Key string `json:"key,omitempty"`
	// Request is an operator's retry request that met a transient failure;
	// Deadline is when its source is no longer worth retrying.
	Request  *archiveretry.Request `json:"request,omitempty"`
	Deadline time.Time             `json:"deadline,omitzero"`
	// Attempts is how many times the image was tried so far.
	Attempts int `json:"attempts"`
}

// schedule publishes the retry schedule of the image (or request) with
// event id: tm is published on contract.SubjectArchiverDue+id at at, rounded up to
// the second (the resolution of schedules). It replaces an earlier
// schedule of the same id. An error means nothing may have been scheduled:
// the caller must not acknowledge the message the image came from.
func (s *Service) schedule(ctx context.Context, id string, tm timer, at time.Time) error {
	raw, err := json.Marshal(tm)
	if err != nil {
		return fmt.Errorf("archiver: encode retry: %w", err)
	}
	if r := at.Truncate(time.Second); !r.Equal(at) {
		at = r.Add(time.Second)
	}
	msg := &nats.Msg{Subject: contract.SubjectArchiverTimer + id, Data: raw, Header: nats.Header{}}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(contract.StreamArchiverTimers),
		jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(contract.SubjectArchiverDue+id)); err != nil {
		return fmt.Errorf("archiver: schedule retry %s: %w", id, err)
	}
	return nil
}

// parseDue reads a fired retry schedule. It fails on anything the archiver
// did not schedule.
func parseDue(subject string, data []byte) (timer, error) {
	id, ok := strings.CutPrefix(subject, contract.SubjectArchiverDue)
	if !ok || id == "" {
		return timer{}, fmt.Errorf("%w: subject %s", errPoison, subject)
	}
	var tm timer
	if err := json.Unmarshal(data, &tm); err != nil {
		return timer{}, fmt.Errorf("%w: %w", errPoison, err)
	}
	switch {
	case tm.Request != nil:
		if tm.Request.FailedSeq == 0 || tm.Request.Key == "" || id != RetryEventID(tm.Request.Key, tm.Request.FailedSeq) {
			return timer{}, fmt.Errorf("%w: retry request does not match %s", errPoison, id)
		}
	case tm.Seq == 0 || tm.Key == "" || id != EventID(tm.Key):
		return timer{}, fmt.Errorf("%w: image does not match %s", errPoison, id)
	}
	return tm, nil
}
