// Package streams holds the JetStream definitions of sdevents as data: the YAML
// files beside this file, embedded into the binary and used unchanged by the
// deployment manifests.
//
// Load parses them strictly, the pure functions StreamConfig, ConsumerConfig and
// KeyValueConfig map them to nats.go types, WithLimits applies the retention
// limits the configuration sets, and Apply brings them to the server under
// an ownership Mode: update (create or update, so that a changed file
// updates the running stream at the next start), create (create what is
// missing, report what differs) or off (verify only). Verify reports what is
// missing or differs without changing anything.
package streams

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

//go:embed *.yaml
var files embed.FS

// Files returns the embedded definition files.
func Files() fs.FS { return files }

// File is one definition file: a stream with its consumers, or a KV bucket.
type File struct {
	Name      string     `yaml:"-"`
	Stream    *Stream    `yaml:"stream"`
	Consumers []Consumer `yaml:"consumers"`
	KV        *KeyValue  `yaml:"kv"`
}

// Stream is the subset of a stream configuration the project sets.
type Stream struct {
	Name              string   `yaml:"name"`
	Description       string   `yaml:"description"`
	Subjects          []string `yaml:"subjects"`
	Storage           string   `yaml:"storage"`
	Retention         string   `yaml:"retention"`
	Discard           string   `yaml:"discard"`
	MaxAge            Duration `yaml:"max_age"`
	MaxBytes          int64    `yaml:"max_bytes"`
	MaxMsgSize        int32    `yaml:"max_msg_size"`
	MaxMsgsPerSubject int64    `yaml:"max_msgs_per_subject"`
	DuplicateWindow   Duration `yaml:"duplicate_window"`
	AllowDirect       bool     `yaml:"allow_direct"`
	AllowMsgSchedules bool     `yaml:"allow_msg_schedules"`
	AllowMsgTTL       bool     `yaml:"allow_msg_ttl"`
	// Lossless marks a stream that must never lose a message (the QUOTA
	// ledger): no limit may remove one — no max_age, no per-subject or
	// message-count limit, no per-message TTL, limits retention, and a
	// max_bytes only with discard new, which refuses writes when full
	// instead of removing old messages. Load, WithLimits and Apply (on the
	// live stream) enforce it. It is not a JetStream setting.
	Lossless bool `yaml:"lossless"`
}

// Consumer is a durable pull consumer of the file's stream.
type Consumer struct {
	Name           string   `yaml:"name"`
	Description    string   `yaml:"description"`
	FilterSubjects []string `yaml:"filter_subjects"`
	DeliverPolicy  string   `yaml:"deliver_policy"`
	AckPolicy      string   `yaml:"ack_policy"`
	AckWait        Duration `yaml:"ack_wait"`
	MaxDeliver     int      `yaml:"max_deliver"` // finite: a message given up on is recorded on sd.dead.<name>
	MaxAckPending  int      `yaml:"max_ack_pending"`
}

// KeyValue is a KV bucket.
type KeyValue struct {
	Bucket      string   `yaml:"bucket"`
	Description string   `yaml:"description"`
	Storage     string   `yaml:"storage"`
	TTL         Duration `yaml:"ttl"`
	History     uint8    `yaml:"history"`
	MaxBytes    int64    `yaml:"max_bytes"`
}

// Duration is a Go duration string in YAML.
type Duration time.Duration

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Load parses every *.yaml file of fsys, sorted by name. Unknown keys, a file
// with neither or both of stream and kv, and duplicate names are errors.
func Load(fsys fs.FS) ([]File, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	sort.Strings(names)
	var out []File
	var errs []error
	seen := map[string]string{}
	for _, name := range names {
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("streams: %w", err)
		}
		var f File
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		f.Name = path.Base(name)
		if err := f.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		id := f.id()
		if other, dup := seen[id]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is also defined in %s", name, id, other))
		}
		seen[id] = name
		out = append(out, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	return out, nil
}

func (f File) id() string {
	if f.KV != nil {
		return "kv " + f.KV.Bucket
	}
	return "stream " + f.Stream.Name
}

func (f File) validate() error {
	if (f.Stream == nil) == (f.KV == nil) {
		return errors.New("want exactly one of stream or kv")
	}
	if f.KV != nil {
		if f.KV.Bucket == "" {
			return errors.New("kv.bucket must be set")
		}
		if len(f.Consumers) > 0 {
			return errors.New("a kv file has no consumers")
		}
		_, err := storage(f.KV.Storage)
		return err
	}
	if f.Stream.Name == "" || len(f.Stream.Subjects) == 0 {
		return errors.New("stream.name and stream.subjects must be set")
	}
	cfg, err := StreamConfig(*f.Stream, 1)
	if err != nil {
		return err
	}
	if f.Stream.Lossless {
		if lost := Lossy(cfg); len(lost) > 0 {
			return fmt.Errorf("stream %s is lossless, but %s", cfg.Name, strings.Join(lost, ", "))
		}
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		return fmt.Errorf("stream %s: duplicate_window %s exceeds max_age %s", cfg.Name, cfg.Duplicates, cfg.MaxAge)
	}
	for _, c := range f.Consumers {
		if _, err := ConsumerConfig(c); err != nil {
			return err
		}
	}
	return nil
}

