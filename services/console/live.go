package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Live view parameters.
const (
	rateBucket   = 10 * time.Second
	rateBuckets  = 60 // 10 minutes
	maxSeries    = 24 // subject patterns tracked; the rest count as "other"
	chartSeries  = 8  // series drawn
	tailSize     = 100
	tailBodySize = 2048     // bytes of a body shown in the tail
	tailKeep     = 16 << 10 // bytes of a body kept for the tail (redacted before the cut)
	clientBuffer = 64       // events queued per SSE client before it drops some
	heartbeat    = 15 * time.Second
	// viewersRetryAfter is the Retry-After of a live view refused because
	// console.live_max_clients are open.
	viewersRetryAfter = 30 * time.Second
)

// errTooManyViewers: console.live_max_clients live views are open on this
// replica (503 with Retry-After); try again later, or another replica.
var errTooManyViewers = fmt.Errorf("%w: too many live views open", httpserver.ErrUnavailable)

// LiveEvent is one message seen on sd.>, as the tail shows it: secrets are
// already redacted.
type LiveEvent struct {
	Subject string       `json:"subject"`
	Time    time.Time    `json:"time"`
	Headers []HeaderLine `json:"headers"`
	Body    string       `json:"body"`
	Size    int          `json:"size"`
}

// live counts the messages on sd.> per subject pattern in time buckets and
// keeps the latest ones for the tail, fanning them out to at most
// maxClients SSE clients. Each message is formatted, redacted and encoded
// as an SSE frame once, whatever the number of clients.
type live struct {
	now        func() time.Time
	maxClients int

	mu      sync.Mutex
	series  map[string]*[rateBuckets]int64
	bucket0 int64 // index (time / rateBucket) of the current bucket
	tail    []rawEvent
	clients map[chan []byte]struct{} // of SSE frames
	dropped int64
	closed  bool
}

func newLive(now func() time.Time, maxClients int) *live {
	return &live{now: now, maxClients: maxClients, series: map[string]*[rateBuckets]int64{}, clients: map[chan []byte]struct{}{}}
}

// Pattern returns the series a subject counts in: the account token of the
// per-account subjects becomes "*", so the number of series stays bounded.
func Pattern(subject string) string {
	for _, prefix := range perAccount {
		if acct, ok := strings.CutPrefix(subject, prefix); ok && acct != "" && !strings.Contains(acct, ".") {
			return prefix + "*"
		}
	}
	if !strings.HasPrefix(subject, contract.SubjectPrefix) {
		return "other"
	}
	ingress := strings.HasPrefix(subject, contract.SubjectCallback) || strings.HasPrefix(subject, contract.SubjectSNS)
	if ingress && strings.Count(subject, ".") == 3 {
		return subject // sd.callback.<source>.<bizType>, sd.sns.<source>.<Type>
	}
	kind, _, _ := strings.Cut(strings.TrimPrefix(subject, contract.SubjectPrefix), ".")
	return contract.SubjectPrefix + kind + ".>"
}

// perAccount are the prefixes of the subjects that end in an account id.
var perAccount = []string{contract.SubjectQuota, contract.SubjectArchiveStored, contract.SubjectArchiveFailed,
	contract.SubjectArchiveDropped, contract.SubjectJobFinished}

// advance moves the buckets on to now; the caller holds mu.
func (l *live) advance(now time.Time) int64 {
	b := now.UnixNano() / int64(rateBucket)
	if b <= l.bucket0 {
		return l.bucket0
	}
	shift := b - l.bucket0
	for _, s := range l.series {
		if shift >= rateBuckets {
			*s = [rateBuckets]int64{}
			continue
		}
		copy(s[:], s[shift:])
		clear(s[rateBuckets-shift:])
	}
	l.bucket0 = b
	return b
}

// observe records one message. The message is formatted (and redacted)
// only when an SSE client waits for it; the tail keeps a bounded copy.
func (l *live) observe(m *nats.Msg) {
	now := l.now()
	p := Pattern(m.Subject)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	s, ok := l.series[p]
	if !ok {
		if len(l.series) >= maxSeries {
			p = "other"
			s, ok = l.series[p]
		}
		if !ok {
			s = &[rateBuckets]int64{}
			l.series[p] = s
		}
	}
	s[rateBuckets-1]++
	raw := rawEvent{subject: m.Subject, at: now.UTC(), header: m.Header, size: len(m.Data),
		data: slices.Clone(m.Data[:min(len(m.Data), tailKeep)])}
	l.tail = append(l.tail, raw)
	if len(l.tail) > tailSize {
		l.tail = slices.Delete(l.tail, 0, len(l.tail)-tailSize)
	}
	if len(l.clients) == 0 {
		return
	}
	frame := raw.frame()
	for ch := range l.clients {
		select {
		case ch <- frame:
		default:
			l.dropped++
		}
	}
}

// rawEvent is a message kept for the tail, formatted when shown.
type rawEvent struct {
	subject string
	at      time.Time
	header  nats.Header
	size    int
	data    []byte
}

