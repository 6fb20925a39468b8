package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// headerRoom is what a JOBS event's headers may take of the server's
// max_payload.
const headerRoom = 64 << 10

// recordMsg is the JOBS event of r: data is r as CONTRACT §6 defines it;
// ce-id and Nats-Msg-Id are the job id, so JetStream keeps one event per job
// within the JOBS duplicate window (24 h) however often it is published;
// ce-time is the job's finished_at, so every publication is the same message.
// The data fits in limit bytes: jobs.Config.MaxRecordBytes bounds a record
// without archive URIs; when the URIs would take it beyond limit they are
// left out, and when even that does not fit (a job stored before records
// were bounded) so are the images, counted as dropped.
func recordMsg(r jobs.Record, limit int) (*nats.Msg, error) {
	data, err := encodeRecord(&r, limit)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", r.JobID, err)
	}
	return event.Message(contract.SubjectJobFinished+r.Account, event.Meta{
		ID: r.JobID, Source: contract.SourceAggregator, Type: contract.TypeJobFinished,
		Time: r.FinishedAt, Subject: r.Account, ContentType: "application/json",
	}, data), nil
}

func encodeRecord(r *jobs.Record, limit int) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil || len(data) <= limit {
		return data, err
	}
	strip := func(imgs []jobs.Image) {
		for i := range imgs {
			imgs[i].URI = ""
		}
	}
	strip(r.Images)
	for i := range r.Tasks {
		strip(r.Tasks[i].Images)
	}
	if data, err = json.Marshal(r); err != nil || len(data) <= limit {
		return data, err
	}
	r.ImagesDropped += len(r.Images)
	r.Images = []jobs.Image{}
	for i := range r.Tasks {
		r.Tasks[i].ImagesDropped += len(r.Tasks[i].Images)
		r.Tasks[i].Images = []jobs.Image{}
	}
	return json.Marshal(r)
}

// records builds the records of the jobs closed, in order, from their facts:
// those each job still held, those of the chunks the group handed out
// (group, not stored), and the stored ones.
func (s *Service) records(ctx context.Context, closed []jobs.Closing, group map[string][]jobs.Fact) ([]jobs.Record, error) {
	recs := make([]jobs.Record, 0, len(closed))
	for _, c := range closed {
		facts, err := s.factsOf(ctx, c, group[c.Job.ID])
		if err != nil {
			return nil, err
		}
		r, err := jobs.Build(c, facts)
		if errors.Is(err, jobs.ErrFactsMissing) {
			// Read again, and from the leader: the facts are gone. The
			// job closes with what is left rather than never.
			s.metrics.factsMissing.Inc()
			s.log.Error().Err(err).Str("job", c.Job.ID).Msg("aggregator: job closes without some of its facts")
		} else if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// publish fills recs (their lookups all at once) and publishes them in
// order, each acknowledged by JetStream before the next.
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
	limit := int(s.nc.MaxPayload()) - headerRoom
	for i := range recs {
		r := &recs[i]
		msg, err := recordMsg(*r, limit)
		if err != nil {
			return err
		}
		ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(contract.StreamJobs))
		if err != nil {
			return fmt.Errorf("publish job %s: %w", r.JobID, err)
		}
		s.metrics.published(r, ack.Duplicate)
	}
	return nil
}
