package archiver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// Retry requests (docs/archiver.md, "Retry requests"; the wire shape is
// pkg/archiveretry): the console's Retry button publishes one on
// sdevents.archiver.retry.<account>, stored by the
// stream ARCHIVER_RETRY (streams/archiver-retry.yaml) and consumed through
// its durable consumer archiver-retry by every replica.
const RetryConsumerName = "archiver-retry"

// RetryEventID is the id (ce-id, Nats-Msg-Id) of the outcome of a retry of
// the failure at ARCHIVE sequence failedSeq of the image stored under key:
// distinct from EventID(key), so the duplicate window does not drop it.
func RetryEventID(key string, failedSeq uint64) string {
	return EventID(key) + "-r" + strconv.FormatUint(failedSeq, 10)
}

// Results of a retry request that was acknowledged.
const (
	retryDone       = "retried"
	retryRepeated   = "already retried"
	retryNotFailure = "not that failure"
	retryNoRecord   = "no record"
	retryNoSource   = "INGRESS message not found"
	retryScheduled  = "retry scheduled"
)

// ingressScanMargin widens the search for the INGRESS message of a retried
// image around the day of its key, for clock differences.
const ingressScanMargin = 10 * time.Minute

// retry archives again the image of req while its ARCHIVE_KEYS record is
// the failure req names: it re-reads the image from its INGRESS message,
// copies it, and replaces the record by compare-and-set with a claim of the
// new outcome (id RetryEventID), which it publishes. A record that is no
// longer that failure is left alone; a pending claim of this retry (a crash,
// another replica) is completed with its recorded outcome. It returns what
// it did; a *retryLater when the source failed transiently before
// deadline; or another error when the request should be delivered again.
func (s *Service) retry(ctx context.Context, req archiveretry.Request, attempts int, deadline time.Time, h *held) (string, error) {
	entry := EventID(req.Key)
	retryID := RetryEventID(req.Key, req.FailedSeq)
	var (
		t     task
		img   image
		found bool
	)
	for range 4 {
		e, err := s.outcomes.kv.Get(ctx, entry)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return retryNoRecord, nil
		}
		if err != nil {
			return "", fmt.Errorf("archiver: outcome get %s: %w", entry, err)
		}
		var rec record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return retryNotFailure, nil
		}
		switch {
		case rec.Outcome.ID == retryID && rec.State == stateDone:
			return retryRepeated, nil
		case rec.State == statePending && (rec.Outcome.ID == retryID || rec.Outcome.ID == req.FailedID):
			// This retry's claim, left by a crash or being completed by
			// another replica; or the failure itself, not yet marked done.
			if err := s.outcomes.complete(ctx, rec, e.Revision()); err != nil {
				return "", err
			}
			continue
		case rec.State != stateDone || rec.Outcome.ID != req.FailedID || rec.Outcome.Type != contract.TypeArchiveFailed || rec.Seq != req.FailedSeq:
			return retryNotFailure, nil
		}
		if !found {
			if t, img, found, err = s.findImage(ctx, req); err != nil {
				return "", err
			}
			if !found {
				return retryNoSource, nil
			}
		}
		o, err := s.attempt(ctx, t, img, attempts, deadline)
		if err != nil {
			return "", err
		}
		o.ID, o.Entry = retryID, entry
		ok, err := s.outcomes.replace(ctx, o, e.Revision())
		if err != nil {
			return "", err
		}
		if ok {
			s.recorded(o, true, h)
			return retryDone, nil
		}
		// The record moved on meanwhile: read it again.
	}
	return "", errClaimBusy
}

// findImage finds the INGRESS message of the image of req and the image in
// it. The key's date is the UTC day of the message's event time, so only the
// messages stored that day (± a margin) on the archiver's subjects are read,
// headers only; those of the request's account and task are read whole.
func (s *Service) findImage(ctx context.Context, req archiveretry.Request) (task, image, bool, error) {
	day, ok := keyDay(req.Key)
	if !ok {
		return task{}, image{}, false, nil
	}
	from, until := day.Add(-ingressScanMargin), day.Add(24*time.Hour+ingressScanMargin)
	st, err := s.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		return task{}, image{}, false, fmt.Errorf("archiver: stream %s: %w", contract.StreamIngress, err)
	}
	cfg := s.cons.CachedInfo().Config
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	var (
		found    task
		foundImg image
		hit      bool
	)
	err = scanHeaders(ctx, s.js, contract.StreamIngress, filters, from, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return nil
		}
		if meta.Timestamp.After(until) {
			return errStopScan
		}
		if !candidate(m.Subject(), m.Headers(), req) {
			return nil
		}
		raw, err := st.GetMsg(ctx, meta.Sequence.Stream)
		if err != nil {
			return fmt.Errorf("read INGRESS %d: %w", meta.Sequence.Stream, err)
		}
		t := parseTask(raw.Subject, raw.Header, raw.Data, raw.Time)
		for _, img := range t.Images {
			if img.Key == req.Key {
				found, foundImg, hit = t, img, true
				return errStopScan
			}
		}
		return nil
	})
	if err != nil {
		return task{}, image{}, false, fmt.Errorf("archiver: search INGRESS: %w", err)
	}
	return found, foundImg, hit, nil
}

// candidate reports whether an INGRESS message (headers only) may hold the
// image of req: same account, and same task (an SNS message without a task
// id header names its task in the body).
func candidate(subject string, h map[string][]string, req archiveretry.Request) bool {
	if cmp.Or(event.Get(h, event.HeaderSDAccount), noAccount) != req.Account {
		return false
	}
	if strings.HasPrefix(subject, contract.SubjectSNS) {
		id := event.Get(h, event.HeaderTaskID)
		return id == "" || id == req.TaskID
	}
	return event.Get(h, event.HeaderInvokeID) == req.TaskID
}

// keyDay returns the UTC day of an object key (<account>/<yyyy>/<mm>/<dd>/…).
func keyDay(key string) (time.Time, bool) {
	parts := strings.Split(key, "/")
	if len(parts) < 6 {
		return time.Time{}, false
	}
	d, err := time.Parse("2006/01/02", strings.Join(parts[1:4], "/"))
	return d, err == nil
}
