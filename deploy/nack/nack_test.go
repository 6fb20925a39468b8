package nack_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/sdevents/sdevents/deploy/nack"
	"github.com/sdevents/sdevents/streams"
)

// enum parses a NACK enum value into its nats.go type through the JetStream
// API spelling, the way the NACK controller reads it.
func enum[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(`"`+s+`"`), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

func dur(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decode reads a generated spec back from its YAML, refusing unknown fields.
func decode(t *testing.T, r nack.Resource, spec any) {
	t.Helper()
	b, err := yaml.Marshal(r.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, spec); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTrip reads every generated resource back into the nats.go
// configuration NACK would apply and compares it, field by field, with the
// one the services apply (streams.StreamConfig and friends). A field the
// services set that the generator drops, or writes differently, fails here.
func TestRoundTrip(t *testing.T) {
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(f.Name, func(t *testing.T) {
			res, err := nack.Resources(f, 3)
			if err != nil {
				t.Fatal(err)
			}
			if f.KV != nil {
				want, _ := streams.KeyValueConfig(*f.KV, 3)
				var s nack.KeyValueSpec
				decode(t, res[0], &s)
				got := jetstream.KeyValueConfig{
					Bucket: s.Bucket, Description: s.Description, Storage: enum[jetstream.StorageType](t, s.Storage),
					Replicas: s.Replicas, History: s.History, TTL: dur(t, s.TTL), MaxBytes: s.MaxBytes, MaxValueSize: s.MaxValueSize,
				}
				if !equal(got, want) {
					t.Errorf("KeyValue reads back as\n%+v\nwant\n%+v", got, want)
				}
				return
			}
			want, _ := streams.StreamConfig(*f.Stream, 3)
			var s nack.StreamSpec
			decode(t, res[0], &s)
			if res[0].Kind != "Stream" || !s.PreventDelete {
				t.Errorf("%s %+v: want a Stream with preventDelete", res[0].Kind, s)
			}
			got := jetstream.StreamConfig{
				Name: s.Name, Description: s.Description, Subjects: s.Subjects,
				Storage: enum[jetstream.StorageType](t, s.Storage), Retention: enum[jetstream.RetentionPolicy](t, s.Retention),
				Discard: enum[jetstream.DiscardPolicy](t, s.Discard), Replicas: s.Replicas, MaxAge: dur(t, s.MaxAge),
				MaxBytes: s.MaxBytes, MaxMsgs: s.MaxMsgs, MaxMsgSize: s.MaxMsgSize, MaxMsgsPerSubject: s.MaxMsgsPerSubject,
				MaxConsumers: s.MaxConsumers, Duplicates: dur(t, s.DuplicateWindow), AllowDirect: s.AllowDirect,
				AllowMsgSchedules: s.AllowMsgSchedules, AllowMsgTTL: s.AllowMsgTTL,
			}
			if !equal(got, want) {
				t.Errorf("Stream reads back as\n%+v\nwant\n%+v", got, want)
			}
			if len(res) != 1+len(f.Consumers) {
				t.Fatalf("%d resources for a stream with %d consumers", len(res), len(f.Consumers))
			}
			for i, c := range f.Consumers {
				want, _ := streams.ConsumerConfig(c)
				var s nack.ConsumerSpec
				decode(t, res[1+i], &s)
				if s.StreamName != f.Stream.Name || s.AckPolicy == "" || !s.PreventDelete {
					t.Errorf("consumer %+v: want streamName %s, an explicit ackPolicy, preventDelete", s, f.Stream.Name)
				}
				got := jetstream.ConsumerConfig{
					Durable: s.DurableName, Description: s.Description,
					DeliverPolicy: enum[jetstream.DeliverPolicy](t, s.DeliverPolicy), AckPolicy: enum[jetstream.AckPolicy](t, s.AckPolicy),
					AckWait: dur(t, s.AckWait), MaxDeliver: s.MaxDeliver, MaxAckPending: s.MaxAckPending,
					ReplayPolicy: enum[jetstream.ReplayPolicy](t, s.ReplayPolicy), FilterSubject: s.FilterSubject, FilterSubjects: s.FilterSubjects,
				}
				if !equal(got, want) {
					t.Errorf("Consumer reads back as\n%+v\nwant\n%+v", got, want)
				}
			}
		})
	}
}

// equal compares two configurations by their JetStream API JSON, which
// covers every field.
func equal(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestUnmappedFieldIsAnError: a configuration field the generator cannot
// express stops it, rather than being dropped.
func TestUnmappedFieldIsAnError(t *testing.T) {
	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, AllowRollup: true, Sealed: true}
	if _, err := nack.Stream(cfg); err == nil || !strings.Contains(err.Error(), "Sealed, AllowRollup") {
		t.Errorf("err = %v, want one naming Sealed and AllowRollup", err)
	}
	if _, err := nack.Consumer("S", jetstream.ConsumerConfig{Durable: "c", HeadersOnly: true}); err == nil {
		t.Error("HeadersOnly: want an error")
	}
	if _, err := nack.KeyValue(jetstream.KeyValueConfig{Bucket: "B", Compression: true}); err == nil {
		t.Error("Compression: want an error")
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "", 30 * time.Second: "30s", 2 * time.Minute: "2m", 10 * time.Minute: "10m", 90 * time.Minute: "1h30m",
		720 * time.Hour: "720h", 1500 * time.Millisecond: "1.5s",
	} {
		if got := nack.Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		if got, _ := time.ParseDuration(nack.Duration(d)); d != 0 && got != d {
			t.Errorf("%q parses as %v, want %v", nack.Duration(d), got, d)
		}
	}
}
