// Package archiveretry is the protocol between the console's Retry button
// and the archiver: a request to archive again an image whose ARCHIVE
// outcome is a failure. Requests travel on contract.SubjectArchiverRetry +
// <account> and are stored by the ARCHIVER_RETRY work queue
// (streams/archiver-retry.yaml).
//
// The package owns the wire shape only; what the archiver does with a
// request is in services/archiver (docs/archiver.md, "Retry requests").
package archiveretry

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// Request is the data of a retry request: archive again the image whose
// failure is the ARCHIVE event FailedID at sequence FailedSeq. The archiver
// acts on it only while that failure is the image's recorded outcome, so the
// same request, repeated at any time, retries at most once.
type Request struct {
	// ID is "retry-<FailedSeq>", also the message's ce-id and Nats-Msg-Id.
	ID        string `json:"id"`
	FailedSeq uint64 `json:"failed_seq"`
	FailedID  string `json:"failed_id"`
	Account   string `json:"account"`
	TaskID    string `json:"task_id"`
	ImageID   string `json:"image_id"`
	// Key is the key the image would have had in the archive.
	Key string `json:"key"`
	// SourceURL is the image's URL without its query.
	SourceURL   string    `json:"source_url"`
	RequestedAt time.Time `json:"requested_at"`
}

// ID is the id of the request to retry the failure at ARCHIVE sequence
// failedSeq: the same for every click, so the stream's duplicate window
// drops repeats.
func ID(failedSeq uint64) string { return "retry-" + strconv.FormatUint(failedSeq, 10) }

// Message is r as a JetStream message with CloudEvents headers from source;
// its Nats-Msg-Id is r.ID.
func Message(r Request, source string) (*nats.Msg, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("archiveretry: encode request %s: %w", r.ID, err)
	}
	return event.Message(contract.SubjectArchiverRetry+callback.SubjectToken(r.Account), event.Meta{
		ID: r.ID, Source: source, Type: contract.TypeArchiverRetry, Time: r.RequestedAt,
		Subject: r.Account, ContentType: "application/json",
	}, data), nil
}
