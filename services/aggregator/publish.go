package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// JobSubjectPrefix starts the subject of every JOBS event; the account id
// follows.
const JobSubjectPrefix = "sd.job.finished."

// recordMsg is the JOBS event of r: data is r as CONTRACT §6 defines it;
// ce-id and Nats-Msg-Id are the job id, so JetStream keeps one event per job
// within the JOBS duplicate window (24 h) however often it is published;
// ce-time is the job's finished_at, so every publication is the same message.
func recordMsg(r jobs.Record) (*nats.Msg, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", r.JobID, err)
	}
	return event.Message(JobSubjectPrefix+r.Account, event.Meta{
		ID: r.JobID, Source: "/sdevents/aggregator", Type: "sd.job.finished",
		Time: r.FinishedAt, Subject: r.Account, ContentType: "application/json",
	}, data), nil
}

// publish fills recs (their lookups all at once) and publishes them in
// order, each acknowledged by JetStream before the next. dup counts the ones
// JetStream already had.
func (s *Service) publish(ctx context.Context, recs []jobs.Record) error {
	if len(recs) == 0 {
		return nil
	}
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			if err := s.lookup.fill(ctx, &recs[i]); err != nil {
				errs[i] = fmt.Errorf("job %s: %w", recs[i].JobID, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		msg, err := recordMsg(*r)
		if err != nil {
			return err
		}
		ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream("JOBS"))
		if err != nil {
			return fmt.Errorf("publish job %s: %w", r.JobID, err)
		}
		s.metrics.published(r, ack.Duplicate)
	}
	return nil
}
