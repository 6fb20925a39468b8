package streams_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/streams"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func embedded(t *testing.T) []streams.File {
	t.Helper()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestComparisonCoversEveryField: every field the definitions set is one
// that Apply compares with the live configuration, so that no edit of a
// set field goes unnoticed (and ModeUpdate, which updates only what
// differs, never misses a changed definition).
func TestComparisonCoversEveryField(t *testing.T) {
	t.Parallel()
	for _, f := range embedded(t) {
		if f.KV != nil {
			cfg, _ := streams.KeyValueConfig(*f.KV, 3)
			if rest := streams.KVCompared(cfg); !reflect.ValueOf(rest).IsZero() {
				t.Errorf("%s: fields set but not compared: %+v", f.Name, rest)
			}
			continue
		}
		cfg, _ := streams.StreamConfig(*f.Stream, 3)
		if rest := streams.StreamCompared(cfg); !reflect.ValueOf(rest).IsZero() {
			t.Errorf("%s: fields set but not compared: %+v", f.Name, rest)
		}
		for _, c := range f.Consumers {
			cc, _ := streams.ConsumerConfig(c)
			if rest := streams.ConsumerCompared(cc); !reflect.ValueOf(rest).IsZero() {
				t.Errorf("%s/%s: fields set but not compared: %+v", f.Name, c.Name, rest)
			}
		}
	}
}

// TestAppliedDefinitionsShowNoDrift: what the server reports for every
// applied definition compares equal to it (the comparison knows the
// server's defaults), on a single node and at R3 on a cluster.
func TestAppliedDefinitionsShowNoDrift(t *testing.T) {
	t.Parallel()
	files := embedded(t)
	for _, tc := range []struct {
		name     string
		url      func(t *testing.T) string
		replicas int
	}{
		{"single", func(t *testing.T) string { return natstest.Start(t).URL() }, 1},
		{"cluster", func(t *testing.T) string { return natstest.StartCluster(t).URLs() }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, js := natstest.Connect(t, tc.url(t))
			natstest.ApplyStreams(t, js, tc.replicas)
			r, err := streams.Verify(ctxT(t), js, files, tc.replicas)
			if err != nil || len(r.Drift) > 0 || len(r.Missing) > 0 {
				t.Fatalf("verify: %v; drift %v; missing %v", err, r.Drift, r.Missing)
			}
			if len(r.Checked) != len(files) {
				t.Fatalf("checked %v, want all %d definitions", r.Checked, len(files))
			}
		})
	}
}

// edit changes JOBS's max_age and the INGRESS archiver consumer's
// max_ack_pending as an operator would with `nats stream edit` and
// `nats consumer edit`.
func edit(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := ctxT(t)
	s, err := js.Stream(ctx, contract.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge = 48 * time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, contract.StreamIngress, "archiver")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxAckPending = 64
	if _, err := js.UpdateConsumer(ctx, contract.StreamIngress, cc); err != nil {
		t.Fatal(err)
	}
}

func live(t *testing.T, js jetstream.JetStream) (maxAge time.Duration, maxAckPending int) {
	t.Helper()
	ctx := ctxT(t)
	s, err := js.Stream(ctx, contract.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, contract.StreamIngress, "archiver")
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.MaxAge, c.CachedInfo().Config.MaxAckPending
}

func fields(ds []streams.Diff) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Object+" "+d.Field+" "+d.Got+" -> "+d.Want)
	}
	slices.Sort(out)
	return out
}

