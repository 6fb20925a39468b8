package streams_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/streams"
)

func TestEmbeddedFilesLoad(t *testing.T) {
	t.Parallel()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	// The contract's streams and the services' own state must all be defined;
	// every definition stores on file.
	want := map[string]bool{"stream INGRESS": false, "stream QUOTA": false, "stream ARCHIVE": false, "stream JOBS": false, "stream QUOTA_TIMERS": false, "stream INGRESS_CLAIMS": false}
	for _, f := range files {
		id := "stream "
		if f.KV != nil {
			id = "kv " + f.KV.Bucket
		} else {
			id += f.Stream.Name
			cfg, _ := streams.StreamConfig(*f.Stream, 1)
			if cfg.Storage != jetstream.FileStorage {
				t.Errorf("%s: storage %v, want file", f.Name, cfg.Storage)
			}
		}
		want[id] = true
	}
	for id, seen := range want {
		if !seen {
			t.Errorf("missing %s", id)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, content string }{
		{"unknown key", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old, colour: red}\n"},
		{"storage missing", "stream: {name: A, subjects: [a], retention: limits, discard: old}\n"},
		{"both kinds", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old}\nkv: {bucket: B, storage: file}\n"},
		{"lossless with max_age", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: new, lossless: true, max_age: 1h}\n"},
		{"lossless discarding old", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old, lossless: true, max_bytes: 1024}\n"},
		{"bad ack policy", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old}\nconsumers: [{name: c, deliver_policy: all, ack_policy: none, max_deliver: 5}]\n"},
		{"unbounded deliveries", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old}\nconsumers: [{name: c, deliver_policy: all, ack_policy: explicit, max_deliver: -1}]\n"},
		{"deliveries unset", "stream: {name: A, subjects: [a], storage: file, retention: limits, discard: old}\nconsumers: [{name: c, deliver_policy: all, ack_policy: explicit}]\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := streams.Load(fstest.MapFS{"a.yaml": {Data: []byte(tc.content)}}); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestApplyIsIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	n := natstest.Start(t)
	_, js := natstest.Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if err := streams.ApplyEmbedded(ctx, js, 1); err != nil {
			t.Fatal(err)
		}
	}
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := streams.Verify(ctx, js, files, 1); err != nil || len(r.Drift) > 0 {
		t.Fatalf("verify after apply: %v, drift %v", err, r.Drift)
	}
	// A changed definition updates the running stream.
	changed := fstest.MapFS{"x.yaml": {Data: []byte("stream: {name: INGRESS, subjects: ['sd.callback.>', 'sd.sns.>'], storage: file, retention: limits, discard: old, max_age: 1h, duplicate_window: 1m}\n")}}
	files, err = streams.Load(changed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Apply(ctx, js, files, streams.ModeUpdate, 1); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("max_age = %v after update, want 1h", got)
	}
	c, err := js.Consumer(ctx, contract.StreamIngress, "archiver")
	if err != nil {
		t.Fatal(err)
	}
	if c.CachedInfo().Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatal("archiver consumer is not explicit-ack")
	}
}

// TestConcurrentApplyOnFreshServer: processes starting together all succeed.
func TestConcurrentApplyOnFreshServer(t *testing.T) {
	t.Parallel()
	n := natstest.Start(t)
	errs := make(chan error, 4)
	for range 4 {
		_, js := natstest.Connect(t, n.URL())
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs <- streams.ApplyEmbedded(ctx, js, 1)
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
