package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Bounds of the jobs pages.
const (
	jobsPage = 25
	// jobsSpan bounds the JOBS sequences searched for one page (a stream
	// with deleted messages has gaps).
	jobsSpan = 1 << 20
	// listThumbs is the number of thumbnails a job shows in the list.
	listThumbs = 4
	// ingressScan bounds the INGRESS messages read to find a job's events;
	// ingressShown bounds the events shown.
	ingressScan  = 2000
	ingressShown = 50
	// ingressLookback: a job's events may precede its start (reservations,
	// clock differences between stream leaders).
	ingressLookback = 2 * time.Minute
	ingressMargin   = time.Minute
	// archiveScan bounds the ARCHIVE messages read to find images archived
	// after their job closed.
	archiveScan = 512
	// maxLookups bounds the accounts whose ARCHIVE events one page reads.
	maxLookups = 8
	// bodyShown bounds the bytes of one raw event body shown.
	bodyShown = 64 << 10
)

// JobRow is one job of the jobs list.
type JobRow struct {
	Seq    uint64
	Rec    contract.JobRecord
	Err    string // the record could not be read
	Thumbs []Thumb
	More   int // images not shown
}

// Thumb is an image of a job as shown: Key is set when the image is in this
// console's archive sink.
type Thumb struct {
	Img contract.JobImage
	Key string
}

type jobsPageData struct {
	Rows []JobRow
	Next uint64
}

