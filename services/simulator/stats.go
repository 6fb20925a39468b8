package simulator

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// Outcome classifies one HTTP attempt.
type Outcome int

// The outcomes of an attempt.
const (
	// Accepted is a 2xx answer (for a synchronous callback: with success true).
	Accepted Outcome = iota
	// Denied is a 2xx answer with success false: a refusal the platform shows
	// to the user (no credits, quota service busy).
	Denied
	// Refused is a 4xx answer.
	Refused
	// Failed is a 5xx answer, a transport error or a timeout.
	Failed
)

// Stats counts attempts and their latencies per event type. It is safe for
// concurrent use.
type Stats struct {
	mu   sync.Mutex
	rows map[string]*statRow
}

type statRow struct {
	counts  [4]int64
	retried int64
	gaveUp  int64
	lat     []time.Duration
}

// newStats returns empty Stats.
func newStats() *Stats { return &Stats{rows: map[string]*statRow{}} }

func (s *Stats) row(kind string) *statRow {
	r := s.rows[kind]
	if r == nil {
		r = &statRow{}
		s.rows[kind] = r
	}
	return r
}

// Attempt records one attempt of kind; retry is true for every attempt after
// the first of a delivery.
func (s *Stats) Attempt(kind string, o Outcome, lat time.Duration, retry bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.row(kind)
	r.counts[o]++
	r.lat = append(r.lat, lat)
	if retry {
		r.retried++
	}
}

// GaveUp records a delivery of kind abandoned after its last retry.
func (s *Stats) GaveUp(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.row(kind).gaveUp++
}

// StatRow is the summary of one event type.
type StatRow struct {
	Kind string `json:"kind"`
	// Sent counts attempts (retries included).
	Sent     int64 `json:"sent"`
	Accepted int64 `json:"accepted"`
	Denied   int64 `json:"denied"`
	Refused  int64 `json:"refused"`
	Failed   int64 `json:"failed"`
	Retried  int64 `json:"retried"`
	GaveUp   int64 `json:"gave_up"`
	// Latency percentiles of all attempts, in milliseconds.
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Rows returns the summary per event type, in the order of a job, then the
// other kinds alphabetically, and a total row last.
func (s *Stats) Rows() []StatRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := slices.Collect(maps.Keys(s.rows))
	slices.SortFunc(kinds, func(a, b string) int {
		ia, ib := kindOrder(a), kindOrder(b)
		if ia != ib {
			return ia - ib
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	var out []StatRow
	total := &statRow{}
	for _, k := range kinds {
		r := s.rows[k]
		out = append(out, r.summary(k))
		for i := range r.counts {
			total.counts[i] += r.counts[i]
		}
		total.retried += r.retried
		total.gaveUp += r.gaveUp
		total.lat = append(total.lat, r.lat...)
	}
	if len(kinds) > 1 {
		out = append(out, total.summary("total"))
	}
	return out
}

var jobOrder = []string{
	"admin grant", "sdImgGenControlConfig", "sdPreInvoke", "apiAccessPreInvoke", "apiAccessCommit",
	"apiAccessRollback", "sdTaskFinished", "sdJobFinished",
	"SubscriptionConfirmation", "Notification running", "Notification completed", "Notification failed",
	"Notification legacy", "Notification duplicate",
}

func kindOrder(k string) int {
	if i := slices.Index(jobOrder, k); i >= 0 {
		return i
	}
	return len(jobOrder)
}

func (r *statRow) summary(kind string) StatRow {
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.5) - 1
		i = max(0, min(len(lat)-1, i))
		return float64(lat[i].Microseconds()) / 1000
	}
	return StatRow{
		Kind: kind, Sent: r.counts[0] + r.counts[1] + r.counts[2] + r.counts[3],
		Accepted: r.counts[Accepted], Denied: r.counts[Denied], Refused: r.counts[Refused], Failed: r.counts[Failed],
		Retried: r.retried, GaveUp: r.gaveUp,
		P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: pct(1),
	}
}

// Totals returns the counts of every row summed, without latencies: it is
// cheap enough for a progress display (Rows sorts every latency).
func (s *Stats) Totals() StatRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := StatRow{Kind: "total"}
	for _, r := range s.rows {
		t.Accepted += r.counts[Accepted]
		t.Denied += r.counts[Denied]
		t.Refused += r.counts[Refused]
		t.Failed += r.counts[Failed]
		t.Retried += r.retried
		t.GaveUp += r.gaveUp
	}
	t.Sent = t.Accepted + t.Denied + t.Refused + t.Failed
	return t
}

// WriteTable writes rows as an aligned table.
func WriteTable(w io.Writer, rows []StatRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "event\tsent\taccepted\tdenied\trefused\tfailed\tretried\tgave up\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.Kind, r.Sent, r.Accepted,
			r.Denied, r.Refused, r.Failed, r.Retried, r.GaveUp, r.P50, r.P90, r.P99, r.Max)
	}
	return tw.Flush()
}