func (r rawEvent) format() LiveEvent {
	return LiveEvent{Subject: r.subject, Time: r.at, Headers: ShowHeaders(r.header), Size: r.size,
		Body: ShowBody(r.data, tailBodySize)}
}

// frame is the event as an SSE frame: event msg, data a LiveEvent as JSON.
func (r rawEvent) frame() []byte {
	data, err := json.Marshal(r.format())
	if err != nil { // strings, times and ints only: cannot happen
		return nil
	}
	return slices.Concat([]byte("event: msg\ndata: "), data, []byte("\n\n"))
}

// subscribe returns a channel of the SSE frames of new events and those of
// the latest ones; cancel ends the subscription. The channel is closed when
// the console closes. With maxClients subscriptions open it fails with
// errTooManyViewers.
func (l *live) subscribe() (ch chan []byte, recent [][]byte, cancel func(), err error) {
	ch = make(chan []byte, clientBuffer)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		close(ch)
		return ch, nil, func() {}, nil
	}
	if len(l.clients) >= l.maxClients {
		l.mu.Unlock()
		return nil, nil, nil, errTooManyViewers
	}
	l.clients[ch] = struct{}{}
	raw := slices.Clone(l.tail)
	l.mu.Unlock()
	for _, r := range raw {
		recent = append(recent, r.frame())
	}
	return ch, recent, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.clients[ch]; ok {
			delete(l.clients, ch)
			close(ch)
		}
	}, nil
}

// viewers returns the number of open subscriptions.
func (l *live) viewers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// close ends every SSE stream.
func (l *live) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ch := range l.clients {
		delete(l.clients, ch)
		close(ch)
	}
}

// Series is one line of the rate chart.
type Series struct {
	Pattern string
	Total   int64
	// Rates are events per second per bucket, oldest first.
	Rates  []float64
	Points string // SVG polyline points
	Color  string
}

// Chart is the rate chart of the last minutes.
type Chart struct {
	Series  []Series
	Max     float64 // events per second at the top of the chart
	Minutes int
	Width   int
	Height  int
	Since   time.Time
	Dropped int64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// chart draws the buckets of the busiest series as SVG polylines.
func (l *live) chart() Chart {
	now := l.now()
	l.mu.Lock()
	l.advance(now)
	var all []Series
	for p, s := range l.series {
		ser := Series{Pattern: p, Rates: make([]float64, rateBuckets)}
		for i, n := range s {
			ser.Total += n
			ser.Rates[i] = float64(n) / rateBucket.Seconds()
		}
		if ser.Total > 0 {
			all = append(all, ser)
		}
	}
	dropped := l.dropped
	l.mu.Unlock()

	slices.SortFunc(all, func(a, b Series) int {
		if a.Total != b.Total {
			if a.Total > b.Total {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Pattern, b.Pattern)
	})
	if len(all) > chartSeries {
		all = all[:chartSeries]
	}
	c := Chart{Minutes: int(rateBucket * rateBuckets / time.Minute), Width: 600, Height: 160,
		Since: now.Add(-rateBucket * rateBuckets).UTC(), Dropped: dropped, Max: 1}
	for _, s := range all {
		for _, r := range s.Rates {
			c.Max = max(c.Max, r)
		}
	}
	for i := range all {
		var b strings.Builder
		for j, r := range all[i].Rates {
			x := float64(j) * float64(c.Width) / float64(rateBuckets-1)
			y := float64(c.Height) - r/c.Max*float64(c.Height-4) - 2
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		all[i].Points = strings.TrimSpace(b.String())
		all[i].Color = palette[i%len(palette)]
	}
	c.Series = all
	return c
}

// handleStream serves GET /console/live/stream: server-sent events, one per
// message on sd.> (event "msg", data = a LiveEvent as JSON), starting with
// the latest ones. Slow clients miss events rather than slowing the
// console, and a client that does not read one event (or a keep-alive)
// within console.live_write_timeout is disconnected. Beyond
// console.live_max_clients open streams it answers 503 with Retry-After.
func (s *Service) handleStream(c echo.Context) error {
	w := c.Response()
	ch, recent, cancel, err := s.live.subscribe()
	if err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(viewersRetryAfter/time.Second)))
		return fmt.Errorf("%w: at most %d per console replica", err, s.live.maxClients)
	}
	defer cancel()
	rc := http.NewResponseController(w)
	timeout := s.cfg.LiveWriteTimeout
	// write sends b and flushes it within the write timeout, which replaces
	// the server's own for this long-lived response.
	write := func(b ...[]byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("live view: write deadline: %w", err)
		}
		for _, p := range b {
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := write(recent...); err != nil {
		return liveGone(err)
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	ctx := c.Request().Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case frame, ok := <-ch:
			if !ok {
				return nil
			}
			if err := write(frame); err != nil {
				return liveGone(err)
			}
		case <-tick.C:
			if err := write([]byte(": keep-alive\n\n")); err != nil {
				return liveGone(err)
			}
		}
	}
}

// liveGone is the outcome of a live view whose client stopped reading or
// went away: recorded for the request log (the answer is already sent).
func liveGone(err error) error {
	return fmt.Errorf("live view ended: %w", err)
}
