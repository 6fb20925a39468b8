package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Mode says what Apply may change on the server: who owns the streams,
// consumers and buckets.
type Mode string

const (
	// ModeUpdate creates what is missing and updates what exists to its
	// definition, undoing an operator's edit (Report.Reset lists it).
	ModeUpdate Mode = "update"
	// ModeCreate creates what is missing and never changes what exists:
	// differences from the definitions are reported as Drift.
	ModeCreate Mode = "create"
	// ModeOff changes nothing: everything must exist (else ErrMissing),
	// and differences are reported as Drift.
	ModeOff Mode = "off"
)

// ParseMode returns the Mode called s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeUpdate, ModeCreate, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("streams: mode %q: want update, create or off", s)
}

var (
	// ErrMissing: a stream, consumer or bucket does not exist and the mode
	// does not create it. Nothing can run on it: create it (NACK, or a
	// process with mode create or update), and stay not ready until then.
	ErrMissing = errors.New("missing")
	// ErrLossy: a lossless stream (the QUOTA ledger) has a live setting that
	// can remove messages. The ledger would lose events: remove the setting;
	// nothing should run on the stream until then.
	ErrLossy = errors.New("would lose messages")
)

// Diff is one field in which a live stream, consumer or bucket differs
// from its definition.
type Diff struct {
	// Stream is the stream the object belongs to; a bucket's is KV_<bucket>.
	Stream string
	// Object names it: "stream JOBS", "consumer INGRESS/archiver", "kv ARCHIVE_KEYS".
	Object string
	// Field is the JetStream API name of the setting (max_age,
	// max_ack_pending, ...); Want is the definition's value, Got the live one.
	Field, Want, Got string
}

func (d Diff) String() string {
	return fmt.Sprintf("%s: %s is %s, defined as %s", d.Object, d.Field, d.Got, d.Want)
}

// Report is what Apply or Verify found.
type Report struct {
	// Checked lists every stream looked at (buckets as KV_<bucket>), so
	// that a caller can tell "no drift" from "not checked".
	Checked []string
	// Created names the objects created ("stream JOBS", ...).
	Created []string
	// Reset lists the differences ModeUpdate found and overwrote.
	Reset []Diff
	// Drift lists the differences left as they are (ModeCreate, ModeOff).
	Drift []Diff
	// Missing names the objects that do not exist (ModeOff).
	Missing []string
	// Lossy lists the settings of live lossless streams that can remove
	// messages, as "stream QUOTA: max_age is 48h0m0s".
	Lossy []string
}

// Apply brings every stream, consumer and bucket of files to the server
// under mode, with the given replica count, and reports what it did and
// found. A stream's consumers follow its mode: under ModeCreate an edited
// max_ack_pending stays as the operator left it.
//
// Apply looks each object up first and creates it when it is missing, so
// that several processes starting together on a fresh cluster do not race
// through update-then-create; a concurrent creation of the same definition
// succeeds for both. It returns an error wrapping ErrMissing (ModeOff, with
// every missing object named), ErrLossy (ModeCreate and ModeOff: a live
// lossless stream can lose messages) or the server's error (a change
// JetStream cannot apply, such as storage, fails under ModeUpdate). The
// Report is filled as far as Apply got.
func Apply(ctx context.Context, js jetstream.JetStream, files []File, mode Mode, replicas int) (Report, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return Report{}, err
	}
	a := applier{js: js, mode: mode, replicas: replicas}
	for _, f := range files {
		var err error
		if f.KV != nil {
			err = a.kv(ctx, *f.KV)
		} else {
			err = a.stream(ctx, f)
		}
		if err != nil {
			return a.r, err
		}
	}
	var errs []error
	if len(a.r.Missing) > 0 {
		errs = append(errs, fmt.Errorf("streams: %w: %s", ErrMissing, strings.Join(a.r.Missing, ", ")))
	}
	if len(a.r.Lossy) > 0 {
		errs = append(errs, fmt.Errorf("streams: lossless stream %w: %s", ErrLossy, strings.Join(a.r.Lossy, "; ")))
	}
	return a.r, errors.Join(errs...)
}

// Verify reports what is missing or differs from files (with the given
// replica count) without changing anything: Apply with ModeOff.
func Verify(ctx context.Context, js jetstream.JetStream, files []File, replicas int) (Report, error) {
	return Apply(ctx, js, files, ModeOff, replicas)
}

// ApplyEmbedded applies the embedded files, with their own limits, under
// ModeUpdate.
func ApplyEmbedded(ctx context.Context, js jetstream.JetStream, replicas int) error {
	files, err := Load(Files())
	if err != nil {
		return err
	}
	_, err = Apply(ctx, js, files, ModeUpdate, replicas)
	return err
}

