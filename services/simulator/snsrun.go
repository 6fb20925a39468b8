package simulator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/sns"
)

// S3Target is the bucket the SNS simulator stores images in, as the
// SD-on-EKS solution does (archive.source_s3 of the receiver reads it).
type S3Target struct {
	Endpoint  string // host:port
	Bucket    string
	AccessKey string
	SecretKey string
	Secure    bool
}

// SNSConfig configures an SNS run. Zero fields take defaults.
type SNSConfig struct {
	// Endpoint is the receiver's URL, e.g. http://127.0.0.1:8080/v1/sns/eks;
	// Source its source name (eks), for the verification.
	Endpoint string
	Source   string
	TopicARN string
	// Listen is the local SNS's HTTPS address; CA issues its certificate.
	Listen string
	CA     CA
	// Users is the number of accounts (context.account) tasks belong to.
	Users int
	// Rate is the number of tasks started per second; Duration how long;
	// MaxTasks, when positive, stops earlier.
	Rate     float64
	Duration time.Duration
	MaxTasks int
	// Drain bounds how long deliveries in progress may still be retried.
	Drain time.Duration
	// TimeScale compresses the SNS retry delay (1: real time).
	TimeScale float64
	// Retries and RetryDelay are the delivery policy (3 retries, 20 s).
	Retries    int
	RetryDelay time.Duration
	// SignatureVersion is "1", "2" or "mixed" (alternating).
	SignatureVersion string
	// Format is "legacy" ({id, result, image_url, output_url, context}),
	// "current" (with runtime and status) or "mixed".
	Format string
	// Running sends a running message before each result (current format).
	Running bool
	// Duplicates is the probability that a task is reported again after its
	// result: redelivered (same MessageId), re-reported (new MessageId) or
	// followed by a late running message.
	Duplicates float64
	// FailRate is the probability that a task fails.
	FailRate float64
	// S3 is where images go.
	S3 S3Target
	// ConfirmTimeout bounds the wait for the GET on SubscribeURL.
	ConfirmTimeout time.Duration
	RunID          string
	Seed           uint64
	Timeout        time.Duration
	Progress       io.Writer
}

func (c *SNSConfig) defaults() {
	c.Listen = cmp.Or(c.Listen, "127.0.0.1:0")
	c.Users = cmp.Or(c.Users, 10)
	c.Rate = cmp.Or(c.Rate, DefaultRate)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.Drain = cmp.Or(c.Drain, DefaultDrain)
	c.TimeScale = cmp.Or(c.TimeScale, 1)
	c.Retries = cmp.Or(c.Retries, DefaultSNSRetries)
	c.RetryDelay = cmp.Or(c.RetryDelay, DefaultSNSRetryDelay)
	c.SignatureVersion = cmp.Or(c.SignatureVersion, "mixed")
	c.Format = cmp.Or(c.Format, "mixed")
	c.ConfirmTimeout = cmp.Or(c.ConfirmTimeout, 30*time.Second)
	c.Timeout = cmp.Or(c.Timeout, 15*time.Second) // SNS's HTTP delivery timeout
	if c.RunID == "" {
		c.RunID = NewRunID()
	}
}

// Validate reports every problem of c (after defaults), joined.
func (c SNSConfig) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.Endpoint, "http") {
		errs = append(errs, fmt.Errorf("endpoint %q: want http(s)://host:port/v1/sns/<source>", c.Endpoint))
	}
	if _, err := sns.ParseTopicARN(c.TopicARN); err != nil {
		errs = append(errs, err)
	}
	if c.CA.Cert == nil {
		errs = append(errs, errors.New("no CA"))
	}
	if c.S3.Endpoint == "" || c.S3.Bucket == "" {
		errs = append(errs, errors.New("an S3 endpoint and bucket are needed for the images (archive.source_s3 or --s3-*)"))
	}
	switch c.SignatureVersion {
	case "1", "2", "mixed":
	default:
		errs = append(errs, fmt.Errorf("signature version %q: want 1, 2 or mixed", c.SignatureVersion))
	}
	switch c.Format {
	case "legacy", "current", "mixed":
	default:
		errs = append(errs, fmt.Errorf("format %q: want legacy, current or mixed", c.Format))
	}
	if c.Users < 1 || c.Rate <= 0 || c.Duration <= 0 || c.TimeScale <= 0 || c.Retries < 0 {
		errs = append(errs, errors.New("users, rate, duration and time scale must be positive"))
	}
	if c.Duplicates < 0 || c.Duplicates > 1 || c.FailRate < 0 || c.FailRate > 1 {
		errs = append(errs, errors.New("duplicates and fail rate must be within [0, 1]"))
	}
	return errors.Join(errs...)
}

