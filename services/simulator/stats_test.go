package simulator

import (
	"testing"
	"time"
)

// TestTotalsMatchRows: the cheap totals of the progress display count what
// the table's total row counts.
func TestTotalsMatchRows(t *testing.T) {
	s := newStats()
	s.Attempt("sdPreInvoke", Accepted, time.Millisecond, false)
	s.Attempt("sdPreInvoke", Failed, 2*time.Millisecond, false)
	s.Attempt("sdPreInvoke", Accepted, 3*time.Millisecond, true)
	s.Attempt("sdTaskFinished", Refused, time.Millisecond, false)
	s.Attempt("apiAccessPreInvoke", Denied, time.Millisecond, false)
	s.GaveUp("sdTaskFinished")
	rows := s.Rows()
	want := rows[len(rows)-1]
	want.P50, want.P90, want.P99, want.Max = 0, 0, 0, 0
	if got := s.Totals(); got != want || got.Sent != 5 || got.Retried != 1 || got.GaveUp != 1 {
		t.Fatalf("totals %+v, table's total row %+v", got, want)
	}
}
