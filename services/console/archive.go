package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Bounds of the archive page.
const (
	failuresPage = 25
	// failuresSpan bounds the ARCHIVE sequences searched for one page:
	// failures are rare among stored images.
	failuresSpan = 1 << 22
)

// ErrRetryUnsupported: no stream stores retry requests, so no archiver
// would see one (501). The deployment's archiver does not support retries.
var ErrRetryUnsupported = errors.New("no stream stores " + contract.SubjectArchiverRetry + "*: this deployment's archiver does not accept retries")

func init() { httpserver.RegisterStatus(ErrRetryUnsupported, http.StatusNotImplemented) }

// FailureRow is one archive failure.
type FailureRow struct {
	Seq uint64
	Ev  contract.ArchiveFailed
	Err string
}

type archivePageData struct {
	Rows    []FailureRow
	Next    uint64
	Retried uint64
	Repeat  bool
}

// handleArchive serves GET /console/archive?before=<seq>: the archive
// failures, newest first, with their reasons and attempts.
func (s *Service) handleArchive(c echo.Context) error {
	before, err := seqParam(c, "before")
	if err != nil {
		return err
	}
	msgs, next, err := backward(c.Request().Context(), s.reader, contract.StreamArchive, contract.SubjectArchiveFailed+"*", before, failuresPage, failuresSpan)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	d := archivePageData{Next: next}
	if r, err := strconv.ParseUint(c.QueryParam("retried"), 10, 64); err == nil {
		d.Retried, d.Repeat = r, c.QueryParam("repeat") == "1"
	}
	for _, m := range msgs {
		row := FailureRow{Seq: m.Seq}
		if err := json.Unmarshal(m.Data, &row.Ev); err != nil {
			row.Err = "unreadable event: " + err.Error()
		}
		row.Ev.SourceURL = redactURL(row.Ev.SourceURL)
		row.Ev.Error = Redact(row.Ev.Error)
		d.Rows = append(d.Rows, row)
	}
	return s.render(c, http.StatusOK, "archive", page{Title: "Archive", Active: "archive", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

// RetryMessage is the message the console publishes for req
// (pkg/archiveretry): req as JSON on archiveretry.Subject(req.Account), with
// CloudEvents headers whose ce-id, like its Nats-Msg-Id, is req.ID, so the
// stream's duplicate window drops a repeated click.
func RetryMessage(req archiveretry.Request) (*nats.Msg, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("console: encode retry request %s: %w", req.ID, err)
	}
	return event.Message(archiveretry.Subject(req.Account), event.Meta{
		ID: req.ID, Source: contract.SourceConsole, Type: contract.TypeArchiverRetry, Time: req.RequestedAt,
		Subject: req.Account, ContentType: "application/json",
	}, data), nil
}

// handleRetry serves POST /console/archive/{seq}/retry: it publishes a
// retry request (pkg/archiveretry) for the failure at ARCHIVE sequence seq on
// sdevents.archiver.retry.<account>, to JetStream, with Nats-Msg-Id
// retry-<seq>: a second click within the duplicate window is dropped by the
// stream, a later one by the archiver (see archiveretry.Request).
func (s *Service) handleRetry(c echo.Context) error {
	seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
	if err != nil || seq == 0 {
		return fmt.Errorf("%w: %q: want an ARCHIVE sequence number", httpserver.ErrBadRequest, c.Param("seq"))
	}
	ctx := c.Request().Context()
	m, err := s.reader.Get(ctx, contract.StreamArchive, seq)
	if errors.Is(err, ErrNoMsg) || (err == nil && !strings.HasPrefix(m.Subject, contract.SubjectArchiveFailed)) {
		return fmt.Errorf("%w: no archive failure at ARCHIVE sequence %d", httpserver.ErrNotFound, seq)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	var ev contract.ArchiveFailed
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return fmt.Errorf("%w: ARCHIVE sequence %d is not an archive event: %v", httpserver.ErrBadRequest, seq, err)
	}
	acct := strings.TrimPrefix(m.Subject, contract.SubjectArchiveFailed)
	httpserver.Info(c).Account = acct
	req := archiveretry.Request{
		ID: archiveretry.ID(seq), FailedSeq: seq, FailedID: event.Get(m.Header, event.HeaderID),
		Account: cmp.Or(ev.Account, acct), TaskID: ev.TaskID, ImageID: ev.ImageID, Key: ev.Key, SourceURL: redactURL(ev.SourceURL),
		RequestedAt: s.now().UTC(),
	}
	msg, err := RetryMessage(req)
	if err != nil {
		return err
	}
	ack, err := s.js.PublishMsg(ctx, msg)
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
		return ErrRetryUnsupported
	case err != nil:
		return fmt.Errorf("%w: retry request not stored: %v", httpserver.ErrUnavailable, err)
	}
	httpserver.Info(c).Outcome = "retry"
	q := url.Values{"retried": {strconv.FormatUint(seq, 10)}}
	if ack.Duplicate {
		httpserver.Info(c).Outcome = "repeat"
		q.Set("repeat", "1")
	}
	return c.Redirect(http.StatusSeeOther, "/console/archive?"+q.Encode())
}
