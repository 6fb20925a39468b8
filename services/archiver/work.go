package archiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
)

// openTask makes the jobs of an INGRESS message: one per image it keeps
// (distinct addresses, at most archive.max_images_per_task), after
// recording the images it drops beyond that limit.
func (s *Service) openTask(ctx context.Context, h *held) ([]*job, error) {
	t := parseTask(h.msg.Subject(), h.msg.Headers(), h.msg.Data(), h.meta.Timestamp)
	sel := selectImages(t.Images, s.maxImages)
	h.add(func(tl *tally) {
		tl.account, tl.task, tl.images = t.Account, t.TaskID, len(sel.Kept)
		tl.duplicates, tl.dropped, tl.problems = sel.Duplicates, len(sel.Dropped), t.Problems
	})
	if len(sel.Dropped) > 0 {
		if err := s.recordDropped(ctx, t, sel); err != nil {
			return nil, err
		}
	}
	attempts, seq := int(h.meta.NumDelivered), h.meta.Sequence.Stream
	jobs := make([]*job, 0, len(sel.Kept))
	for _, img := range sel.Kept {
		jobs = append(jobs, &job{account: t.Account, host: hostOf(img.URL), msg: h, run: func(ctx context.Context) error {
			return s.runImage(ctx, t, img, seq, attempts, h)
		}})
	}
	return jobs, nil
}

// openDue makes the job of a fired retry schedule: the image, read again
// from its INGRESS message, or the operator's retry request.
func (s *Service) openDue(ctx context.Context, h *held) ([]*job, error) {
	tm, err := parseDue(h.msg.Subject(), h.msg.Data())
	if err != nil {
		return nil, err
	}
	attempts := tm.Attempts + int(h.meta.NumDelivered)
	if tm.Request != nil {
		req := *tm.Request
		h.add(func(tl *tally) { tl.account, tl.task = req.Account, req.TaskID })
		return []*job{{account: req.Account, msg: h, run: func(ctx context.Context) error {
			return s.runRequest(ctx, req, attempts, tm.Deadline, h)
		}}}, nil
	}
	raw, err := s.ingress.GetMsg(ctx, tm.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: task result %d is no longer in %s", errPoison, tm.Seq, s.ingress.CachedInfo().Config.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("archiver: read task result %d: %w", tm.Seq, err)
	}
	t := parseTask(raw.Subject, raw.Header, raw.Data, raw.Time)
	for _, img := range t.Images {
		if img.Key != tm.Key {
			continue
		}
		h.add(func(tl *tally) { tl.account, tl.task, tl.images = t.Account, t.TaskID, 1 })
		return []*job{{account: t.Account, host: hostOf(img.URL), msg: h, run: func(ctx context.Context) error {
			return s.runImage(ctx, t, img, tm.Seq, attempts, h)
		}}}, nil
	}
	return nil, fmt.Errorf("%w: task result %d holds no image %s", errPoison, tm.Seq, tm.Key)
}

// openRequest makes the job of an operator's retry request (see
// retryrequest.go). A transient failure of the source is retried until
// archive.url_lifetime after the request was stored.
func (s *Service) openRequest(_ context.Context, h *held) ([]*job, error) {
	var req archiveretry.Request
	if err := json.Unmarshal(h.msg.Data(), &req); err != nil || req.FailedSeq == 0 || req.FailedID == "" || req.Key == "" {
		return nil, fmt.Errorf("%w: malformed retry request (%v)", errPoison, err)
	}
	h.add(func(tl *tally) { tl.account, tl.task = req.Account, req.TaskID })
	attempts, deadline := int(h.meta.NumDelivered), h.meta.Timestamp.Add(s.lifetime)
	return []*job{{account: req.Account, msg: h, run: func(ctx context.Context) error {
		return s.runRequest(ctx, req, attempts, deadline, h)
	}}}, nil
}

