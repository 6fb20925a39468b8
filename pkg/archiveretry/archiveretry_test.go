package archiveretry_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// TestMessage: a request travels on the account's subject with its id as
// ce-id and Nats-Msg-Id, and decodes back to itself.
func TestMessage(t *testing.T) {
	req := archiveretry.Request{
		ID: archiveretry.ID(42), FailedSeq: 42, FailedID: "ar-1", Account: "a_x", TaskID: "inv-1", ImageID: "g-1",
		Key: "a_x/2026/12/03/inv-1/g-1.png", SourceURL: "https://img.example/g-1.png",
		RequestedAt: time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC),
	}
	msg, err := archiveretry.Message(req, "/sdevents/console")
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "sdevents.archiver.retry.a_x" || req.ID != "retry-42" {
		t.Fatalf("subject %q, id %q", msg.Subject, req.ID)
	}
	if got := msg.Header.Get(nats.MsgIdHdr); got != "retry-42" {
		t.Errorf("Nats-Msg-Id %q", got)
	}
	if got := event.Get(msg.Header, event.HeaderID); got != "retry-42" {
		t.Errorf("ce-id %q", got)
	}
	if got := event.Get(msg.Header, event.HeaderType); got != contract.TypeArchiverRetry {
		t.Errorf("ce-type %q", got)
	}
	var back archiveretry.Request
	if err := json.Unmarshal(msg.Data, &back); err != nil || back != req {
		t.Fatalf("decoded %+v (%v), want %+v", back, err, req)
	}
}
