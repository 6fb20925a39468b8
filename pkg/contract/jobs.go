package contract

import "time"

// JobStatus is a job's outcome.
type JobStatus string

// The job outcomes.
const (
	JobSucceeded JobStatus = "succeeded"
	JobFailed    JobStatus = "failed"
	JobPartial   JobStatus = "partial"
)

// JobClosedBy says what closed a job.
type JobClosedBy string

// The reasons a job closes (docs/aggregator.md).
const (
	ClosedByJobEvent       JobClosedBy = "job_event"
	ClosedByIdleTimeout    JobClosedBy = "idle_timeout"
	ClosedByTerminalResult JobClosedBy = "terminal_result"
	// ClosedByTaskLimit: the job reached the most tasks a job may have.
	ClosedByTaskLimit JobClosedBy = "task_limit"
	// ClosedByMaxDuration: the longest a job may stay open passed.
	ClosedByMaxDuration JobClosedBy = "max_duration"
	// ClosedBySizeLimit: the next task would have taken the record beyond
	// its bound.
	ClosedBySizeLimit JobClosedBy = "size_limit"
)

// JobRecord is one finished job: the data of SubjectJobFinished + account
// (CONTRACT §6). Tasks and Images are never nil in a published record.
type JobRecord struct {
	JobID    string      `json:"job_id"`
	Account  string      `json:"account"`
	Source   string      `json:"source"`
	Status   JobStatus   `json:"status"`
	ClosedBy JobClosedBy `json:"closed_by"`
	Tasks    []JobTask   `json:"tasks"`
	Images   []JobImage  `json:"images"`
	// ImagesDropped is the number of the closing job event's images left
	// out of Images.
	ImagesDropped int        `json:"images_dropped,omitempty"`
	Credits       JobCredits `json:"credits"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    time.Time  `json:"finished_at"`
}

// JobTask is one task of a JobRecord.
type JobTask struct {
	TaskID   string     `json:"task_id"`
	InvokeID string     `json:"invoke_id"`
	Success  bool       `json:"success"`
	Images   []JobImage `json:"images"`
	// ImagesDropped is the number of the task's images left out of Images.
	ImagesDropped int `json:"images_dropped,omitempty"`
}

// JobImage is one generated image of a JobRecord.
type JobImage struct {
	ImageID string `json:"image_id"`
	URL     string `json:"url"`
	Type    string `json:"type"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	// URI is where the archiver stored the image; empty until archived, and
	// left out of a record that would not fit with it.
	URI string `json:"uri,omitempty"`
}

// JobCredits are the QUOTA amounts of a job's invokeIds: reserved,
// committed, and released (expired reservations count as released).
type JobCredits struct {
	Reserved  int64 `json:"reserved"`
	Committed int64 `json:"committed"`
	Released  int64 `json:"released"`
}