// TestOperatorEditUnderEachMode: an operator's edit of a stream and of a
// consumer is undone (and reported as reset) under update, survives (and
// is reported as drift) under create and off.
func TestOperatorEditUnderEachMode(t *testing.T) {
	t.Parallel()
	wantDiffs := []string{
		"consumer INGRESS/archiver max_ack_pending 64 -> 512",
		"stream JOBS max_age 48h0m0s -> 720h0m0s",
	}
	for _, tc := range []struct {
		mode          streams.Mode
		maxAge        time.Duration
		maxAckPending int
	}{
		{streams.ModeUpdate, 720 * time.Hour, 512},
		{streams.ModeCreate, 48 * time.Hour, 64},
		{streams.ModeOff, 48 * time.Hour, 64},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			_, js := natstest.Connect(t, natstest.Start(t).URL())
			natstest.ApplyStreams(t, js, 1)
			edit(t, js)
			r, err := streams.Apply(ctxT(t), js, embedded(t), tc.mode, 1)
			if err != nil {
				t.Fatal(err)
			}
			reported, other := r.Drift, r.Reset
			if tc.mode == streams.ModeUpdate {
				reported, other = r.Reset, r.Drift
			}
			if got := fields(reported); !slices.Equal(got, wantDiffs) || len(other) > 0 || len(r.Created) > 0 {
				t.Errorf("reported %v (other %v, created %v), want %v", got, other, r.Created, wantDiffs)
			}
			if age, pending := live(t, js); age != tc.maxAge || pending != tc.maxAckPending {
				t.Errorf("live max_age %s, max_ack_pending %d; want %s, %d", age, pending, tc.maxAge, tc.maxAckPending)
			}
		})
	}
}

// TestCreateCreatesOnlyWhatIsMissing: under create, a deleted consumer and
// a deleted bucket come back, while an edited stream stays edited.
func TestCreateCreatesOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).URL())
	natstest.ApplyStreams(t, js, 1)
	edit(t, js)
	ctx := ctxT(t)
	if err := js.DeleteConsumer(ctx, contract.StreamIngress, "aggregator"); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, "ARCHIVE_KEYS"); err != nil {
		t.Fatal(err)
	}
	r, err := streams.Apply(ctx, js, embedded(t), streams.ModeCreate, 1)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(r.Created)
	if want := []string{"consumer INGRESS/aggregator", "kv ARCHIVE_KEYS"}; !slices.Equal(r.Created, want) {
		t.Errorf("created %v, want %v", r.Created, want)
	}
	if age, _ := live(t, js); age != 48*time.Hour {
		t.Errorf("JOBS max_age %s: the operator's edit was changed", age)
	}
}

// TestOffNeedsEverything: under off nothing is created, and a missing
// stream, consumer or bucket is an error naming each of them.
func TestOffNeedsEverything(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).URL())
	ctx := ctxT(t)
	_, err := streams.Apply(ctx, js, embedded(t), streams.ModeOff, 1)
	if !errors.Is(err, streams.ErrMissing) {
		t.Fatalf("err = %v, want ErrMissing", err)
	}
	for _, want := range []string{"stream INGRESS", "consumer INGRESS/archiver", "stream QUOTA", "kv ARCHIVE_KEYS", "consumer QUOTA_TIMERS/quota-expiry"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if names := js.StreamNames(ctx); names.Err() != nil || len(collect(names.Name())) > 0 {
		t.Errorf("off created streams (%v)", names.Err())
	}

	natstest.ApplyStreams(t, js, 1)
	if err := js.DeleteConsumer(ctx, contract.StreamIngress, "archiver"); err != nil {
		t.Fatal(err)
	}
	_, err = streams.Verify(ctx, js, embedded(t), 1)
	if !errors.Is(err, streams.ErrMissing) || !strings.Contains(err.Error(), "consumer INGRESS/archiver") {
		t.Fatalf("err = %v, want ErrMissing naming the archiver consumer", err)
	}
}

func collect(c <-chan string) []string {
	var out []string
	for s := range c {
		out = append(out, s)
	}
	return out
}

