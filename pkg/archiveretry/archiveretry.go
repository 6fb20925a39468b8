// Package archiveretry is the protocol between the console's Retry button
// and the archiver: a request to archive again an image whose ARCHIVE
// outcome is a failure. Requests travel on contract.SubjectArchiverRetry +
// <account> and are stored by the ARCHIVER_RETRY work queue
// (streams/archiver-retry.yaml).
//
// The package owns the wire shape only: the data is Request as JSON, the
// ce-type contract.TypeArchiverRetry, the ce-id and Nats-Msg-Id the
// request's ID. The console builds and publishes the message
// (console.RetryMessage); what the archiver does with a request is in
// services/archiver (docs/archiver.md, "Retry requests").
package archiveretry

import (
	"strconv"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
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

// Subject returns the subject of a request about an image of account:
// contract.SubjectArchiverRetry and the account as a subject token.
func Subject(account string) string {
	return contract.SubjectArchiverRetry + callback.SubjectToken(account)
}
