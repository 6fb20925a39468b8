package contract

import (
	"net/url"
	"strings"
	"time"
)

// ArchiveStored is the data of SubjectArchiveStored + account: one per
// archived image (CONTRACT §6).
type ArchiveStored struct {
	Account string `json:"account"`
	TaskID  string `json:"task_id"`
	ImageID string `json:"image_id"`
	// SourceURL is where the image came from: SourceOf its address.
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

// ArchiveFailed is the data of SubjectArchiveFailed + account: one per image
// that could not be archived, permanently or before its source expired.
type ArchiveFailed struct {
	Account   string `json:"account"`
	TaskID    string `json:"task_id"`
	ImageID   string `json:"image_id"`
	SourceURL string `json:"source_url"`
	// Key is the key the image would have had.
	Key string `json:"key"`
	// Error is a generic reason ("source answered 404 Not Found", "address
	// not allowed", ...): it names no address the source resolved to and
	// carries no server message.
	Error string `json:"error"`
	// Permanent is false when the archiver gave up on a transient failure
	// because the source's lifetime ended.
	Permanent bool `json:"permanent"`
	// Attempts is how many times the image was tried.
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
}

// ArchiveDropped is the data of SubjectArchiveDropped + account: one per
// task result that listed more distinct images than archive.max_images_per_task.
// The first Archived images (in the order listed) are archived, each with
// its own stored or failed event; the Dropped others are not fetched.
type ArchiveDropped struct {
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

// SourceOf is an image address as ARCHIVE events record it in source_url,
// and so as readers look an image up: an s3:// URI as it is (its key may
// hold '?', '#', '%' or spaces, and it carries no credential), any other
// URL as scheme://host/path, without user info, query or fragment (a signed
// URL's query is a credential), and "<bad url>" for one that does not
// parse.
func SourceOf(raw string) string {
	if strings.HasPrefix(raw, "s3://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "<bad url>"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}
