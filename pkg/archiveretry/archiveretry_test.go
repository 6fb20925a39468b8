package archiveretry_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/archiveretry"
)

// TestRequest: a request travels on the account's subject, its id is the
// same for every click on one failure, and it decodes back to itself.
func TestRequest(t *testing.T) {
	t.Parallel()
	req := archiveretry.Request{
		ID: archiveretry.ID(42), FailedSeq: 42, FailedID: "ar-1", Account: "a_x", TaskID: "inv-1", ImageID: "g-1",
		Key: "a_x/2026/12/03/inv-1/g-1.png", SourceURL: "https://img.example/g-1.png",
		RequestedAt: time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC),
	}
	if got := archiveretry.Subject(req.Account); got != "sdevents.archiver.retry.a_x" || req.ID != "retry-42" {
		t.Fatalf("subject %q, id %q", got, req.ID)
	}
	if got := archiveretry.Subject("a.b *>"); got != "sdevents.archiver.retry.a_b___" {
		t.Errorf("an account that is not a subject token: subject %q", got)
	}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back archiveretry.Request
	if err := json.Unmarshal(data, &back); err != nil || back != req {
		t.Fatalf("decoded %+v (%v), want %+v", back, err, req)
	}
}