// SNSRun is an SNS run: the local SNS, the S3 client and the tasks.
type SNSRun struct {
	cfg    SNSConfig
	local  *LocalSNS
	s3     *minio.Client
	client *http.Client
	rec    *Record
	stats  *Stats

	seq, tasks, imagesMade, signed atomic.Int64
	uploadFailed                   atomic.Int64
	uploadErr                      atomic.Value // error: the last failed upload
	numericBase                    int64
}

// NewSNSRun validates cfg, starts the local SNS and checks the bucket
// (creating it when missing). Close stops the local SNS.
func NewSNSRun(ctx context.Context, cfg SNSConfig) (*SNSRun, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s3c, err := minio.New(cfg.S3.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(cfg.S3.AccessKey, cfg.S3.SecretKey, ""), Secure: cfg.S3.Secure,
	})
	if err != nil {
		return nil, fmt.Errorf("simulator: s3: %w", err)
	}
	ok, err := s3c.BucketExists(ctx, cfg.S3.Bucket)
	if err != nil {
		return nil, fmt.Errorf("simulator: s3 bucket %s: %w", cfg.S3.Bucket, err)
	}
	if !ok {
		if err := s3c.MakeBucket(ctx, cfg.S3.Bucket, minio.MakeBucketOptions{}); err != nil {
			return nil, fmt.Errorf("simulator: s3 make bucket %s: %w", cfg.S3.Bucket, err)
		}
	}
	local, err := NewLocalSNS(cfg.Listen, cfg.CA)
	if err != nil {
		return nil, err
	}
	rec := NewRecord(cfg.RunID)
	rec.SNSSource = cfg.Source
	return &SNSRun{cfg: cfg, local: local, s3: s3c, client: newClient(cfg.Users), rec: rec, stats: newStats(),
		numericBase: 1_000_000_000 + mrand.Int64N(8_000_000_000)}, nil
}

// Close stops the local SNS.
func (s *SNSRun) Close() error { return s.local.Close() }

// Local returns the local SNS.
func (s *SNSRun) Local() *LocalSNS { return s.local }

// Record returns what the run sent, for Verify.
func (s *SNSRun) Record() *Record { return s.rec }

// Stats returns the attempts per message kind.
func (s *SNSRun) Stats() *Stats { return s.stats }

// Tasks returns the number of tasks started.
func (s *SNSRun) Tasks() int64 { return s.tasks.Load() }

// version returns the signature version of the next envelope.
func (s *SNSRun) version() string {
	if s.cfg.SignatureVersion != "mixed" {
		return s.cfg.SignatureVersion
	}
	if s.signed.Add(1)%2 == 0 {
		return sns.SignatureV2
	}
	return sns.SignatureV1
}

// Subscribe sends a SubscriptionConfirmation and waits until the receiver
// GETs its SubscribeURL (CONTRACT §5: auto_confirm).
func (s *SNSRun) Subscribe(ctx context.Context) error {
	env, err := s.local.SubscriptionConfirmation(s.cfg.TopicARN, s.version())
	if err != nil {
		return err
	}
	if !s.deliver(ctx, env, "SubscriptionConfirmation", account.Unknown) {
		return fmt.Errorf("the receiver did not accept the SubscriptionConfirmation (does sns source %q allow topic %s, trust cert host %s and the CA?)",
			s.cfg.Source, s.cfg.TopicARN, s.local.Host())
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ConfirmTimeout)
	defer cancel()
	if err := s.local.WaitConfirmed(wctx, env.Token); err != nil {
		return fmt.Errorf("no GET on the SubscribeURL within %s: is auto_confirm on? (confirm by hand: curl --cacert <ca_file> '%s')",
			s.cfg.ConfirmTimeout, env.SubscribeURL)
	}
	return nil
}