// handleJobs serves GET /console/jobs?before=<seq>: the latest job records,
// newest first, read backwards from the end of JOBS (or from before) with
// one batched direct get per page.
func (s *Service) handleJobs(c echo.Context) error {
	before, err := seqParam(c, "before")
	if err != nil {
		return err
	}
	msgs, next, err := backward(c.Request().Context(), s.reader, contract.StreamJobs, contract.SubjectJobFinished+"*", before, jobsPage, jobsSpan)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	d := jobsPageData{Next: next}
	recs := make([]contract.JobRecord, 0, len(msgs))
	for _, m := range msgs {
		row := JobRow{Seq: m.Seq}
		if err := json.Unmarshal(m.Data, &row.Rec); err != nil {
			row.Err = "unreadable record: " + err.Error()
		}
		imgs := allImages(row.Rec)
		if len(imgs) > listThumbs {
			row.More = len(imgs) - listThumbs
			imgs = imgs[:listThumbs]
		}
		recs = append(recs, contract.JobRecord{Account: row.Rec.Account, StartedAt: row.Rec.StartedAt, Images: imgs})
		d.Rows = append(d.Rows, row)
	}
	archived := s.archivedKeys(c.Request().Context(), recs)
	for i := range d.Rows {
		d.Rows[i].Thumbs = s.thumbsOf(recs[i].Images, archived)
	}
	return s.render(c, http.StatusOK, "jobs", page{Title: "Jobs", Active: "jobs", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

func (s *Service) thumbOf(img contract.JobImage) Thumb {
	k, _ := s.keys.key(img.URI)
	return Thumb{Img: img, Key: k}
}

// RawEvent is an INGRESS message shown in a job's detail, secrets redacted.
type RawEvent struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Headers []HeaderLine
	Body    string
}

type jobPageData struct {
	Seq         uint64
	Rec         contract.JobRecord
	Images      []Thumb
	Tasks       []jobTaskView
	Events      []RawEvent
	Scanned     int
	ScanLimited bool
	Raw         string
}

type jobTaskView struct {
	Task   contract.JobTask
	Images []Thumb
}

// handleJob serves GET /console/jobs/{seq}: one job record with its tasks,
// images, credits, and the INGRESS events that made it.
func (s *Service) handleJob(c echo.Context) error {
	seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
	if err != nil || seq == 0 {
		return fmt.Errorf("%w: job %q: want a JOBS sequence number", httpserver.ErrBadRequest, c.Param("seq"))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 10*time.Second)
	defer cancel()
	m, err := s.reader.Get(ctx, contract.StreamJobs, seq)
	if errors.Is(err, ErrNoMsg) {
		return fmt.Errorf("%w: no job record at JOBS sequence %d", httpserver.ErrNotFound, seq)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	d := jobPageData{Seq: seq, Raw: ShowBody(m.Data, bodyShown)}
	if err := json.Unmarshal(m.Data, &d.Rec); err != nil {
		return fmt.Errorf("%w: JOBS sequence %d is not a job record: %v", httpserver.ErrNotFound, seq, err)
	}
	httpserver.Info(c).Account = d.Rec.Account
	archived := s.archivedKeys(ctx, []contract.JobRecord{d.Rec})
	d.Images = s.thumbsOf(allImages(d.Rec), archived)
	for _, t := range d.Rec.Tasks {
		d.Tasks = append(d.Tasks, jobTaskView{Task: t, Images: s.thumbsOf(t.Images, archived)})
	}
	d.Events, d.Scanned, d.ScanLimited, err = s.jobEvents(ctx, d.Rec)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	return s.render(c, http.StatusOK, "job", page{Title: "Job " + d.Rec.JobID, Active: "jobs", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

// archivedKeys finds the archive keys of images that records show without
// a URI (archived after their job closed, or recorded by an aggregator that
// did not match them): it maps each such image URL, without its query (as
// the archiver records it), to its key, from one bounded read of each
// account's sd.archive.stored events since the earliest start, for at most
// maxLookups accounts.
func (s *Service) archivedKeys(ctx context.Context, recs []contract.JobRecord) map[string]string {
	type want struct {
		since time.Time
		urls  map[string]bool
	}
	byAccount := map[string]*want{}
	for _, r := range recs {
		for _, img := range allImages(r) {
			if img.URI != "" || img.URL == "" || r.Account == "" {
				continue
			}
			w, ok := byAccount[r.Account]
			if !ok {
				if len(byAccount) == maxLookups {
					continue
				}
				w = &want{since: r.StartedAt, urls: map[string]bool{}}
				byAccount[r.Account] = w
			}
			if r.StartedAt.Before(w.since) {
				w.since = r.StartedAt
			}
			w.urls[redactURL(img.URL)] = true
		}
	}
	out := map[string]string{}
	for acct, w := range byAccount {
		msgs, _, err := s.reader.Batch(ctx, contract.StreamArchive, BatchRequest{
			Filter: contract.SubjectArchiveStored + callback.SubjectToken(acct), Since: w.since.Add(-ingressMargin), Max: archiveScan,
		})
		if err != nil {
			continue // thumbnails are missing, the page is not
		}
		for _, m := range msgs {
			var ev contract.ArchiveStored
			if json.Unmarshal(m.Data, &ev) != nil || !w.urls[ev.SourceURL] {
				continue
			}
			if k, ok := s.keys.key(ev.URI); ok {
				out[ev.SourceURL] = k
			}
		}
	}
	return out
}

// thumbs returns the images of a record as shown, with the keys found by
// archivedKeys for those without a URI.
func (s *Service) thumbsOf(imgs []contract.JobImage, archived map[string]string) []Thumb {
	out := make([]Thumb, 0, len(imgs))
	for _, img := range imgs {
		t := s.thumbOf(img)
		if t.Key == "" && img.URL != "" {
			t.Key = archived[redactURL(img.URL)]
		}
		out = append(out, t)
	}
	return out
}

// redactURL drops the query and fragment of a URL, as the archiver records
// source URLs.
func redactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// jobEvents finds the INGRESS events of a job: the messages of its source
// from a little before it started to a little after it finished whose
// account is the job's and whose invokeId or task id is one of the job's,
// or which are task or job events stored while it was open (a job is keyed
// by source and account; CONTRACT §6). It reads at most ingressScan
// messages, with batched direct gets filtered on the source.
func (s *Service) jobEvents(ctx context.Context, r contract.JobRecord) ([]RawEvent, int, bool, error) {
	if r.Source == "" || r.StartedAt.IsZero() {
		return nil, 0, false, nil
	}
	ids := map[string]bool{}
	for _, t := range r.Tasks {
		if t.InvokeID != "" {
			ids[t.InvokeID] = true
		}
		if t.TaskID != "" {
			ids[t.TaskID] = true
		}
	}
	from, to := r.StartedAt.Add(-ingressLookback), r.FinishedAt.Add(ingressMargin)
	filter := contract.SubjectPrefix + "*." + callback.SubjectToken(r.Source) + ".>" // sd.callback.<source>.> and sd.sns.<source>.>
	var out []RawEvent
	scanned := 0
	req := BatchRequest{Filter: filter, Since: from, Max: batchChunk}
	for scanned < ingressScan && len(out) < ingressShown {
		req.Max = min(batchChunk, ingressScan-scanned)
		msgs, more, err := s.reader.Batch(ctx, contract.StreamIngress, req)
		if err != nil {
			return nil, 0, false, err
		}
		for _, m := range msgs {
			if m.Time.After(to) {
				return out, scanned, false, nil
			}
			scanned++
			if jobEventMatches(m, r, ids) {
				out = append(out, RawEvent{Seq: m.Seq, Subject: m.Subject, Time: m.Time, Headers: ShowHeaders(m.Header),
					Body: ShowBody(m.Data, bodyShown)})
				if len(out) == ingressShown {
					return out, scanned, true, nil
				}
			}
		}
		if !more || len(msgs) == 0 {
			return out, scanned, false, nil
		}
		req = BatchRequest{Filter: filter, From: msgs[len(msgs)-1].Seq + 1}
	}
	return out, scanned, true, nil
}

// jobKinds are the events that make a job.
var jobKinds = []string{"sdPreInvoke", "sdTaskFinished", "sdJobFinished"}

func jobEventMatches(m Msg, r contract.JobRecord, ids map[string]bool) bool {
	acct := event.Get(m.Header, event.HeaderSDAccount)
	if acct == "" {
		acct = "_"
	}
	if acct != r.Account {
		return false
	}
	if id := event.Get(m.Header, event.HeaderInvokeID); id != "" && ids[id] {
		return true
	}
	if id := event.Get(m.Header, event.HeaderTaskID); id != "" && ids[id] {
		return true
	}
	open := !m.Time.Before(r.StartedAt.Add(-time.Second)) && !m.Time.After(r.FinishedAt.Add(time.Second))
	return open && slices.Contains(jobKinds, event.Get(m.Header, event.HeaderBizType))
}
