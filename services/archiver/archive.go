package archiver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/fetch"
)

// Metadata values are capped so that the whole set fits S3's 2 KiB.
const (
	maxMetaSource = 1024
	maxMetaModel  = 256
)

// retryLater is a transient failure of an image while its source may still
// be valid: the image is worth another try later (through the retry
// schedule, see timers.go).
type retryLater struct{ err error }

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// storeError is a failure of the sink (not of the source).
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// Outcome labels of the fetch duration histogram.
const (
	fetchStored = "stored"
	fetchFailed = "failed"
	fetchRetry  = "retry"
)

// attempt copies img and returns its outcome: stored, or failed when the
// failure is permanent or deadline has passed. A transient failure before
// deadline is a *retryLater; any other error (ctx's, NATS) means the image
// was not tried.
func (s *Service) attempt(ctx context.Context, t task, img image, attempts int, deadline time.Time) (outcome, error) {
	start := time.Now()
	obj, fetched, err := s.copyImage(ctx, img)
	observe := func(label string) {
		if fetched {
			s.metrics.fetch.WithLabelValues(label).Observe(time.Since(start).Seconds())
		}
	}
	if err == nil {
		observe(fetchStored)
		if fetched {
			s.metrics.bytes.Add(float64(obj.Size))
		}
		return s.storedOutcome(t, img, obj)
	}
	if ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}
	permanent := isPermanent(err)
	if !permanent && s.now().Before(deadline) {
		observe(fetchRetry)
		return outcome{}, &retryLater{err: err}
	}
	observe(fetchFailed)
	return s.failedOutcome(t, img, err, permanent, attempts)
}

// isPermanent reports failures that no retry cures.
func isPermanent(err error) bool {
	return fetch.IsPermanent(err) || errors.Is(err, blob.ErrInvalidKey) || errors.Is(err, blob.ErrInvalidMetadata)
}

// reason is the generic reason of a failure recorded in a failed event:
// the class of the failure, never an address, a path or a server's message
// (those go to the log).
func reason(err error) string {
	var se *storeError
	switch {
	case errors.Is(err, errNoSource):
		return "no source for this URL scheme"
	case errors.Is(err, blob.ErrInvalidKey):
		return "invalid object key"
	case errors.Is(err, blob.ErrInvalidMetadata):
		return "invalid object metadata"
	case errors.As(err, &se):
		return "store failed"
	}
	return fetch.Reason(err)
}

// copyImage makes sure img is in the store and returns the stored object,
// and whether it fetched the source. An object already there with a
// SHA-256 (a complete earlier copy) is not fetched or uploaded again.
// Otherwise the bytes stream from the source through fetch.InspectImage
// (digest, sniffed type, dimensions) into the store; a body that is not an
// image fails before anything is stored. Failures of the sink are
// *storeError.
func (s *Service) copyImage(ctx context.Context, img image) (blob.Object, bool, error) {
	obj, err := s.store.Stat(ctx, img.Key)
	switch {
	case err == nil && obj.SHA256 != "":
		return obj, false, nil
	case err != nil && !errors.Is(err, blob.ErrNotFound):
		return blob.Object{}, false, &storeError{fmt.Errorf("archiver: stat %s: %w", img.Key, err)}
	}
	body, err := s.sources.open(ctx, img.URL)
	if err != nil {
		return blob.Object{}, true, err
	}
	defer body.Close()
	src := &sourceReader{r: body}
	ir := fetch.InspectImage(src)
	ct, err := ir.Sniff()
	if err != nil {
		return blob.Object{}, true, err
	}
	info := ir.Info()
	meta := blob.PutMeta{ContentType: ct, Metadata: metadata(img, cmp.Or(info.Width, img.Width), cmp.Or(info.Height, img.Height))}
	obj, err = s.store.Put(ctx, img.Key, ir, body.Size, meta)
	if src.err != nil {
		// The source failed: classify by its error, which a sink's
		// client may not wrap.
		return blob.Object{}, true, src.err
	}
	if err != nil {
		if isPermanent(err) {
			return blob.Object{}, true, fmt.Errorf("archiver: store %s: %w", img.Key, err)
		}
		return blob.Object{}, true, &storeError{fmt.Errorf("archiver: store %s: %w", img.Key, err)}
	}
	if sum := ir.Info().SHA256; ir.Done() && sum != obj.SHA256 {
		return blob.Object{}, true, &storeError{fmt.Errorf("archiver: store %s: %w: read %s, stored %s", img.Key, blob.ErrMismatch, sum, obj.SHA256)}
	}
	return obj, true, nil
}

// sourceReader remembers the first error of the source other than io.EOF.
type sourceReader struct {
	r   io.Reader
	err error
}

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// metadata is the user metadata stored with an image: the source URL
// (without query), the model and the dimensions, as printable ASCII.
func metadata(img image, width, height int) map[string]string {
	m := map[string]string{blob.MetaSourceURL: cut(printable(img.Source), maxMetaSource)}
	if img.Model != "" {
		m[blob.MetaModel] = cut(printable(img.Model), maxMetaModel)
	}
	if width > 0 && height > 0 {
		m[blob.MetaWidth], m[blob.MetaHeight] = strconv.Itoa(width), strconv.Itoa(height)
	}
	return m
}

// printable percent-encodes the bytes of s outside printable ASCII, which
// object metadata cannot hold; a URL (already ASCII) stays as it is.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Service) storedOutcome(t task, img image, obj blob.Object) (outcome, error) {
	w, _ := strconv.Atoi(obj.Metadata[blob.MetaWidth])
	h, _ := strconv.Atoi(obj.Metadata[blob.MetaHeight])
	at := s.now().UTC()
	return newOutcome(img.Key, contract.SubjectArchiveStored, contract.TypeArchiveStored, t.Account, at, contract.ArchiveStored{
		Account: t.Account, TaskID: t.TaskID, ImageID: img.ID, SourceURL: img.Source,
		Key: img.Key, URI: s.store.URI(img.Key), Size: obj.Size, SHA256: obj.SHA256,
		ContentType: obj.ContentType, Width: w, Height: h, ArchivedAt: at,
	})
}

// failedOutcome records the failure err of img with its generic reason;
// the outcome keeps err itself for the log.
func (s *Service) failedOutcome(t task, img image, err error, permanent bool, attempts int) (outcome, error) {
	at := s.now().UTC()
	msg := reason(err)
	if !permanent {
		msg = "gave up when the source expired: " + msg
	}
	o, oerr := newOutcome(img.Key, contract.SubjectArchiveFailed, contract.TypeArchiveFailed, t.Account, at, contract.ArchiveFailed{
		Account: t.Account, TaskID: t.TaskID, ImageID: img.ID, SourceURL: img.Source, Key: img.Key,
		Error: msg, Permanent: permanent, Attempts: attempts, FailedAt: at,
	})
	o.cause = err
	return o, oerr
}

// newOutcome is the event data with what publishing it needs: its subject
// (the account as a subject token), id and time.
func newOutcome(key, subject, typ, account string, at time.Time, data any) (outcome, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return outcome{}, fmt.Errorf("archiver: encode event: %w", err)
	}
	return outcome{
		ID: EventID(key), Subject: subject + callback.SubjectToken(account), Account: account,
		Type: typ, At: at, Data: raw,
	}, nil
}