// Run confirms the subscription, then starts tasks at the configured rate
// for the configured duration and returns when every task in progress has
// been delivered or the drain time has passed. It returns an error when the
// subscription is not confirmed or an image could not be stored in S3.
func (s *SNSRun) Run(ctx context.Context) error {
	if err := s.Subscribe(ctx); err != nil {
		return err
	}
	seed := s.cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	progress := func(window context.Context) func() {
		return bar(window, s.cfg.Progress, s.cfg.Duration, func() string {
			t := s.stats.Totals()
			return fmt.Sprintf("tasks %d · messages %d · accepted %d · refused %d · failed %d · retried %d · images %d",
				s.tasks.Load(), t.Sent, t.Accepted, t.Refused, t.Failed, t.Retried, s.imagesMade.Load())
		})
	}
	rands := make([]*mrand.Rand, s.cfg.Users)
	for i := range rands {
		rands[i] = mrand.New(mrand.NewPCG(seed, uint64(i)+1<<32))
	}
	drive(ctx, traffic{duration: s.cfg.Duration, drain: s.cfg.Drain, rate: s.cfg.Rate, workers: s.cfg.Users}, progress,
		func(hard context.Context, i int) bool {
			if n := s.seq.Add(1); s.cfg.MaxTasks > 0 && n > int64(s.cfg.MaxTasks) {
				return false
			}
			s.task(hard, rands[i], fmt.Sprintf("sns-%s-user-%02d", s.cfg.RunID, i))
			return true
		})
	// An image that never reached S3 is left out of its message, so nothing
	// downstream would miss it: the run itself is not what it claims.
	if n := s.uploadFailed.Load(); n > 0 {
		return fmt.Errorf("simulator: %d images could not be stored in s3://%s (last: %v)", n, s.cfg.S3.Bucket, s.uploadErr.Load())
	}
	return nil
}

// taskMessage is the SD-on-EKS notification message (seeds 000/001), with
// the newer runtime and status fields.
type taskMessage struct {
	Runtime   string         `json:"runtime,omitempty"`
	ID        any            `json:"id"`
	Status    string         `json:"status,omitempty"`
	Result    *bool          `json:"result,omitempty"`
	ImageURL  []string       `json:"image_url,omitempty"`
	OutputURL string         `json:"output_url,omitempty"`
	Context   map[string]any `json:"context"`
}

