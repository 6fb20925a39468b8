// Package config loads the sdevents configuration: a YAML file, overridden key by
// key by SDEVENTS_<UPPER_SNAKE_PATH> environment variables, with secrets readable
// from files (*_file keys).
//
// Load reports every problem at once (errors.Join): unknown keys in the file or
// in the environment, unreadable secret files and invalid values, each naming
// its key. The environment is passed in as a lookup function so that tests never
// touch the process environment.
package config

import (
	"time"
)

// Config is the whole configuration. Its YAML keys are the contract's; the
// zero value is not usable: start from Default.
type Config struct {
	HTTP       HTTP       `yaml:"http"`
	NATS       NATS       `yaml:"nats"`
	Ingress    Ingress    `yaml:"ingress"`
	Callbacks  []Callback `yaml:"callbacks"`
	SNS        []SNS      `yaml:"sns"`
	Quota      Quota      `yaml:"quota"`
	Admin      Admin      `yaml:"admin"`
	Console    Console    `yaml:"console"`
	Archive    Archive    `yaml:"archive"`
	Aggregator Aggregator `yaml:"aggregator"`
	Streams    Streams    `yaml:"streams"`
	Log        Log        `yaml:"log"`
	Shutdown   Duration   `yaml:"shutdown_timeout"`
}

// HTTP configures the one HTTP listener of a process: ingress, admin,
// console, metrics; and the limits of what its clients may hold
// (docs/security.md, "HTTP listeners and request budgets").
type HTTP struct {
	Addr string `yaml:"addr"`
	// MaxBody is the largest accepted request body in bytes (default 1 MiB).
	MaxBody int64 `yaml:"max_body"`
	// MaxConnections caps the open connections; 0 derives it from the
	// descriptor limit (a quarter of RLIMIT_NOFILE, at most 4096).
	MaxConnections int `yaml:"max_connections"`
	// MaxHeaderBytes bounds the request line and headers (431 beyond).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout bounds the wait for a complete request header.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a keep-alive connection without a new request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// BodyBudget is the request-body bytes all requests may hold at once.
	BodyBudget int64 `yaml:"body_budget"`
	// BodyBudgetWait is how long a request waits for budget before 503.
	BodyBudgetWait Duration `yaml:"body_budget_wait"`
}