type applier struct {
	js       jetstream.JetStream
	mode     Mode
	replicas int
	r        Report
}

// differs records diffs as Reset (ModeUpdate) or Drift, and reports whether
// there were any.
func (a *applier) differs(diffs []Diff) bool {
	if a.mode == ModeUpdate {
		a.r.Reset = append(a.r.Reset, diffs...)
	} else {
		a.r.Drift = append(a.r.Drift, diffs...)
	}
	return len(diffs) > 0
}

func (a *applier) stream(ctx context.Context, f File) error {
	want, err := StreamConfig(*f.Stream, a.replicas)
	if err != nil {
		return err
	}
	object := "stream " + want.Name
	a.r.Checked = append(a.r.Checked, want.Name)
	s, err := a.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && a.mode == ModeOff:
		a.r.Missing = append(a.r.Missing, object)
		for _, c := range f.Consumers {
			a.r.Missing = append(a.r.Missing, "consumer "+want.Name+"/"+c.Name)
		}
		return nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err = a.js.CreateStream(ctx, want); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Created meanwhile by another process, with another configuration.
			s, err = a.js.Stream(ctx, want.Name)
			if err == nil {
				err = a.existing(ctx, s, f, want)
			}
		} else if err == nil {
			a.r.Created = append(a.r.Created, object)
		}
	case err == nil:
		err = a.existing(ctx, s, f, want)
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", object, err)
	}
	for _, c := range f.Consumers {
		if err := a.consumer(ctx, want.Name, c); err != nil {
			return err
		}
	}
	return nil
}

// existing compares the live stream s with want and updates it under
// ModeUpdate; a live lossless stream that can lose messages is recorded.
func (a *applier) existing(ctx context.Context, s jetstream.Stream, f File, want jetstream.StreamConfig) error {
	got := s.CachedInfo().Config
	if a.differs(streamDiffs(want, got)) && a.mode == ModeUpdate {
		var err error
		if s, err = a.js.UpdateStream(ctx, want); err != nil {
			return err
		}
		got = s.CachedInfo().Config
	}
	if f.Stream.Lossless {
		for _, l := range Lossy(got) {
			a.r.Lossy = append(a.r.Lossy, "stream "+want.Name+": "+l)
		}
	}
	return nil
}

func (a *applier) consumer(ctx context.Context, stream string, c Consumer) error {
	want, err := ConsumerConfig(c)
	if err != nil {
		return err
	}
	object := "consumer " + stream + "/" + want.Durable
	got, err := a.js.Consumer(ctx, stream, want.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound) && a.mode == ModeOff:
		a.r.Missing = append(a.r.Missing, object)
		return nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if _, err = a.js.CreateConsumer(ctx, stream, want); errors.Is(err, jetstream.ErrConsumerExists) {
			got, err = a.js.Consumer(ctx, stream, want.Durable)
			if err == nil {
				err = a.existingConsumer(ctx, stream, object, got, want)
			}
		} else if err == nil {
			a.r.Created = append(a.r.Created, object)
		}
	case err == nil:
		err = a.existingConsumer(ctx, stream, object, got, want)
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", object, err)
	}
	return nil
}

func (a *applier) existingConsumer(ctx context.Context, stream, object string, c jetstream.Consumer, want jetstream.ConsumerConfig) error {
	diffs := consumerDiffs(stream, object, want, c.CachedInfo().Config)
	if a.differs(diffs) && a.mode == ModeUpdate {
		_, err := a.js.UpdateConsumer(ctx, stream, want)
		return err
	}
	return nil
}

func (a *applier) kv(ctx context.Context, kv KeyValue) error {
	want, err := KeyValueConfig(kv, a.replicas)
	if err != nil {
		return err
	}
	object, stream := "kv "+want.Bucket, "KV_"+want.Bucket
	a.r.Checked = append(a.r.Checked, stream)
	s, err := a.js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && a.mode == ModeOff:
		a.r.Missing = append(a.r.Missing, object)
		return nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err = a.js.CreateKeyValue(ctx, want); errors.Is(err, jetstream.ErrBucketExists) {
			s, err = a.js.Stream(ctx, stream)
			if err == nil {
				err = a.existingKV(ctx, object, s, want)
			}
		} else if err == nil {
			a.r.Created = append(a.r.Created, object)
		}
	case err == nil:
		err = a.existingKV(ctx, object, s, want)
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", object, err)
	}
	return nil
}

func (a *applier) existingKV(ctx context.Context, object string, s jetstream.Stream, want jetstream.KeyValueConfig) error {
	if a.differs(kvDiffs(object, want, s.CachedInfo().Config)) && a.mode == ModeUpdate {
		_, err := a.js.UpdateKeyValue(ctx, want)
		return err
	}
	return nil
}
