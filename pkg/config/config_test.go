package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/config"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(filepath.Join("..", "..", "sdevents.example.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:8080" || cfg.NATS.Embedded.StoreDir != "data/nats" {
		t.Fatalf("unexpected values: %+v", cfg)
	}
	if len(cfg.Callbacks) != 1 || cfg.Callbacks[0].Keys[0].SK.Reveal() != "SK-example" {
		t.Fatalf("callbacks: %+v", cfg.Callbacks)
	}
	if cfg.Quota.ReservationTTL.D() != time.Hour {
		t.Fatalf("ttl = %v", cfg.Quota.ReservationTTL.D())
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	base := `
callbacks:
  - name: default
    keys:
      - ak: a
        sk: s
`
	skFile := writeFile(t, "sk", "from-file\n")
	natsPassword := writeFile(t, "nats-password", "pw-from-file\n")
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		wantErr []string // substrings, all must appear
		check   func(t *testing.T, c config.Config)
	}{
		{name: "defaults", yaml: base, check: func(t *testing.T, c config.Config) {
			if c.HTTP.MaxBody != 1<<20 || c.Ingress.SyncDeadline.D() != 3*time.Second {
				t.Fatalf("defaults not applied: %+v", c)
			}
		}},
		{name: "unknown key named", yaml: base + "htpp:\n  addr: x\n", wantErr: []string{"htpp"}},
		{name: "unknown nested key named", yaml: "http:\n  adr: 1\n", wantErr: []string{"adr"}},
		{name: "env overrides nested key", yaml: base, env: map[string]string{
			"SDEVENTS_NATS_EMBEDDED_STORE_DIR": "/var/lib/x",
			"SDEVENTS_QUOTA_RESERVATION_TTL":   "90s",
			"SDEVENTS_CALLBACKS_0_KEYS_0_SK":   "env-sk",
			"SDEVENTS_ARCHIVE_ALLOW_HOSTS":     "a.example, b.example:8080",
			"SDEVENTS_INGRESS_FAIL_OPEN":       "true",
			"SDEVENTS_CONFIG":                  "ignored",
		}, check: func(t *testing.T, c config.Config) {
			if c.NATS.Embedded.StoreDir != "/var/lib/x" || c.Quota.ReservationTTL.D() != 90*time.Second {
				t.Fatalf("env not applied: %+v", c)
			}
			if c.Callbacks[0].Keys[0].SK.Reveal() != "env-sk" {
				t.Fatal("sk not overridden")
			}
			if fmt.Sprint(c.Archive.AllowHosts) != "[a.example b.example:8080]" || !c.Ingress.FailOpen {
				t.Fatalf("lists/bools: %v %v", c.Archive.AllowHosts, c.Ingress.FailOpen)
			}
		}},
		{name: "unknown env key", yaml: base, env: map[string]string{"SDEVENTS_HTTP_ADR": "x"}, wantErr: []string{"SDEVENTS_HTTP_ADR: unknown key"}},
		{name: "env index out of range", yaml: base, env: map[string]string{"SDEVENTS_CALLBACKS_1_KEYS_0_SK": "x"}, wantErr: []string{"SDEVENTS_CALLBACKS_1_KEYS_0_SK"}},
		{name: "bad env value", yaml: base, env: map[string]string{"SDEVENTS_QUOTA_RESERVATION_TTL": "soon"}, wantErr: []string{"quota.reservation_ttl"}},
		{name: "secret from file", yaml: strings.Replace(base, "sk: s", "sk_file: "+skFile, 1), check: func(t *testing.T, c config.Config) {
			if c.Callbacks[0].Keys[0].SK.Reveal() != "from-file" {
				t.Fatalf("sk_file not read")
			}
		}},
		{name: "secret file missing", yaml: strings.Replace(base, "sk: s", "sk_file: /nonexistent/sk", 1), wantErr: []string{"callbacks[0].keys[0].sk_file"}},
		{name: "all problems at once", yaml: `
http: {addr: nowhere}
callbacks:
  - name: Bad_Name
    keys: []
quota: {price: {per_image: 0}}
console: {live_max_clients: 0, live_write_timeout: 0s}
aggregator: {key: job}
`, wantErr: []string{"http.addr", "callbacks[0].name", "callbacks[0].keys", "quota.price.per_image", "console.live_max_clients", "console.live_write_timeout", "aggregator.key"}},
		{name: "quota memory and history bounds", yaml: base + "quota: {decided_retention: 5m, snapshot_every: 0, max_accounts: 0, account_idle: 0s}\n",
			wantErr: []string{"quota.decided_retention", "quota.snapshot_every", "quota.max_accounts", "quota.account_idle"}},
		{name: "retention shorter than three sync skews", yaml: base + "ingress: {sync_skew: 11m}\n",
			wantErr: []string{"quota.decided_retention: must be at least 10m and 3 × ingress.sync_skew (33m0s)"}},
		{name: "source name over 64 characters", yaml: strings.Replace(base, "name: default", "name: "+strings.Repeat("s", 65), 1) +
			"sns:\n  - name: " + strings.Repeat("e", 65) + "\n    topic_arns: [\"arn:aws:sns:us-east-1:123456789012:t\"]\n",
			wantErr: []string{"callbacks[0].name", "sns[0].name"}},
		{name: "duplicate source", yaml: base + "  - name: default\n    keys: [{ak: b, sk: c}]\n", wantErr: []string{`"default" is used twice`}},
		{name: "bad topic arn", yaml: "sns:\n  - name: eks\n    topic_arns: [nope]\n", wantErr: []string{"sns[0].topic_arns[0]"}},
		{name: "sns max age beyond the horizon", yaml: base + "ingress: {dedup_horizon: 7h, sns_max_age: 6h56m}\n", wantErr: []string{"ingress.sns_max_age", "want at most 6h55m0s"}},
		{name: "sns max age not positive", yaml: base + "ingress: {sns_max_age: 0s}\n", wantErr: []string{"ingress.sns_max_age: must be positive"}},
		{name: "sns max age at the horizon", yaml: base + "ingress: {dedup_horizon: 3h, sns_max_age: 2h55m}\n", check: func(t *testing.T, c config.Config) {
			if c.Ingress.SNSMaxAge.D() != 175*time.Minute {
				t.Fatalf("sns_max_age = %s", c.Ingress.SNSMaxAge.D())
			}
		}},
		{name: "archive limits", yaml: base + "archive: {fetch_timeout: 0s, min_rate: -1, max_images_per_task: 0}\n",
			wantErr: []string{"archive.fetch_timeout", "archive.min_rate", "archive.max_images_per_task"}},
		{name: "archive limits from env", yaml: base, env: map[string]string{"SDEVENTS_ARCHIVE_MAX_IMAGES_PER_TASK": "8", "SDEVENTS_ARCHIVE_FETCH_TIMEOUT": "30s"},
			check: func(t *testing.T, c config.Config) {
				if c.Archive.MaxImagesPerTask != 8 || c.Archive.FetchTimeout.D() != 30*time.Second || c.Archive.MinRate != 32<<10 {
					t.Fatalf("archive limits: %+v", c.Archive)
				}
			}},
		{name: "half a static key pair", yaml: base + "archive: {s3: {endpoint: 'm:9000', access_key: a}, source_s3: {secret_key: s}}\n",
			wantErr: []string{"archive.s3: set both access_key and secret_key", "archive.source_s3: set both"}},
		{name: "no static keys: the credential chain", yaml: base + "archive: {s3: {endpoint: 'm:9000'}, source_s3: {endpoint: 's:9000'}}\n", check: func(t *testing.T, c config.Config) {
			if c.Archive.S3.AccessKey != "" || c.Archive.SourceS3.SecretKey.Reveal() != "" {
				t.Fatalf("keys %+v", c.Archive)
			}
		}},
		{name: "nats user and TLS from env", yaml: base, env: map[string]string{
			"SDEVENTS_NATS_URL": "tls://nats.example:4222", "SDEVENTS_NATS_USER": "ingress", "SDEVENTS_NATS_PASSWORD_FILE": natsPassword,
			"SDEVENTS_NATS_TLS_CA_FILE": "/ca.pem", "SDEVENTS_NATS_TLS_CERT_FILE": "/c.pem", "SDEVENTS_NATS_TLS_KEY_FILE": "/k.pem",
		}, check: func(t *testing.T, c config.Config) {
			if c.NATS.User != "ingress" || c.NATS.Password.Reveal() != "pw-from-file" ||
				c.NATS.TLS != (config.NATSTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}) {
				t.Fatalf("nats client keys: %+v", c.NATS)
			}
		}},
		{name: "nats nkey", yaml: base + "nats: {url: 'nats://n:4222', nkey_file: /seed.nk}\n", check: func(t *testing.T, c config.Config) {
			if c.NATS.NkeyFile != "/seed.nk" {
				t.Fatalf("nkey_file %q", c.NATS.NkeyFile)
			}
		}},
		{name: "nats password without user, two ways, half a certificate", yaml: base +
			"nats: {url: 'nats://n:4222', password: p, creds_file: /c.creds, tls: {cert_file: /c.pem}}\n",
			wantErr: []string{"nats.user: must be set with nats.password", "nats.creds_file: set one of nats.user, nats.creds_file and nats.nkey_file",
				"nats.tls: set both cert_file and key_file"}},
		{name: "nats user without password", yaml: base + "nats: {url: 'nats://n:4222', user: u}\n",
			wantErr: []string{"nats.password: must be set with nats.user"}},
		{name: "nats password twice", yaml: base + "nats: {url: 'nats://n:4222', user: u, password: p, password_file: " + natsPassword + "}\n",
			wantErr: []string{"nats.password: both the value and nats.password_file are set"}},
		{name: "nats client keys without url", yaml: base + "nats: {user: u, password: p, nkey_file: /n, tls: {ca_file: /ca.pem}}\n",
			wantErr: []string{"nats.user: applies to nats.url only", "nats.password: applies to nats.url only",
				"nats.nkey_file: applies to nats.url only", "nats.tls: applies to nats.url only"}},
		{name: "payload too small for body", yaml: base + "http: {max_body: 10485760}\n", wantErr: []string{"nats.embedded.max_payload"}},
		{name: "limits", yaml: base + "http: {max_connections: 16, max_header_bytes: 8192, idle_timeout: 20s}\nnats: {embedded: {max_store: 1073741824, max_connections: 8}}\n", check: func(t *testing.T, c config.Config) {
			if c.HTTP.MaxConnections != 16 || c.HTTP.MaxHeaderBytes != 8192 || c.HTTP.IdleTimeout.D() != 20*time.Second ||
				c.HTTP.BodyBudget != 64<<20 || c.NATS.Embedded.MaxStore != 1<<30 || c.NATS.Embedded.MaxConnections != 8 ||
				c.NATS.Embedded.MaxMemory != 256<<20 {
				t.Fatalf("limits: %+v %+v", c.HTTP, c.NATS.Embedded)
			}
		}},
		{name: "bad limits", yaml: base + "http: {max_connections: -1, max_header_bytes: 100, idle_timeout: 0s, body_budget: 1024}\nnats: {embedded: {max_store: -1, max_connections: -2, max_memory: 10}}\n",
			wantErr: []string{"http.max_connections", "http.max_header_bytes", "http.idle_timeout", "http.body_budget:",
				"nats.embedded.max_store", "nats.embedded.max_connections", "nats.embedded.max_memory"}},
		{name: "streams defaults", yaml: base, check: func(t *testing.T, c config.Config) {
			s := c.Streams
			if s.Apply != "" || s.Jobs.MaxAge.D() != 720*time.Hour || s.Archive.MaxAge.D() != 720*time.Hour ||
				s.Jobs.MaxBytes != 0 || s.Archive.MaxBytes != 0 || s.Quota != (config.StreamLimits{}) {
				t.Fatalf("streams: %+v", s)
			}
		}},
		{name: "streams set", yaml: base + "streams: {apply: off, jobs: {max_age: 168h, max_bytes: 1073741824}, archive: {max_age: 0s}, quota: {max_bytes: 10737418240}}\n",
			check: func(t *testing.T, c config.Config) {
				s := c.Streams
				if s.Apply != "off" || s.Jobs.MaxAge.D() != 168*time.Hour || s.Jobs.MaxBytes != 1<<30 || s.Archive.MaxAge != 0 || s.Quota.MaxBytes != 10<<30 {
					t.Fatalf("streams: %+v", s)
				}
			}},
		{name: "streams from env", yaml: base, env: map[string]string{"SDEVENTS_STREAMS_APPLY": "create", "SDEVENTS_STREAMS_ARCHIVE_MAX_AGE": "2160h"},
			check: func(t *testing.T, c config.Config) {
				if c.Streams.Apply != "create" || c.Streams.Archive.MaxAge.D() != 2160*time.Hour {
					t.Fatalf("streams: %+v", c.Streams)
				}
			}},
		// The ledger keeps every event: no age limit can be set on it.
		{name: "quota ledger cannot lose events", yaml: base + "streams: {quota: {max_age: 8760h}}\n",
			wantErr: []string{"streams.quota.max_age: the QUOTA ledger keeps every event"}},
		{name: "bad streams", yaml: base + "streams: {apply: sometimes, jobs: {max_age: 1h}, archive: {max_bytes: 1000}, quota: {max_bytes: -1}}\n",
			wantErr: []string{`streams.apply: want update, create or off, got "sometimes"`, "streams.jobs.max_age: want 0 (unlimited) or at least 24h0m0s",
				"streams.archive.max_bytes", "streams.quota.max_bytes"}},
		{name: "unknown streams key", yaml: base + "streams: {quota: {max_msgs: 5}}\n", wantErr: []string{"max_msgs"}},
		{name: "aggregator limits", yaml: base + "aggregator: {max_tasks: 0, max_duration: 0s, max_images_per_task: 0, max_record_bytes: 1000}\n",
			wantErr: []string{"aggregator.max_tasks", "aggregator.max_duration", "aggregator.max_images_per_task", "aggregator.max_record_bytes"}},
		{name: "aggregator record beyond the payload", yaml: base + "aggregator: {max_record_bytes: 8388608}\n", wantErr: []string{"aggregator.max_record_bytes"}},
		{name: "aggregator limits from the environment", yaml: base, env: map[string]string{
			"SDEVENTS_AGGREGATOR_MAX_TASKS": "1000", "SDEVENTS_AGGREGATOR_MAX_DURATION": "2h",
		}, check: func(t *testing.T, c config.Config) {
			if c.Aggregator.MaxTasks != 1000 || c.Aggregator.MaxDuration.D() != 2*time.Hour || c.Aggregator.MaxImagesPerTask != 64 {
				t.Fatalf("aggregator %+v", c.Aggregator)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(writeFile(t, "c.yaml", tc.yaml), tc.env)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("want error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := config.Secret("hunter2")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v", s, s, s, s)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	c := config.Default()
	c.Admin.Token = "hunter2"
	c.NATS.Password = "hunter2"
	if strings.Contains(fmt.Sprintf("%+v", c), "hunter2") {
		t.Fatal("secret printed through config")
	}
}
