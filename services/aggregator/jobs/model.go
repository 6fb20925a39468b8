package jobs

import (
	"path"
	"strings"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
)

// Kind is what an observation reports. The callback kinds are spelled as the
// seed's bizType values.
type Kind string

// The kinds of observations.
const (
	KindPreInvoke    Kind = "sdPreInvoke"
	KindTaskFinished Kind = "sdTaskFinished"
	KindJobFinished  Kind = "sdJobFinished"
	// KindSNSResult is an SNS Notification's task message (seeds 000/001).
	KindSNSResult Kind = "sns"
)

// KindOf returns the Kind of a callback bizType, and false for a bizType that
// takes no part in jobs (the adapter skips those messages).
func KindOf(bizType string) (Kind, bool) {
	switch k := Kind(bizType); k {
	case KindPreInvoke, KindTaskFinished, KindJobFinished:
		return k, true
	}
	return "", false
}

// TaskStatus is the status field of an SNS task message.
type TaskStatus string

// The SNS task statuses. TaskLegacy (empty) is a message of a version that
// has no status field: it is terminal, with the outcome in its result.
const (
	TaskLegacy    TaskStatus = ""
	TaskRunning   TaskStatus = "running"
	TaskCompleted TaskStatus = "completed"
	TaskFailed    TaskStatus = "failed"
)

// Observation is one INGRESS message as the aggregator sees it. Seq and Time
// are the INGRESS stream sequence and storage time of the message.
type Observation struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Account string    `json:"account"`
	Kind    Kind      `json:"kind"`
	// InvokeID is the callback's invokeId (callbacks only).
	InvokeID string `json:"invoke_id,omitempty"`
	// TaskID is the SNS message's id (required for KindSNSResult). For
	// sdTaskFinished it is optional: empty means the decimal Seq.
	TaskID string `json:"task_id,omitempty"`
	// Success is the callback body's success, or the SNS message's result.
	Success bool `json:"success"`
	// Status is the SNS message's status (SNS only).
	Status TaskStatus `json:"status,omitempty"`
	// JobID is the SNS message's context.job_id, if it is a string (SNS only).
	JobID string `json:"job_id,omitempty"`
	// Images are the callback's images, or the SNS message's image_url entries
	// converted with ImageFromURI.
	Images []Image `json:"images,omitempty"`
}

// terminal reports whether an SNS message ends its task.
func (o Observation) terminal() bool { return o.Status != TaskRunning }

// snsSuccess is the outcome of a terminal SNS message: result true and not
// status failed.
func (o Observation) snsSuccess() bool { return o.Success && o.Status != TaskFailed }

// Image is one generated image in a Record: the JOBS event's image. URI is
// where the archiver stored the image; this package leaves it empty.
type Image = contract.JobImage

// ImageFromURI describes an SNS image_url entry (s3://bucket/key): the URL is
// the URI itself, the image id the key's base name without extension, the
// type the extension without the dot, lowercased. Width and height are
// unknown (0).
func ImageFromURI(uri string) Image {
	base := path.Base(uri)
	ext := path.Ext(base)
	return Image{
		ImageID: strings.TrimSuffix(base, ext),
		URL:     uri,
		Type:    strings.ToLower(strings.TrimPrefix(ext, ".")),
	}
}

// Task is one task of a Record. ImagesDropped is the number of the task's
// images left out of Images (Config.MaxImagesPerTask, Config.MaxRecordBytes).
type Task = contract.JobTask

// Status is a job's outcome.
type Status = contract.JobStatus

// The job outcomes.
const (
	StatusSucceeded = contract.JobSucceeded
	StatusFailed    = contract.JobFailed
	StatusPartial   = contract.JobPartial
)

// ClosedBy says what closed a job.
type ClosedBy = contract.JobClosedBy

// The reasons a job closes.
const (
	ClosedByJobEvent       = contract.ClosedByJobEvent
	ClosedByIdleTimeout    = contract.ClosedByIdleTimeout
	ClosedByTerminalResult = contract.ClosedByTerminalResult
	// ClosedByTaskLimit: the job reached Config.MaxTasks tasks.
	ClosedByTaskLimit = contract.ClosedByTaskLimit
	// ClosedByMaxDuration: Config.MaxDuration passed since the job opened.
	ClosedByMaxDuration = contract.ClosedByMaxDuration
	// ClosedBySizeLimit: the next task would have taken the record beyond
	// Config.MaxRecordBytes, or the key's State beyond its bound.
	ClosedBySizeLimit = contract.ClosedBySizeLimit
)

// Credits are the quota ledger's amounts for a job's invokeIds. This package
// leaves them zero; the adapter fills them.
type Credits = contract.JobCredits

// Record is one finished job: its JobRecord is the data of an
// sd.job.finished.<account> event, field for field as CONTRACT §6 defines
// it, and encodes as that alone. Tasks and Images are never nil.
// ImagesDropped is the number of the closing job event's images left out of
// Images (Config.MaxImagesPerTask, Config.MaxRecordBytes).
type Record struct {
	contract.JobRecord

	// InvokeIDs are the distinct non-empty invokeIds of every observation of
	// the job (pre-invokes, tasks, job event), in first-seen order: where the
	// adapter looks up Credits. Not part of the event.
	InvokeIDs []string `json:"-"`
}

// statusOf computes a job's status from its tasks; event is the closing
// sdJobFinished's success, nil when no job event closed the job.
func statusOf(tasks []Task, event *bool) Status {
	if len(tasks) == 0 {
		if event != nil && *event {
			return StatusSucceeded
		}
		return StatusFailed
	}
	ok := 0
	for _, t := range tasks {
		if t.Success {
			ok++
		}
	}
	switch ok {
	case len(tasks):
		return StatusSucceeded
	case 0:
		return StatusFailed
	}
	return StatusPartial
}

func cloneImages(in []Image) []Image {
	return append(make([]Image, 0, len(in)), in...)
}