func storage(s string) (jetstream.StorageType, error) {
	switch s {
	case "file":
		return jetstream.FileStorage, nil
	case "memory":
		return jetstream.MemoryStorage, nil
	}
	return 0, fmt.Errorf("storage %q: want file or memory (set it explicitly)", s)
}

// StreamConfig maps a definition to its nats.go configuration with the given
// number of replicas.
func StreamConfig(s Stream, replicas int) (jetstream.StreamConfig, error) {
	st, err := storage(s.Storage)
	if err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("stream %s: %w", s.Name, err)
	}
	var ret jetstream.RetentionPolicy
	switch s.Retention {
	case "limits":
		ret = jetstream.LimitsPolicy
	case "workqueue":
		ret = jetstream.WorkQueuePolicy
	case "interest":
		ret = jetstream.InterestPolicy
	default:
		return jetstream.StreamConfig{}, fmt.Errorf("stream %s: retention %q: want limits, workqueue or interest", s.Name, s.Retention)
	}
	var disc jetstream.DiscardPolicy
	switch s.Discard {
	case "old":
		disc = jetstream.DiscardOld
	case "new":
		disc = jetstream.DiscardNew
	default:
		return jetstream.StreamConfig{}, fmt.Errorf("stream %s: discard %q: want old or new", s.Name, s.Discard)
	}
	return jetstream.StreamConfig{
		Name:              s.Name,
		Description:       s.Description,
		Subjects:          s.Subjects,
		Storage:           st,
		Retention:         ret,
		Discard:           disc,
		MaxAge:            time.Duration(s.MaxAge),
		MaxBytes:          orUnlimited(s.MaxBytes),
		MaxMsgSize:        int32(orUnlimited(int64(s.MaxMsgSize))),
		MaxMsgsPerSubject: orUnlimited(s.MaxMsgsPerSubject),
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Duplicates:        time.Duration(s.DuplicateWindow),
		AllowDirect:       s.AllowDirect,
		AllowMsgSchedules: s.AllowMsgSchedules,
		AllowMsgTTL:       s.AllowMsgTTL,
		Replicas:          replicas,
	}, nil
}

func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// ConsumerConfig maps a consumer definition to its nats.go configuration.
// Every consumer has explicit acknowledgements and a finite max_deliver.
func ConsumerConfig(c Consumer) (jetstream.ConsumerConfig, error) {
	if c.Name == "" {
		return jetstream.ConsumerConfig{}, errors.New("consumer name must be set")
	}
	var dp jetstream.DeliverPolicy
	switch c.DeliverPolicy {
	case "all":
		dp = jetstream.DeliverAllPolicy
	case "new":
		dp = jetstream.DeliverNewPolicy
	default:
		return jetstream.ConsumerConfig{}, fmt.Errorf("consumer %s: deliver_policy %q: want all or new", c.Name, c.DeliverPolicy)
	}
	if c.AckPolicy != "explicit" {
		return jetstream.ConsumerConfig{}, fmt.Errorf("consumer %s: ack_policy %q: want explicit", c.Name, c.AckPolicy)
	}
	if c.MaxDeliver <= 0 {
		// A message is redelivered at most max_deliver times; its consumer
		// records it on sd.dead.<consumer> when it gives up (pkg/deadletter).
		return jetstream.ConsumerConfig{}, fmt.Errorf("consumer %s: max_deliver %d: want a finite number of deliveries (> 0)", c.Name, c.MaxDeliver)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       c.Name,
		Description:   c.Description,
		DeliverPolicy: dp,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Duration(c.AckWait),
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
	}
	if len(c.FilterSubjects) == 1 {
		cc.FilterSubject = c.FilterSubjects[0]
	} else {
		cc.FilterSubjects = c.FilterSubjects
	}
	return cc, nil
}

// KeyValueConfig maps a bucket definition to its nats.go configuration.
func KeyValueConfig(kv KeyValue, replicas int) (jetstream.KeyValueConfig, error) {
	st, err := storage(kv.Storage)
	if err != nil {
		return jetstream.KeyValueConfig{}, fmt.Errorf("kv %s: %w", kv.Bucket, err)
	}
	return jetstream.KeyValueConfig{
		Bucket:      kv.Bucket,
		Description: kv.Description,
		Storage:     st,
		TTL:         time.Duration(kv.TTL),
		History:     max(kv.History, 1),
		MaxBytes:    orUnlimited(kv.MaxBytes),
		Replicas:    replicas,
	}, nil
}
