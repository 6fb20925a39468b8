package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// lookup fills a closed job's credits and archive URIs from what the QUOTA
// and ARCHIVE streams hold when the job closes. It never waits for events
// that are not there yet.
type lookup struct {
	nc *nats.Conn
	// quotaLookback is how long before a job's start its quota events may
	// be: a reservation precedes its task by at most the reservation TTL.
	quotaLookback time.Duration
}

// archiveLookback covers clock differences between stream leaders: an image
// is archived after the task that reported it was stored in INGRESS.
const archiveLookback = time.Minute

// fill sets r's Credits from the QUOTA events of r.InvokeIDs and the URI of
// every image of r whose URL an ARCHIVE event stored. The two reads run
// concurrently.
func (l lookup) fill(ctx context.Context, r *jobs.Record) error {
	var credits jobs.Credits
	var uris map[string]string
	var errCredits, errArchive error
	var wg sync.WaitGroup
	if len(r.InvokeIDs) > 0 {
		wg.Go(func() {
			credits, errCredits = l.credits(ctx, r.Account, r.InvokeIDs, r.StartedAt.Add(-l.quotaLookback))
		})
	}
	if hasImages(r) {
		wg.Go(func() { uris, errArchive = l.archived(ctx, r.Account, r.StartedAt.Add(-archiveLookback)) })
	}
	wg.Wait()
	if err := errors.Join(errCredits, errArchive); err != nil {
		return err
	}
	r.Credits = credits
	setURI := func(imgs []jobs.Image) {
		for i := range imgs {
			if u, ok := uris[contract.SourceOf(imgs[i].URL)]; ok {
				imgs[i].URI = u
			}
		}
	}
	setURI(r.Images)
	for i := range r.Tasks {
		setURI(r.Tasks[i].Images)
	}
	return nil
}

func hasImages(r *jobs.Record) bool {
	if len(r.Images) > 0 {
		return true
	}
	return slices.ContainsFunc(r.Tasks, func(t jobs.Task) bool { return len(t.Images) > 0 })
}

// credits sums the account's QUOTA events for invokeIDs since t: reserved,
// committed, and released (expired reservations count as released).
func (l lookup) credits(ctx context.Context, account string, invokeIDs []string, since time.Time) (jobs.Credits, error) {
	var c jobs.Credits
	err := l.scan(ctx, contract.StreamQuota, contract.SubjectQuota+account, since, func(data []byte) {
		var ev contract.QuotaEvent
		if json.Unmarshal(data, &ev) != nil || !slices.Contains(invokeIDs, ev.InvokeID) {
			return
		}
		switch ev.Type {
		case contract.QuotaReserved:
			c.Reserved += ev.Credits
		case contract.QuotaCommitted:
			c.Committed += ev.Credits
		case contract.QuotaReleased, contract.QuotaExpired:
			c.Released += ev.Credits
		}
	})
	return c, err
}

// archived maps source URL to archive URI for the account's images stored
// since t. The archiver records source URLs as contract.SourceOf gives them
// (without a signed URL's query), so callers look up contract.SourceOf(url).
func (l lookup) archived(ctx context.Context, account string, since time.Time) (map[string]string, error) {
	uris := map[string]string{}
	err := l.scan(ctx, contract.StreamArchive, contract.SubjectArchiveStored+account, since, func(data []byte) {
		var ev contract.ArchiveStored
		if json.Unmarshal(data, &ev) == nil && ev.SourceURL != "" && ev.URI != "" {
			uris[ev.SourceURL] = ev.URI
		}
	})
	return uris, err
}

// scanBatch is the number of messages one direct-get request returns.
const scanBatch = 256

// scan calls fn with the data of every message of subject in stream stored
// at or after since, in order, using batched direct gets (no consumer is
// created). It returns when it has read what the stream held when asked.
func (l lookup) scan(ctx context.Context, stream, subject string, since time.Time, fn func([]byte)) error {
	return l.scanFrom(ctx, stream, subject, map[string]any{"start_time": since.UTC()}, fn)
}

// scanFrom is scan from where the first direct-get request's from says:
// {"start_time": t} or {"seq": n}.
func (l lookup) scanFrom(ctx context.Context, stream, subject string, from map[string]any, fn func([]byte)) error {
	// A request is sent only once the previous batch has been read, so the
	// channel never holds more than one batch and its end marker. (A
	// SubscribeSync channel would be allocated for 64k messages, per scan.)
	inbox := l.nc.NewRespInbox()
	ch := make(chan *nats.Msg, scanBatch+8)
	sub, err := l.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	req := map[string]any{"next_by_subj": subject, "batch": scanBatch}
	for k, v := range from {
		req[k] = v
	}
	for {
		payload, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, payload); err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		last, more, err := readBatch(ctx, ch, fn)
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		if !more {
			return nil
		}
		req = map[string]any{"next_by_subj": subject, "batch": scanBatch, "seq": last + 1}
	}
}

// readBatch reads one direct-get batch: messages until the end-of-batch
// marker. more reports that the stream holds further messages after last.
func readBatch(ctx context.Context, ch <-chan *nats.Msg, fn func([]byte)) (last uint64, more bool, err error) {
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		switch status := m.Header.Get("Status"); status {
		case "":
			last, _ = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			fn(m.Data)
		case "204": // end of batch
			return last, last > 0 && m.Header.Get("Nats-Num-Pending") != "0", nil
		case "404": // nothing (more)
			return last, false, nil
		default:
			return 0, false, fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
		}
	}
}