// NATS says where JetStream is and how the process authenticates to it.
// The client keys (user and password, creds_file, nkey_file, tls) apply to
// an external NATS (URL); the embedded server of `sdevents run` makes its
// own users and credentials (docs/operations.md, "NATS users and TLS").
type NATS struct {
	// URL of an external NATS; empty starts the embedded server.
	URL string `yaml:"url"`
	// User and Password (or PasswordFile) authenticate to URL with a name
	// and a password.
	User         string `yaml:"user"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// CredsFile is a NATS credentials file (user JWT and nkey seed) for URL.
	CredsFile string `yaml:"creds_file"`
	// NkeyFile holds a user nkey seed ("SU..."): the process signs the
	// server's challenge with it.
	NkeyFile string   `yaml:"nkey_file"`
	TLS      NATSTLS  `yaml:"tls"`
	Embedded Embedded `yaml:"embedded"`
	// Replicas of every stream (1 on a single node, 3 on a cluster).
	Replicas int `yaml:"replicas"`
}

// NATSTLS is the TLS of the connection to an external NATS: the CA that
// signs the server's certificate (the system roots when empty), and a client
// certificate and key when the server asks for one.
type NATSTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Embedded configures the in-process nats-server of `sdevents run`.
type Embedded struct {
	Addr     string `yaml:"addr"`
	StoreDir string `yaml:"store_dir"`
	// Sync is the file-store fsync policy: "always" (fsync every write before
	// the ack) or "interval" (fsync every SyncInterval; acknowledged writes
	// survive a process crash but not a power loss).
	Sync         string   `yaml:"sync"`
	SyncInterval Duration `yaml:"sync_interval"`
	// MaxPayload is the server's max_payload in bytes; it must exceed
	// http.max_body plus headers.
	MaxPayload int32 `yaml:"max_payload"`
	// MonitorAddr serves the NATS monitoring endpoints when set.
	MonitorAddr string `yaml:"monitor_addr"`
	// MaxConnections caps the server's client connections; 0 derives it
	// from the descriptor limit (an eighth of RLIMIT_NOFILE, at most 1024).
	MaxConnections int `yaml:"max_connections"`
	// MaxStore bounds JetStream's file storage in bytes; 0 takes the free
	// space of store_dir's file system at start (nats-server's rule).
	MaxStore int64 `yaml:"max_store"`
	// MaxMemory bounds JetStream's memory storage in bytes.
	MaxMemory int64 `yaml:"max_memory"`
}

// Ingress tunes the callback and SNS endpoints.
type Ingress struct {
	// SyncSkew is how far a synchronous callback's timestamp may be from now.
	SyncSkew Duration `yaml:"sync_skew"`
	// AsyncMaxAge is how old an asynchronous callback may be (it covers the
	// platform's retry schedule).
	AsyncMaxAge Duration `yaml:"async_max_age"`
	// SyncDeadline bounds the whole handling of a synchronous callback.
	SyncDeadline Duration `yaml:"sync_deadline"`
	// PublishTimeout bounds one JetStream publish.
	PublishTimeout Duration `yaml:"publish_timeout"`
	// FailOpen answers success when the quota service cannot decide in time.
	FailOpen bool `yaml:"fail_open"`
	// DedupHorizon is how long a stored asynchronous callback or SNS message
	// is remembered for de-duplication (the platform retries for 4.5 h).
	DedupHorizon Duration `yaml:"dedup_horizon"`
	// SNSMaxAge is how old an SNS message's Timestamp may be (SNS retries an
	// HTTP/S delivery for at most an hour); older ones are refused. With the
	// 5 minutes a Timestamp may be ahead, it must fit in DedupHorizon, so
	// that every message accepted again is one still remembered.
	SNSMaxAge Duration `yaml:"sns_max_age"`
}

// Callback is one source speaking the 002 seed's protocol.
type Callback struct {
	Name string `yaml:"name"`
	Keys []Key  `yaml:"keys"`
}

// Key is one access-key pair. SK may be given inline or read from SKFile.
type Key struct {
	AK     string `yaml:"ak"`
	SK     Secret `yaml:"sk"`
	SKFile string `yaml:"sk_file"`
}

// SNS is one source speaking SNS HTTP(S) delivery.
type SNS struct {
	Name        string   `yaml:"name"`
	TopicARNs   []string `yaml:"topic_arns"`
	AutoConfirm bool     `yaml:"auto_confirm"`
	CertHosts   []string `yaml:"cert_hosts"`
	CAFile      string   `yaml:"ca_file"`
}

// Quota configures the credit ledger.
type Quota struct {
	Price          Price    `yaml:"price"`
	ReservationTTL Duration `yaml:"reservation_ttl"`
	// DecidedRetention is how long a replica remembers how an invokeId
	// finished (committed, released, expired, denied), so that a repeat
	// gets the same answer: at least 10 minutes and 3 × ingress.sync_skew,
	// the longest a replay of a request can arrive after it.
	DecidedRetention Duration `yaml:"decided_retention"`
	// SnapshotEvery is the number of events of an account between two
	// snapshot events: a replica loading the account reads at most about
	// that many events after the latest snapshot.
	SnapshotEvery int `yaml:"snapshot_every"`
	// MaxAccounts bounds the accounts a replica keeps in memory; beyond it,
	// the least recently used idle ones are dropped (and loaded again from
	// the stream when used).
	MaxAccounts int `yaml:"max_accounts"`
	// AccountIdle drops an account from a replica's memory once it has not
	// been used for this long.
	AccountIdle Duration `yaml:"account_idle"`
}

// Price of a generation.
type Price struct {
	PerImage int64 `yaml:"per_image"`
}

// Admin configures the operator API.
type Admin struct {
	Token     Secret `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Console configures the operators' web console (on when admin.token is
// set).
type Console struct {
	// LiveMaxClients bounds the live views (server-sent event streams) open
	// at once on one console replica; one more is answered 503 with
	// Retry-After.
	LiveMaxClients int `yaml:"live_max_clients"`
	// LiveWriteTimeout bounds the writing of one event to a live view: a
	// viewer that does not read it within this time is disconnected.
	LiveWriteTimeout Duration `yaml:"live_write_timeout"`
}

// Archive configures the archiver's sources and sink.
type Archive struct {
	Dir        string   `yaml:"dir"`
	AllowHosts []string `yaml:"allow_hosts"`
	SourceS3   S3       `yaml:"source_s3"`
	S3         S3       `yaml:"s3"`
	// Workers is the number of images archived in parallel per replica.
	Workers int `yaml:"workers"`
	// MaxBytes caps one image.
	MaxBytes int64 `yaml:"max_bytes"`
	// URLLifetime is how long after its event a callback image URL may still
	// be valid; transient failures are retried until then.
	URLLifetime Duration `yaml:"url_lifetime"`
	// FetchTimeout bounds one fetch as a whole, from the request to the last
	// byte stored.
	FetchTimeout Duration `yaml:"fetch_timeout"`
	// MinRate is the lowest rate, in bytes per second, at which a source
	// must send an image, averaged over MinRateWindow of waiting for it;
	// 0 means no minimum.
	MinRate       int64    `yaml:"min_rate"`
	MinRateWindow Duration `yaml:"min_rate_window"`
	// MaxImagesPerTask caps the distinct images archived from one task
	// result; the rest are recorded as dropped.
	MaxImagesPerTask int `yaml:"max_images_per_task"`
}

// S3 is an S3-compatible endpoint.
type S3 struct {
	Endpoint      string `yaml:"endpoint"`
	Bucket        string `yaml:"bucket"`
	AccessKey     string `yaml:"access_key"`
	SecretKey     Secret `yaml:"secret_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
	Secure        bool   `yaml:"secure"`
	Region        string `yaml:"region"`
}

// Aggregator configures job grouping.
type Aggregator struct {
	// Key is "account" (default) or "invoke_id".
	Key         string   `yaml:"key"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxTasks closes a job when it holds this many tasks.
	MaxTasks int `yaml:"max_tasks"`
	// MaxDuration closes a job this long after it opened.
	MaxDuration Duration `yaml:"max_duration"`
	// MaxImagesPerTask keeps the first this many images of a task in its
	// job's record; the others are counted, not listed. The archiver's
	// archive.max_images_per_task, where set, should be the same.
	MaxImagesPerTask int `yaml:"max_images_per_task"`
	// MaxRecordBytes bounds a job record's size (without archive URIs): a
	// task that would not fit closes the job first.
	MaxRecordBytes int `yaml:"max_record_bytes"`
}

// Streams says who owns the JetStream streams, consumers and buckets, and
// the retention of the streams downstream teams read (docs/operations.md,
// "Stream ownership" and "Retention").
type Streams struct {
	// Apply is what a process does with the definitions at start:
	// "update" (create or update: an operator's edit is undone), "create"
	// (create what is missing, never change what exists, report drift) or
	// "off" (change nothing; everything must exist). Empty takes the
	// command's default: update for `sdevents run`, create for the
	// single-service commands.
	Apply string `yaml:"apply"`
	// Jobs and Archive are the limits of JOBS and ARCHIVE; zero is
	// unlimited.
	Jobs    StreamLimits `yaml:"jobs"`
	Archive StreamLimits `yaml:"archive"`
	// Quota is the size cap of the QUOTA ledger, which keeps every event:
	// max_age must stay 0, and a max_bytes refuses new events when reached
	// (discard new) instead of removing old ones.
	Quota StreamLimits `yaml:"quota"`
}

// StreamLimits are the retention limits of one stream; zero is unlimited.
type StreamLimits struct {
	// MaxAge removes messages older than this.
	MaxAge Duration `yaml:"max_age"`
	// MaxBytes bounds the stream's size in bytes.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Stream ownership modes (Streams.Apply).
const (
	StreamsUpdate = "update"
	StreamsCreate = "create"
	StreamsOff    = "off"
)

// Log configures the process log.
type Log struct {
	// Level is a zerolog level name.
	Level string `yaml:"level"`
	// Format is "json" (default) or "console".
	Format string `yaml:"format"`
}

// Default returns the configuration used for every key the file and the
// environment leave out.
func Default() Config {
	return Config{
		HTTP: HTTP{
			Addr:              "127.0.0.1:8080",
			MaxBody:           1 << 20,
			MaxHeaderBytes:    16 << 10,
			ReadHeaderTimeout: Duration(5 * time.Second),
			IdleTimeout:       Duration(30 * time.Second),
			BodyBudget:        64 << 20,
			BodyBudgetWait:    Duration(time.Second),
		},
		NATS: NATS{
			Embedded: Embedded{
				Addr:         "127.0.0.1:4222",
				StoreDir:     "data/nats",
				Sync:         "interval",
				SyncInterval: Duration(2 * time.Minute),
				MaxPayload:   8 << 20,
				MaxMemory:    256 << 20,
			},
			Replicas: 1,
		},
		Ingress: Ingress{
			SyncSkew:       Duration(5 * time.Minute),
			AsyncMaxAge:    Duration(6 * time.Hour),
			SyncDeadline:   Duration(3 * time.Second),
			PublishTimeout: Duration(2 * time.Second),
			DedupHorizon:   Duration(7 * time.Hour),
			SNSMaxAge:      Duration(2 * time.Hour),
		},
		Quota: Quota{
			Price:            Price{PerImage: 1},
			ReservationTTL:   Duration(time.Hour),
			DecidedRetention: Duration(30 * time.Minute),
			SnapshotEvery:    1000,
			MaxAccounts:      100_000,
			AccountIdle:      Duration(15 * time.Minute),
		},
		Console: Console{LiveMaxClients: 64, LiveWriteTimeout: Duration(10 * time.Second)},
		Archive: Archive{
			Dir:              "data/archive",
			S3:               S3{Bucket: "sd-archive"},
			SourceS3:         S3{Secure: true},
			Workers:          8,
			MaxBytes:         64 << 20,
			URLLifetime:      Duration(5 * time.Hour),
			FetchTimeout:     Duration(2 * time.Minute),
			MinRate:          32 << 10,
			MinRateWindow:    Duration(10 * time.Second),
			MaxImagesPerTask: 64,
		},
		Aggregator: Aggregator{
			Key: "account", IdleTimeout: Duration(10 * time.Minute),
			MaxTasks: 256, MaxDuration: Duration(time.Hour), MaxImagesPerTask: 64, MaxRecordBytes: 1 << 20,
		},
		Streams: Streams{
			Jobs:    StreamLimits{MaxAge: Duration(30 * 24 * time.Hour)},
			Archive: StreamLimits{MaxAge: Duration(30 * 24 * time.Hour)},
		},
		Log:      Log{Level: "info", Format: "json"},
		Shutdown: Duration(20 * time.Second),
	}
}
