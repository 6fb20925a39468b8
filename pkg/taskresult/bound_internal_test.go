package taskresult

import (
	"math/big"
	"strings"
	"sync"
	"testing"
)

// TestLongNumbersNeverReachTheDecimalParser: a number literal of a million
// digits, as a size, an image field or an SNS id, is refused by its length:
// the exact decimal parser, whose cost grows with the square of the digits,
// never sees more than MaxNumberLen characters. (Before the bound, the
// 1,040,002-character width below cost seconds of CPU.)
func TestLongNumbersNeverReachTheDecimalParser(t *testing.T) {
	var mu sync.Mutex
	longest := 0
	orig := parseRat
	parseRat = func(s string) (*big.Rat, bool) {
		mu.Lock()
		longest = max(longest, len(s))
		mu.Unlock()
		return orig(s)
	}
	t.Cleanup(func() { parseRat = orig })

	huge := "1." + strings.Repeat("0", 1_040_000)
	c := ParseCallbackResult([]byte(`{"success":true,"data":{"width":` + huge + `,"height":` + huge + `,"modelId":` + huge + `,"generatedImageId":"g"}}`))
	if len(c.Images) != 1 || c.Images[0].Width != 0 || c.Images[0].Height != 0 || c.Images[0].ModelID != "" || c.Images[0].GeneratedImageID != "g" {
		t.Fatalf("images %+v", c.Images)
	}
	if len(c.Problems) != 3 || !strings.Contains(c.Problems[0], "is a number longer than 32 characters") {
		t.Fatalf("problems %q", c.Problems)
	}
	s := ParseSNSMessage(`{"id":` + huge + `,"status":"completed","context":{"job_id":` + huge + `}}`)
	if s.ID != "" || s.JobID != "" || len(s.Problems) != 2 {
		t.Fatalf("sns %+v", s)
	}
	// A literal at the bound is still read.
	if got, ok := NumberText("1." + strings.Repeat("0", MaxNumberLen-2)); !ok || got != "1" {
		t.Fatalf("NumberText at the bound: %q %v", got, ok)
	}
	if longest == 0 || longest > MaxNumberLen {
		t.Fatalf("the decimal parser saw %d characters", longest)
	}
}
