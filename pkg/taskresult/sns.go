package taskresult

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Status is the state of a task.
type Status string

// Task states. StatusUnknown is used when the message says nothing usable.
const (
	StatusUnknown   Status = ""
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
)

// Terminal reports whether s ends the task (completed or failed).
func (s Status) Terminal() bool { return s == StatusCompleted || s == StatusFailed }

// SNSResult is what ParseSNSMessage could read from one Notification Message.
type SNSResult struct {
	// ID is the task id; a numeric id is rendered as decimal text (see
	// NumberText). "" when missing.
	ID string
	// Status is the "status" field when it is a known state; without
	// "status" (older versions), it is completed when result is true and
	// failed when result is false. StatusUnknown otherwise.
	Status Status
	// Result is the "result" field (a bool, or "true"/"false"), nil when
	// absent or unreadable. A running message has none.
	Result *bool
	// Runtime is the "runtime" field of newer versions, "" when absent.
	Runtime string
	// ImageURLs are the string entries of "image_url", in order, as sent.
	ImageURLs []string
	// Images are the entries of ImageURLs that are s3://bucket/key URIs.
	Images []S3URI
	// OutputURL is "output_url", "" when absent.
	OutputURL string
	// Context is "context" as sent (any JSON), nil when absent.
	Context json.RawMessage
	// Account is context.account when context is an object holding a string
	// there; "" otherwise.
	Account string
	// JobID is context.job_id when it is a string or a number; "" otherwise.
	JobID string
	// Problems lists what was missing or unexpected.
	Problems []string
}

// ParseSNSMessage reads message, the Message of a Notification: a JSON object
// {id, result, image_url[], output_url, context} or, in newer versions,
// {runtime, id, status, ...}. It never fails: an unreadable message gives an
// SNSResult with only Problems set.
func ParseSNSMessage(message string) SNSResult {
	var r SNSResult
	note := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	m, ok := object([]byte(message))
	if !ok {
		note("message is not a JSON object")
		return r
	}

	if raw, ok := m["id"]; !ok {
		note("id is missing")
	} else if k := kind(raw); k != "string" && k != "number" {
		note("id is a %s", k)
	} else if id, ok := text(raw); !ok {
		note("id %s", describe(raw))
	} else if r.ID = id; r.ID == "" {
		note("id is empty")
	}

	if raw, ok := m["runtime"]; ok {
		if s, ok := str(raw); ok {
			r.Runtime = s
		} else if kind(raw) != "null" {
			note("runtime %s", describe(raw))
		}
	}

	if raw, ok := m["result"]; ok && kind(raw) != "null" {
		if b, ok := boolean(raw); ok {
			r.Result = &b
		} else {
			note("result is not a boolean")
		}
	}

	rawStatus, hasStatus := m["status"]
	hasStatus = hasStatus && kind(rawStatus) != "null"
	if hasStatus {
		s, _ := str(m["status"])
		switch st := Status(strings.ToLower(strings.TrimSpace(s))); st {
		case StatusRunning, StatusCompleted, StatusFailed:
			r.Status = st
		default:
			note("status is not running, completed or failed")
		}
	}
	if r.Status == StatusUnknown && r.Result != nil {
		r.Status = StatusFailed
		if *r.Result {
			r.Status = StatusCompleted
		}
	}
	if r.Status == StatusUnknown && !hasStatus {
		note("neither status nor result")
	}
	if r.Result != nil && (r.Status == StatusCompleted && !*r.Result || r.Status == StatusFailed && *r.Result) {
		note("status %s contradicts result %v", r.Status, *r.Result)
	}

	if raw, ok := m["image_url"]; ok {
		switch kind(raw) {
		case "array":
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				note("image_url is unreadable")
			}
			for i, e := range list {
				s, ok := str(e)
				if !ok {
					note("image_url[%d] %s", i, describe(e))
					continue
				}
				r.ImageURLs = append(r.ImageURLs, s)
				u, err := ParseS3URI(s)
				if err != nil {
					note("image_url[%d] is not an s3://bucket/key URI", i)
					continue
				}
				r.Images = append(r.Images, u)
			}
		case "string": // a single URL instead of a list
			s, ok := str(raw)
			if !ok {
				note("image_url %s", describe(raw))
				break
			}
			r.ImageURLs = []string{s}
			if u, err := ParseS3URI(s); err == nil {
				r.Images = []S3URI{u}
			} else {
				note("image_url is not an s3://bucket/key URI")
			}
			note("image_url is a string, not a list")
		case "null":
		default:
			note("image_url is a %s", kind(raw))
		}
	}
	if r.Status == StatusRunning && (r.Result != nil || len(r.ImageURLs) > 0) {
		note("running message carries a result or images")
	}

	if raw, ok := m["output_url"]; ok && kind(raw) != "null" {
		if s, ok := str(raw); ok {
			r.OutputURL = s
		} else {
			note("output_url %s", describe(raw))
		}
	}

	if raw, ok := m["context"]; ok {
		r.Context = append(json.RawMessage(nil), raw...)
		if ctx, ok := object(raw); ok {
			if a, ok := ctx["account"]; ok {
				if s, ok := str(a); ok {
					r.Account = s
				} else {
					note("context.account %s", describe(a))
				}
			}
			if j, ok := ctx["job_id"]; ok && kind(j) != "null" {
				if k := kind(j); k != "string" && k != "number" {
					note("context.job_id is a %s", k)
				} else if id, ok := text(j); ok {
					r.JobID = id
				} else {
					note("context.job_id %s", describe(j))
				}
			}
		}
	}
	return r
}

// ErrNotS3URI is returned by ParseS3URI.
var ErrNotS3URI = errors.New("taskresult: not an s3://bucket/key URI")

// S3URI is an object address s3://Bucket/Key.
type S3URI struct {
	Bucket string
	Key    string
}

// String returns "s3://" + Bucket + "/" + Key.
func (u S3URI) String() string { return "s3://" + u.Bucket + "/" + u.Key }

// ParseS3URI splits s3://bucket/key at the first '/' after the bucket. The
// key is taken verbatim (no percent-decoding: S3 keys may hold '%', '?', '#'
// and spaces). It fails with ErrNotS3URI when the scheme is not s3 (exactly,
// lower case), the bucket is empty, longer than 255 bytes or holds anything
// but letters, digits, '.', '-' and '_' (legacy bucket names included), or
// the key is empty.
func ParseS3URI(s string) (S3URI, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return S3URI{}, ErrNotS3URI
	}
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" || len(bucket) > 255 {
		return S3URI{}, ErrNotS3URI
	}
	for _, c := range bucket {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return S3URI{}, ErrNotS3URI
		}
	}
	return S3URI{Bucket: bucket, Key: key}, nil
}