// runImage settles one image of task t (INGRESS sequence seq), tried for
// the attempts-th time, or hands it to the retry schedule after a
// transient failure. It returns an error only when the message the job
// came from must be delivered again (NATS unavailable, shutting down).
func (s *Service) runImage(ctx context.Context, t task, img image, seq uint64, attempts int, h *held) error {
	id := EventID(img.Key)
	if ok, err := s.outcomes.settled(ctx, id); err != nil {
		return err
	} else if ok {
		h.add(func(tl *tally) { tl.settled++ })
		return nil
	}
	deadline := s.deadline(t)
	o, err := s.attempt(ctx, t, img, attempts, deadline)
	var later *retryLater
	if errors.As(err, &later) {
		delay := s.backoff.delay(attempts, s.now(), deadline)
		if err := s.schedule(ctx, id, timer{Seq: seq, Key: img.Key, Attempts: attempts}, s.now().Add(delay)); err != nil {
			return err
		}
		s.metrics.retries.Inc()
		h.add(func(tl *tally) { tl.retrying++ })
		s.log.Debug().Err(later.err).Str("account", t.Account).Str("task_id", t.TaskID).Str("key", img.Key).
			Int("attempt", attempts).Dur("retry_in_ms", delay).Msg("archive retry scheduled")
		return nil
	}
	if err != nil {
		return err
	}
	claimed, err := s.outcomes.record(ctx, o)
	if err != nil {
		return err
	}
	s.recorded(o, claimed, h)
	return nil
}

// runRequest acts on an operator's retry request, tried for the attempts-th
// time, or hands it to the retry schedule after a transient failure of the
// source before deadline. It returns an error only when the message the
// job came from must be delivered again.
func (s *Service) runRequest(ctx context.Context, req archiveretry.Request, attempts int, deadline time.Time, h *held) error {
	result, err := s.retry(ctx, req, attempts, deadline, h)
	var later *retryLater
	if errors.As(err, &later) {
		delay := s.backoff.delay(attempts, s.now(), deadline)
		id := RetryEventID(req.Key, req.FailedSeq)
		if err := s.schedule(ctx, id, timer{Request: &req, Deadline: deadline, Attempts: attempts}, s.now().Add(delay)); err != nil {
			return err
		}
		s.metrics.retries.Inc()
		s.log.Debug().Err(later.err).Str("account", req.Account).Str("task_id", req.TaskID).Str("key", req.Key).
			Int("attempt", attempts).Dur("retry_in_ms", delay).Msg("archive retry scheduled")
		result, err = retryScheduled, nil
	}
	if err != nil {
		return err
	}
	h.add(func(tl *tally) { tl.result = result })
	return nil
}

// recorded counts an outcome the outcome log recorded (claimed: this attempt's,
// not an earlier one's) and logs a failure once, with its details.
func (s *Service) recorded(o outcome, claimed bool, h *held) {
	if !claimed {
		h.add(func(tl *tally) { tl.settled++ })
		return
	}
	if o.Type == contract.TypeArchiveStored {
		s.metrics.stored.Inc()
		h.add(func(tl *tally) { tl.stored++ })
		return
	}
	s.metrics.failed.Inc()
	h.add(func(tl *tally) { tl.failed++ })
	var f contract.ArchiveFailed
	_ = json.Unmarshal(o.Data, &f)
	ev := s.log.Warn().Str("account", f.Account).Str("task_id", f.TaskID).Str("key", f.Key).
		Str("source_url", f.SourceURL).Str("reason", f.Error).Int("attempts", f.Attempts)
	if o.cause != nil {
		ev = ev.AnErr("cause", o.cause)
	}
	ev.Msg("archive failed")
}

// recordDropped publishes, once, the sd.archive.dropped event of a task
// result that listed more distinct images than archive.max_images_per_task.
// Its id is derived from the dropped images' keys, so a redelivery or a
// replay of the message records nothing more.
func (s *Service) recordDropped(ctx context.Context, t task, sel selection) error {
	sum := sha256.New()
	for _, img := range sel.Dropped {
		sum.Write([]byte(img.Key))
		sum.Write([]byte{'\n'})
	}
	at := s.now().UTC()
	raw, err := json.Marshal(contract.ArchiveDropped{
		Account: t.Account, TaskID: t.TaskID, Images: len(sel.Kept) + len(sel.Dropped),
		Archived: len(sel.Kept), Dropped: len(sel.Dropped), Limit: s.maxImages, DroppedAt: at,
	})
	if err != nil {
		return fmt.Errorf("archiver: encode event: %w", err)
	}
	o := outcome{
		ID: "ad-" + hex.EncodeToString(sum.Sum(nil)[:16]), Subject: contract.SubjectArchiveDropped + callback.SubjectToken(t.Account),
		Account: t.Account, Type: contract.TypeArchiveDropped, At: at, Data: raw,
	}
	claimed, err := s.outcomes.record(ctx, o)
	if claimed {
		s.metrics.dropped.Add(float64(len(sel.Dropped)))
	}
	return err
}
