package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Bounds of the dead letters page.
const (
	deadPage = 25
	// deadSpan bounds the DEAD sequences searched for one page of one
	// consumer's records among the others'.
	deadSpan = 1 << 20
	// maxConsumerName bounds the consumer a page is filtered on.
	maxConsumerName = 64
)

// DeadRow is one dead-letter record as the page shows it: the record's
// fields (pkg/deadletter.Record, CONTRACT §6), never the message's data,
// which stays in its stream.
type DeadRow struct {
	Seq uint64
	Rec deadletter.Record
	Err string
}

type deadPageData struct {
	Rows     []DeadRow
	Consumer string // the filter; "" = every consumer
	Older    string // the link to the next page, "" when there is none
}

// handleDead serves GET /console/dead?consumer=<name>&before=<seq>: the
// messages the services' consumers gave up on (DEAD), newest first, a page
// of 25 at a time, optionally of one consumer. The reasons are shown with
// URL queries and secret-looking members redacted.
func (s *Service) handleDead(c echo.Context) error {
	before, err := seqParam(c, "before")
	if err != nil {
		return err
	}
	consumer := c.QueryParam("consumer")
	filter := contract.SubjectDead + ">"
	if consumer != "" {
		if !consumerName(consumer) {
			return fmt.Errorf("%w: consumer %q: want a consumer name", httpserver.ErrBadRequest, consumer)
		}
		filter = contract.SubjectDead + consumer
	}
	msgs, next, err := backward(c.Request().Context(), s.reader, contract.StreamDead, filter, before, deadPage, deadSpan)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	d := deadPageData{Consumer: consumer}
	if next > 0 {
		q := url.Values{"before": {strconv.FormatUint(next, 10)}}
		if consumer != "" {
			q.Set("consumer", consumer)
		}
		d.Older = "/console/dead?" + q.Encode()
	}
	for _, m := range msgs {
		row := DeadRow{Seq: m.Seq}
		if err := json.Unmarshal(m.Data, &row.Rec); err != nil {
			row = DeadRow{Seq: m.Seq, Err: "unreadable record"}
		}
		row.Rec.Reason = Redact(row.Rec.Reason)
		d.Rows = append(d.Rows, row)
	}
	return s.render(c, http.StatusOK, "dead", page{Title: "Dead letters", Active: "dead", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

// consumerName reports whether s can name a durable consumer: 1 to 64
// letters, digits, '-' and '_'.
func consumerName(s string) bool {
	if s == "" || len(s) > maxConsumerName {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
