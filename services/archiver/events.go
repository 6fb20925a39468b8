package archiver

import "time"

// Subjects of the ARCHIVE stream; the account id is appended.
const (
	SubjectStored  = "sd.archive.stored."
	SubjectFailed  = "sd.archive.failed."
	SubjectDropped = "sd.archive.dropped."
)

// CloudEvents attributes of ARCHIVE events.
const (
	eventSource      = "/sdevents/archiver"
	eventTypeStored  = "sd.archive.stored"
	eventTypeFailed  = "sd.archive.failed"
	eventTypeDropped = "sd.archive.dropped"
)

// StoredEvent is the data of sd.archive.stored.<account>: one per archived
// image (contract §6).
type StoredEvent struct {
	Account string `json:"account"`
	TaskID  string `json:"task_id"`
	ImageID string `json:"image_id"`
	// SourceURL is where the image came from, without query string.
	SourceURL string `json:"source_url"`
	// Key is relative to the bucket or to archive.dir; it starts with
	// <account>/.
	Key string `json:"key"`
	// URI is s3://bucket/key or file:// and the absolute path.
	URI         string `json:"uri"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	// ArchivedAt is fixed when the outcome is first claimed; every
	// redelivery publishes the same value.
	ArchivedAt time.Time `json:"archived_at"`
}

// FailedEvent is the data of sd.archive.failed.<account>: one per image
// that could not be archived, permanently or before its source expired.
type FailedEvent struct {
	Account   string `json:"account"`
	TaskID    string `json:"task_id"`
	ImageID   string `json:"image_id"`
	SourceURL string `json:"source_url"`
	// Key is the key the image would have had.
	Key string `json:"key"`
	// Error is a generic reason ("source answered 404 Not Found", "address
	// not allowed", ...): it names no address the source resolved to and
	// carries no server message. The details are in the archiver's log.
	Error string `json:"error"`
	// Permanent is false when the archiver gave up on a transient failure
	// because the source's lifetime ended.
	Permanent bool `json:"permanent"`
	// Attempts is how many times the image was tried.
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
}

// DroppedEvent is the data of sd.archive.dropped.<account>: one per task
// result that listed more distinct images than archive.max_images_per_task.
// The first Archived images (in the order listed) are archived, each with
// its own stored or failed event; the Dropped others are not fetched.
type DroppedEvent struct {
	Account string `json:"account"`
	TaskID  string `json:"task_id"`
	// Images is the number of distinct images the task result listed
	// (entries naming the same address count once).
	Images    int       `json:"images"`
	Archived  int       `json:"archived"`
	Dropped   int       `json:"dropped"`
	Limit     int       `json:"limit"`
	DroppedAt time.Time `json:"dropped_at"`
}