// task runs one task: an optional running message, the images in S3, the
// result, and possibly a duplicate.
func (s *SNSRun) task(ctx context.Context, r *mrand.Rand, ctxAccount string) {
	n := s.tasks.Add(1)
	acct := account.FromToken(ctxAccount)
	legacy := s.cfg.Format == "legacy" || s.cfg.Format == "mixed" && r.IntN(2) == 0
	var id any = fmt.Sprintf("%s-t%05d", s.cfg.RunID, n)
	if legacy && r.IntN(3) == 0 {
		id = s.numericBase + n // old versions send a number
	}
	idStr := fmt.Sprint(id)
	msgCtx := map[string]any{"account": ctxAccount, "request_id": idStr, "prompt": prompts[r.IntN(len(prompts))]}
	msg := taskMessage{ID: id, Context: msgCtx}
	if !legacy {
		msg.Runtime = "sdruntime"
		if s.cfg.Running {
			running := msg
			running.Status = "running"
			s.notify(ctx, running, "Notification running", acct)
		}
	}
	success := r.Float64() >= s.cfg.FailRate
	msg.Result = &success
	prefix := fmt.Sprintf("output/%s/%s-%04d", idStr, idStr, r.IntN(10000))
	msg.OutputURL = "s3://" + s.cfg.S3.Bucket + "/" + prefix + ".out"
	var expected []ExpectedImage
	if success {
		for i := range 1 + r.IntN(4) {
			key := fmt.Sprintf("%s-%d.png", prefix, i+1)
			img, err := NewImage(key, r)
			if err != nil {
				continue
			}
			if _, err := s.s3.PutObject(ctx, s.cfg.S3.Bucket, key, bytes.NewReader(img.data), int64(len(img.data)),
				minio.PutObjectOptions{ContentType: "image/png"}); err != nil {
				if ctx.Err() == nil {
					s.uploadFailed.Add(1)
					s.uploadErr.Store(err)
				}
				continue
			}
			s.imagesMade.Add(1)
			uri := "s3://" + s.cfg.S3.Bucket + "/" + key
			msg.ImageURL = append(msg.ImageURL, uri)
			expected = append(expected, ExpectedImage{Account: acct, TaskID: idStr, SourceURL: uri, SHA256: img.SHA256})
		}
	}
	out := fmt.Sprintf("task %s: %d images, %s\n", idStr, len(msg.ImageURL), strconv.FormatBool(success))
	_, _ = s.s3.PutObject(ctx, s.cfg.S3.Bucket, prefix+".out", strings.NewReader(out), int64(len(out)), minio.PutObjectOptions{ContentType: "text/plain"})
	kind := "Notification legacy"
	if !legacy {
		msg.Status = "completed"
		kind = "Notification completed"
		if !success {
			msg.Status = "failed"
			kind = "Notification failed"
		}
	}
	env, ok := s.notify(ctx, msg, kind, acct)
	s.rec.updateSNSTask(idStr, acct, func(t *SNSTask) {
		if ok {
			t.Terminal, t.Success = true, success
		}
	})
	if !ok {
		return
	}
	s.rec.addImages(expected...)
	if r.Float64() >= s.cfg.Duplicates {
		return
	}
	switch r.IntN(3) {
	case 0: // SNS redelivers the same message
		s.deliver(ctx, env, "Notification duplicate", acct)
	case 1: // the platform reports the task again
		s.notify(ctx, msg, "Notification duplicate", acct)
	default: // a running message arrives after the result
		if !legacy {
			late := msg
			late.Status, late.Result, late.ImageURL, late.OutputURL = "running", nil, nil, ""
			s.notify(ctx, late, "Notification duplicate", acct)
		} else {
			s.deliver(ctx, env, "Notification duplicate", acct)
		}
	}
}

// notify signs msg as a Notification and delivers it.
func (s *SNSRun) notify(ctx context.Context, msg taskMessage, kind, acct string) (sns.Envelope, bool) {
	body, _ := json.Marshal(msg)
	env, err := s.local.Notification(s.cfg.TopicARN, string(body), nil, s.version())
	if err != nil {
		s.stats.Attempt(kind, Failed, 0, false)
		return env, false
	}
	return env, s.deliver(ctx, env, kind, acct)
}

// deliver POSTs env as SNS does and retries a 5xx answer, a timeout or a
// transport error cfg.Retries times, cfg.RetryDelay (scaled) apart; a 4xx
// answer is final. It reports whether env was accepted (2xx).
func (s *SNSRun) deliver(ctx context.Context, env sns.Envelope, kind, acct string) bool {
	body, _ := json.Marshal(env)
	key := snsKey(s.cfg.Source, env.MessageId)
	for i := 0; ; i++ {
		req, err := http.NewRequest(http.MethodPost, s.cfg.Endpoint, bytes.NewReader(body))
		if err != nil {
			return false
		}
		h := req.Header
		h.Set("Content-Type", "text/plain; charset=UTF-8")
		h.Set("User-Agent", "Amazon Simple Notification Service Agent")
		h.Set("x-amz-sns-message-type", env.Type)
		h.Set("x-amz-sns-message-id", env.MessageId)
		h.Set("x-amz-sns-topic-arn", env.TopicArn)
		if env.Type == sns.TypeNotification {
			h.Set("x-amz-sns-subscription-arn", env.TopicArn+":sim")
		}
		res := do(ctx, s.client, req, s.cfg.Timeout)
		o, _ := res.classify(false)
		s.stats.Attempt(kind, o, res.lat, i > 0)
		s.rec.attempt(key, "sns", env.Type, acct, res.ok())
		switch {
		case o == Accepted:
			return true
		case o == Refused:
			return false
		case i == s.cfg.Retries || !sleep(ctx, scale(s.cfg.RetryDelay, s.cfg.TimeScale)):
			s.stats.GaveUp(kind)
			return false
		}
	}
}
