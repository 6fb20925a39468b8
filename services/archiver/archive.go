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
	"github.com/sdevents/sdevents/pkg/fetch"
)

// Metadata values are capped so that the whole set fits S3's 2 KiB.
const (
	maxMetaSource = 1024
	maxMetaModel  = 256
)

// archive settles one image: it returns nil once the image has its one
// outcome in ARCHIVE (stored, or failed for good), and an error when the
// message should be delivered again (a transient failure while the source
// may still be valid, or NATS unavailable).
func (s *Service) archive(ctx context.Context, t task, img image, attempts int) error {
	id := EventID(img.Key)
	if ok, err := s.ledger.settled(ctx, id); ok || err != nil {
		return err
	}
	o, err := s.attempt(ctx, t, img, attempts, s.deadline(t))
	if err != nil {
		return err
	}
	return s.ledger.record(ctx, o)
}

// attempt copies img and returns its outcome: stored, or failed when the
// failure is permanent or deadline has passed. Otherwise (a transient
// failure before deadline) it returns the error, to be tried again.
func (s *Service) attempt(ctx context.Context, t task, img image, attempts int, deadline time.Time) (outcome, error) {
	obj, err := s.copyImage(ctx, img)
	if err == nil {
		s.metrics.bytes.Add(float64(obj.Size))
		return s.storedOutcome(t, img, obj)
	}
	if ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}
	permanent := isPermanent(err)
	if !permanent && s.now().Before(deadline) {
		return outcome{}, err
	}
	return s.failedOutcome(t, img, err, permanent, attempts)
}

// isPermanent reports failures that no retry cures.
func isPermanent(err error) bool {
	return fetch.IsPermanent(err) || errors.Is(err, blob.ErrInvalidKey) || errors.Is(err, blob.ErrInvalidMetadata)
}

// copyImage makes sure img is in the store and returns the stored object. An
// object already there with a SHA-256 (a complete earlier copy) is not
// fetched or uploaded again. Otherwise the bytes stream from the source
// through fetch.InspectImage (digest, sniffed type, dimensions) into the
// store; a body that is not an image fails before anything is stored.
func (s *Service) copyImage(ctx context.Context, img image) (blob.Object, error) {
	obj, err := s.store.Stat(ctx, img.Key)
	switch {
	case err == nil && obj.SHA256 != "":
		return obj, nil
	case err != nil && !errors.Is(err, blob.ErrNotFound):
		return blob.Object{}, fmt.Errorf("archiver: stat %s: %w", img.Key, err)
	}
	body, err := s.sources.open(ctx, img.URL)
	if err != nil {
		return blob.Object{}, err
	}
	defer body.Close()
	src := &sourceReader{r: body}
	ir := fetch.InspectImage(src)
	ct, err := ir.Sniff()
	if err != nil {
		return blob.Object{}, err
	}
	info := ir.Info()
	meta := blob.PutMeta{ContentType: ct, Metadata: metadata(img, cmp.Or(info.Width, img.Width), cmp.Or(info.Height, img.Height))}
	obj, err = s.store.Put(ctx, img.Key, ir, body.Size, meta)
	if src.err != nil {
		// The source failed: classify by its error, which a sink's
		// client may not wrap.
		return blob.Object{}, src.err
	}
	if err != nil {
		return blob.Object{}, fmt.Errorf("archiver: store %s: %w", img.Key, err)
	}
	if sum := ir.Info().SHA256; ir.Done() && sum != obj.SHA256 {
		return blob.Object{}, fmt.Errorf("archiver: store %s: %w: read %s, stored %s", img.Key, blob.ErrMismatch, sum, obj.SHA256)
	}
	return obj, nil
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
	return newOutcome(img.Key, SubjectStored, eventTypeStored, t.Account, at, StoredEvent{
		Account: t.Account, TaskID: t.TaskID, ImageID: img.ID, SourceURL: img.Source,
		Key: img.Key, URI: s.store.URI(img.Key), Size: obj.Size, SHA256: obj.SHA256,
		ContentType: obj.ContentType, Width: w, Height: h, ArchivedAt: at,
	})
}

func (s *Service) failedOutcome(t task, img image, err error, permanent bool, attempts int) (outcome, error) {
	at := s.now().UTC()
	msg := err.Error()
	if !permanent {
		msg = "gave up when the source expired: " + msg
	}
	return newOutcome(img.Key, SubjectFailed, eventTypeFailed, t.Account, at, FailedEvent{
		Account: t.Account, TaskID: t.TaskID, ImageID: img.ID, SourceURL: img.Source, Key: img.Key,
		Error: msg, Permanent: permanent, Attempts: attempts, FailedAt: at,
	})
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
