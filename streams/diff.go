package streams

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// field is one setting compared between a definition and the server.
type field struct {
	name      string // the JetStream API name
	want, got string
}

// defaultDuplicates is the duplicate window nats-server gives a stream
// created without one: 2 minutes, or max_age when that is shorter.
func defaultDuplicates(maxAge time.Duration) time.Duration {
	const d = 2 * time.Minute
	if maxAge > 0 && maxAge < d {
		return maxAge
	}
	return d
}

// streamDiffs compares every field StreamConfig sets; want is as the
// definition maps it, got as the server reports it.
func streamDiffs(want, got jetstream.StreamConfig) []Diff {
	if want.Duplicates == 0 {
		want.Duplicates = defaultDuplicates(want.MaxAge)
	}
	return diffs(want.Name, "stream "+want.Name, []field{
		{"description", want.Description, got.Description},
		{"subjects", set(want.Subjects), set(got.Subjects)},
		{"storage", api(want.Storage), api(got.Storage)},
		{"retention", api(want.Retention), api(got.Retention)},
		{"discard", api(want.Discard), api(got.Discard)},
		{"max_age", age(want.MaxAge), age(got.MaxAge)},
		{"max_bytes", limit(want.MaxBytes), limit(got.MaxBytes)},
		{"max_msgs", limit(want.MaxMsgs), limit(got.MaxMsgs)},
		{"max_msg_size", limit(int64(want.MaxMsgSize)), limit(int64(got.MaxMsgSize))},
		{"max_msgs_per_subject", limit(want.MaxMsgsPerSubject), limit(got.MaxMsgsPerSubject)},
		{"max_consumers", limit(int64(want.MaxConsumers)), limit(int64(got.MaxConsumers))},
		{"duplicate_window", want.Duplicates.String(), got.Duplicates.String()},
		{"allow_direct", strconv.FormatBool(want.AllowDirect), strconv.FormatBool(got.AllowDirect)},
		{"allow_msg_schedules", strconv.FormatBool(want.AllowMsgSchedules), strconv.FormatBool(got.AllowMsgSchedules)},
		{"allow_msg_ttl", strconv.FormatBool(want.AllowMsgTTL), strconv.FormatBool(got.AllowMsgTTL)},
		{"num_replicas", strconv.Itoa(max(want.Replicas, 1)), strconv.Itoa(max(got.Replicas, 1))},
	})
}

// streamCompared clears the fields streamDiffs compares; what remains of a
// definition's configuration would be set but never compared (a test keeps
// it empty).
func streamCompared(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	cfg.Name, cfg.Description, cfg.Subjects = "", "", nil
	cfg.Storage, cfg.Retention, cfg.Discard = 0, 0, 0
	cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgs, cfg.MaxMsgSize = 0, 0, 0, 0
	cfg.MaxMsgsPerSubject, cfg.MaxConsumers, cfg.Duplicates = 0, 0, 0
	cfg.AllowDirect, cfg.AllowMsgSchedules, cfg.AllowMsgTTL, cfg.Replicas = false, false, false, 0
	return cfg
}

// consumerDiffs compares every field ConsumerConfig sets, with the server's
// defaults for the ones left zero.
func consumerDiffs(stream, object string, want, got jetstream.ConsumerConfig) []Diff {
	or := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	ackWait := func(d time.Duration) string {
		if d == 0 {
			d = 30 * time.Second
		}
		return d.String()
	}
	filters := func(c jetstream.ConsumerConfig) string {
		fs := slices.Clone(c.FilterSubjects)
		if c.FilterSubject != "" {
			fs = append(fs, c.FilterSubject)
		}
		return set(fs)
	}
	return diffs(stream, object, []field{
		{"description", want.Description, got.Description},
		{"deliver_policy", api(want.DeliverPolicy), api(got.DeliverPolicy)},
		{"ack_policy", api(want.AckPolicy), api(got.AckPolicy)},
		{"ack_wait", ackWait(want.AckWait), ackWait(got.AckWait)},
		{"max_deliver", limit(int64(or(want.MaxDeliver, -1))), limit(int64(or(got.MaxDeliver, -1)))},
		{"max_ack_pending", strconv.Itoa(or(want.MaxAckPending, 1000)), strconv.Itoa(or(got.MaxAckPending, 1000))},
		{"filter_subjects", filters(want), filters(got)},
	})
}

// consumerCompared clears the fields consumerDiffs compares.
func consumerCompared(cfg jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	cfg.Durable, cfg.Description, cfg.DeliverPolicy, cfg.AckPolicy = "", "", 0, 0
	cfg.AckWait, cfg.MaxDeliver, cfg.MaxAckPending = 0, 0, 0
	cfg.FilterSubject, cfg.FilterSubjects = "", nil
	return cfg
}

// kvDiffs compares the bucket settings KeyValueConfig sets with the live
// configuration of the bucket's stream, as nats.go maps them.
func kvDiffs(object string, want jetstream.KeyValueConfig, got jetstream.StreamConfig) []Diff {
	return diffs("KV_"+want.Bucket, object, []field{
		{"description", want.Description, got.Description},
		{"storage", api(want.Storage), api(got.Storage)},
		{"max_age", age(want.TTL), age(got.MaxAge)},
		{"max_msgs_per_subject", strconv.Itoa(int(max(want.History, 1))), limit(got.MaxMsgsPerSubject)},
		{"max_bytes", limit(want.MaxBytes), limit(got.MaxBytes)},
		{"num_replicas", strconv.Itoa(max(want.Replicas, 1)), strconv.Itoa(max(got.Replicas, 1))},
	})
}

// kvCompared clears the fields kvDiffs compares.
func kvCompared(cfg jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	cfg.Bucket, cfg.Description, cfg.Storage, cfg.TTL = "", "", 0, 0
	cfg.History, cfg.MaxBytes, cfg.Replicas = 0, 0, 0
	return cfg
}

func diffs(stream, object string, fields []field) []Diff {
	var out []Diff
	for _, f := range fields {
		if f.want != f.got {
			out = append(out, Diff{Stream: stream, Object: object, Field: f.name, Want: f.want, Got: f.got})
		}
	}
	return out
}

// api writes an enum as the JetStream API spells it ("file", "limits").
func api(v json.Marshaler) string {
	b, err := v.MarshalJSON()
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.Trim(string(b), `"`)
}

func set(ss []string) string {
	s := slices.Clone(ss)
	slices.Sort(s)
	return "[" + strings.Join(s, " ") + "]"
}

func limit(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

func age(d time.Duration) string {
	if d <= 0 {
		return "unlimited"
	}
	return d.String()
}