// TestLossyLedgerIsRefused: a QUOTA that an operator gave an age limit
// would lose ledger events: create and off refuse it (ErrLossy); update
// removes the limit.
func TestLossyLedgerIsRefused(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).URL())
	natstest.ApplyStreams(t, js, 1)
	ctx := ctxT(t)
	s, err := js.Stream(ctx, contract.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge = 48 * time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []streams.Mode{streams.ModeOff, streams.ModeCreate} {
		_, err := streams.Apply(ctx, js, embedded(t), mode, 1)
		if !errors.Is(err, streams.ErrLossy) || !strings.Contains(err.Error(), "stream QUOTA: max_age is 48h0m0s") {
			t.Errorf("%s: err = %v, want ErrLossy naming QUOTA's max_age", mode, err)
		}
	}
	if _, err := streams.Apply(ctx, js, embedded(t), streams.ModeUpdate, 1); err != nil {
		t.Fatal(err)
	}
	if s, err = js.Stream(ctx, contract.StreamQuota); err != nil || s.CachedInfo().Config.MaxAge != 0 {
		t.Fatalf("QUOTA after update: %v, max_age %v", err, s.CachedInfo().Config.MaxAge)
	}
}

// TestUpdateFromDiscardOldLedger: a QUOTA created by an earlier definition
// (discard old) is updated in place to discard new.
func TestUpdateFromDiscardOldLedger(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).URL())
	ctx := ctxT(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: contract.StreamQuota, Subjects: []string{"sd.quota.>"},
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	r, err := streams.Apply(ctx, js, embedded(t), streams.ModeUpdate, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fields(r.Reset), "stream QUOTA discard old -> new") {
		t.Errorf("reset %v, want QUOTA's discard", fields(r.Reset))
	}
	s, err := js.Stream(ctx, contract.StreamQuota)
	if err != nil || s.CachedInfo().Config.Discard != jetstream.DiscardNew {
		t.Fatalf("QUOTA discard after update: %v %v", err, s.CachedInfo().Config.Discard)
	}
}

// TestLimitsReachTheStreams: the configured limits of JOBS, ARCHIVE and
// QUOTA are what Apply creates.
func TestLimitsReachTheStreams(t *testing.T) {
	t.Parallel()
	files, err := streams.WithLimits(embedded(t), map[string]streams.Limits{
		contract.StreamJobs:    {MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 30},
		contract.StreamArchive: {MaxAge: 90 * 24 * time.Hour},
		contract.StreamQuota:   {MaxBytes: 10 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, natstest.Start(t).URL())
	ctx := ctxT(t)
	if _, err := streams.Apply(ctx, js, files, streams.ModeCreate, 1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]streams.Limits{
		contract.StreamJobs:    {MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 30},
		contract.StreamArchive: {MaxAge: 90 * 24 * time.Hour, MaxBytes: -1},
		contract.StreamQuota:   {MaxBytes: 10 << 30},
	} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if got := (streams.Limits{MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes}); got != want {
			t.Errorf("%s: limits %+v, want %+v", name, got, want)
		}
	}
	// The definitions passed in are unchanged.
	if e := embedded(t); e[indexOf(e, contract.StreamJobs)].Stream.MaxAge != streams.Duration(720*time.Hour) {
		t.Error("WithLimits changed its input")
	}
}

func indexOf(files []streams.File, stream string) int {
	return slices.IndexFunc(files, func(f streams.File) bool { return f.Stream != nil && f.Stream.Name == stream })
}

// TestLimitsRejected: a limit that would lose ledger events, or that
// JetStream would refuse, is an error naming the stream.
func TestLimitsRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		limits map[string]streams.Limits
		want   string
	}{
		{"quota max_age", map[string]streams.Limits{contract.StreamQuota: {MaxAge: 365 * 24 * time.Hour}}, "stream QUOTA is lossless, but max_age is 8760h0m0s"},
		{"jobs shorter than its duplicate window", map[string]streams.Limits{contract.StreamJobs: {MaxAge: time.Hour}}, "duplicate_window 24h0m0s exceeds max_age 1h0m0s"},
		{"negative", map[string]streams.Limits{contract.StreamArchive: {MaxBytes: -1}}, "stream ARCHIVE: must not be negative"},
		{"unknown stream", map[string]streams.Limits{"NOPE": {}}, "stream NOPE: no such stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := streams.WithLimits(embedded(t), tc.limits); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
