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
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/fetch"
)

// CallbacksConfig configures a callback run. Zero fields take the defaults
// of Defaults.
type CallbacksConfig struct {
	// Target is the ingress base URL, e.g. http://127.0.0.1:8080; the admin
	// API is reached there too.
	Target string
	// Source is the callback source name (POST /v1/callbacks/<Source>).
	Source string
	// Keys are the source's key pairs; requests are signed with Keys[0], or
	// with a random one of them when RotateKeys is set.
	Keys       []callback.Key
	RotateKeys bool
	// AdminURL is the base URL of the admin API (a quota replica's HTTP
	// server); Target when empty (`sdevents run` serves both).
	AdminURL string
	// AdminToken is the bearer token of the admin API (admin.token).
	AdminToken string
	// Users is the number of simulated users; each runs one job at a time.
	Users int
	// Credits are granted to every user before the run; a user refused for
	// lack of credits gets Credits again up to TopUps times, then stops.
	Credits int64
	TopUps  int
	// Rate is the number of jobs started per second across all users (at
	// most: a user runs one job at a time).
	Rate float64
	// Duration is how long jobs are started; MaxJobs, when positive, stops
	// earlier after that many jobs.
	Duration time.Duration
	MaxJobs  int
	// Drain bounds how long the jobs in progress may still run (retries
	// included) after Duration; undelivered events are then abandoned.
	Drain time.Duration
	// TimeScale compresses the retry schedule: 1 is the seed's real schedule
	// (10 s, 30 s, 1 min …), 0.01 a hundred times faster.
	TimeScale float64
	// ImageAddr is where the image server listens (host:port; port 0 picks
	// one). URLTTL is how long an image URL stays valid.
	ImageAddr string
	URLTTL    time.Duration
	// FailRate is the probability that a sub-request fails after its
	// reservation (rolled back, its task reported failed).
	FailRate float64
	// PricePerImage is quota.price.per_image.
	PricePerImage int64
	// RunID names the run in tokens and invokeIds; random when empty.
	RunID string
	// Seed makes the run's choices repeatable (0: random).
	Seed uint64
	// Timeout bounds one attempt (the platform's 5 s).
	Timeout time.Duration
	// Progress receives a progress bar; nil draws none.
	Progress io.Writer
}

// Defaults of CallbacksConfig.
const (
	DefaultUsers     = 20
	DefaultCredits   = 100
	DefaultRate      = 5
	DefaultDuration  = 30 * time.Second
	DefaultDrain     = 2 * time.Minute
	DefaultURLTTL    = 5 * time.Hour
	DefaultFailRate  = 0.05
	DefaultTimeout   = 5 * time.Second
	DefaultTimeScale = 1
)

func (c *CallbacksConfig) defaults() {
	c.Users = cmp.Or(c.Users, DefaultUsers)
	c.Credits = cmp.Or(c.Credits, DefaultCredits)
	c.Rate = cmp.Or(c.Rate, DefaultRate)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.Drain = cmp.Or(c.Drain, DefaultDrain)
	c.TimeScale = cmp.Or(c.TimeScale, DefaultTimeScale)
	c.ImageAddr = cmp.Or(c.ImageAddr, "127.0.0.1:0")
	c.URLTTL = cmp.Or(c.URLTTL, DefaultURLTTL)
	c.PricePerImage = cmp.Or(c.PricePerImage, 1)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	if c.RunID == "" {
		c.RunID = NewRunID()
	}
}

// Validate reports every problem of c (after defaults), joined.
func (c CallbacksConfig) Validate() error {
	var errs []error
	if _, err := url.Parse(c.Target); err != nil || !strings.HasPrefix(c.Target, "http") {
		errs = append(errs, fmt.Errorf("target %q: want http(s)://host:port", c.Target))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("no callback source"))
	}
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("the callback source has no key pair"))
	}
	if c.AdminToken == "" {
		errs = append(errs, errors.New("admin.token is empty: the simulator grants its users credits through the admin API"))
	}
	if c.Users < 1 || c.Credits < 1 || c.Rate <= 0 || c.Duration <= 0 || c.Drain < 0 || c.TimeScale <= 0 || c.TopUps < 0 {
		errs = append(errs, errors.New("users, credits, rate, duration and time scale must be positive; drain and top-ups not negative"))
	}
	if c.FailRate < 0 || c.FailRate > 1 {
		errs = append(errs, errors.New("fail rate must be within [0, 1]"))
	}
	if c.URLTTL <= 0 {
		errs = append(errs, errors.New("image URL lifetime must be positive"))
	}
	return errors.Join(errs...)
}

// NewRunID returns a short random run id ([a-z0-9]).
func NewRunID() string {
	const abc = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = abc[mrand.IntN(len(abc))]
	}
	return string(b)
}

// Callbacks is a callback run: users, their jobs, and the image server.
type Callbacks struct {
	cfg    CallbacksConfig
	client *http.Client
	images *ImageServer
	rec    *Record
	stats  *Stats

	jobs, imagesMade atomic.Int64
	jobSeq           atomic.Int64
}

// NewCallbacks validates cfg and starts the image server. Close stops it:
// call it after Verify, since the archive fetches the images until then.
func NewCallbacks(cfg CallbacksConfig) (*Callbacks, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Target = strings.TrimRight(cfg.Target, "/")
	if cfg.AdminURL == "" {
		cfg.AdminURL = cfg.Target
	}
	cfg.AdminURL = strings.TrimRight(cfg.AdminURL, "/")
	imgs, err := NewImageServer(cfg.ImageAddr, cfg.URLTTL)
	if err != nil {
		return nil, err
	}
	rec := NewRecord(cfg.RunID)
	rec.Source, rec.PricePerImage = cfg.Source, cfg.PricePerImage
	return &Callbacks{cfg: cfg, client: newClient(cfg.Users), images: imgs, rec: rec, stats: newStats()}, nil
}

// Close stops the image server.
func (c *Callbacks) Close() error { return c.images.Close() }

// Record returns what the run sent, for Verify.
func (c *Callbacks) Record() *Record { return c.rec }

// Stats returns the attempts per event type.
func (c *Callbacks) Stats() *Stats { return c.stats }

// Images returns the image server.
func (c *Callbacks) Images() *ImageServer { return c.images }

// Jobs returns the number of jobs started.
func (c *Callbacks) Jobs() int64 { return c.jobs.Load() }

// RunID returns the run's id.
func (c *Callbacks) RunID() string { return c.cfg.RunID }

// user is one simulated user.
type user struct {
	n       int
	token   string
	account string
	rnd     *mrand.Rand
	topUps  int
	grants  int
	jobs    int
}

// Run grants credits to every user, then runs jobs at the configured rate
// for the configured duration, and returns once every job in progress has
// finished or the drain time has passed. It returns an error only when the
// grants fail; refused requests are counted, not errors.
func (c *Callbacks) Run(ctx context.Context) error {
	seed := c.cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	users := make([]*user, c.cfg.Users)
	for i := range users {
		tok := fmt.Sprintf("sim-%s-user-%03d", c.cfg.RunID, i)
		users[i] = &user{n: i, token: tok, account: account.FromToken(tok), rnd: mrand.New(mrand.NewPCG(seed, uint64(i)))}
	}
	grantCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(users))
	for i, u := range users {
		wg.Go(func() { errs[i] = c.grant(grantCtx, u) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	drive(ctx, traffic{duration: c.cfg.Duration, drain: c.cfg.Drain, rate: c.cfg.Rate, workers: len(users)}, c.progress,
		func(hard context.Context, i int) bool {
			if n := c.jobSeq.Add(1); c.cfg.MaxJobs > 0 && n > int64(c.cfg.MaxJobs) {
				return false
			}
			return c.job(hard, users[i])
		})
	return nil
}

// grant adds credits to u through the admin API, with an idempotency key, so
// a grant retried after a lost answer is applied once. It retries transient
// failures until ctx ends.
func (c *Callbacks) grant(ctx context.Context, u *user) error {
	id := fmt.Sprintf("sim-%s-%03d-%d", c.cfg.RunID, u.n, u.grants)
	u.grants++
	body, _ := json.Marshal(map[string]any{"credits": c.cfg.Credits, "id": id})
	u2 := c.cfg.AdminURL + "/v1/admin/accounts/" + url.PathEscape("token:"+u.token) + "/credits"
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, u2, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.cfg.AdminToken)
		r := do(ctx, c.client, req, c.cfg.Timeout)
		o, _ := r.classify(false)
		c.stats.Attempt("admin grant", o, r.lat, attempt > 0)
		switch {
		case o == Accepted:
			c.rec.update(u.account, func(a *Account) { a.Granted += c.cfg.Credits })
			return nil
		case o == Refused:
			return fmt.Errorf("grant to user %d: admin API answered %d: %s", u.n, r.status, bytes.TrimSpace(r.body))
		}
		if !sleep(ctx, delay) {
			return fmt.Errorf("grant to user %d: %w (last: %v)", u.n, ctx.Err(), describe(r))
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func describe(r result) string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("status %d", r.status)
}

// genParams is a user's image-generation request.
type genParams struct {
	Prompt         string  `json:"prompt"`
	NegativePrompt string  `json:"negative_prompt"`
	Steps          int     `json:"steps"`
	Sampler        string  `json:"sampler_name"`
	CFGScale       float64 `json:"cfg_scale"`
	Width          int     `json:"width"`
	Height         int     `json:"height"`
	BatchSize      int     `json:"batch_size"`
	NIter          int     `json:"n_iter"`
	Seed           int64   `json:"seed"`
}

var (
	prompts = []string{
		"a red fox in a snowy forest, golden hour", "山水画, ink wash, misty mountains", "portrait of an astronaut, oil painting",
		"isometric city at night, neon", "a bowl of ramen, studio photo", "watercolor lighthouse on a cliff",
		"cyberpunk street market in the rain", "a cat wearing a wizard hat",
	}
	samplers   = []string{"Euler a", "DPM++ 2M Karras", "DDIM", "UniPC"}
	batchSizes = []int{1, 1, 1, 2, 2, 4}
	nIters     = []int{1, 1, 1, 1, 2}
)

type model struct {
	ModelID        string `json:"modelId"`
	ModelVersionID string `json:"modelVersionId"`
	AliasName      string `json:"aliasName"`
	ModelFileID    string `json:"modelFileId"`
	ModelFileName  string `json:"modelFileName"`
}

var checkpoints = []model{
	{"m-1001", "mv-1001-3", "dreamshaper_8", "f-1001", "dreamshaper_8.safetensors"},
	{"m-2002", "mv-2002-1", "sdxl_base_1.0", "f-2002", "sd_xl_base_1.0.safetensors"},
	{"m-3003", "mv-3003-7", "realisticVision_v51", "f-3003", "realisticVisionV51.safetensors"},
}

// job runs one job of u and reports whether u goes on (false: out of
// credits for good).
func (c *Callbacks) job(ctx context.Context, u *user) bool {
	c.jobs.Add(1)
	u.jobs++
	jobID := fmt.Sprintf("%s-u%03d-j%04d", c.cfg.RunID, u.n, u.jobs)
	r := u.rnd
	ck := checkpoints[r.IntN(len(checkpoints))]
	p := genParams{
		Prompt: prompts[r.IntN(len(prompts))], NegativePrompt: "blurry, lowres", Steps: 20 + 5*r.IntN(4),
		Sampler: samplers[r.IntN(len(samplers))], CFGScale: 7, Width: 512, Height: 512,
		BatchSize: batchSizes[r.IntN(len(batchSizes))], NIter: nIters[r.IntN(len(nIters))], Seed: r.Int64N(1 << 32),
	}
	page, _ := json.Marshal(map[string]any{
		"checkpoint": ck,
		"vae":        model{"v-1", "vv-1", "vae-ft-mse-840000", "fv-1", "vae-ft-mse-840000-ema-pruned.safetensors"},
		"loras":      model{"l-7", "lv-7", "detail_tweaker", "fl-7", "add_detail.safetensors"},
		"param":      p,
	})

	// Page rendering: the button is disabled when the balance cannot pay.
	if o, _ := c.sync(ctx, u, callback.BizImgGenControlConfig, jobID+"-page", "api-sd", page); o == Denied {
		if u.topUps >= c.cfg.TopUps {
			return false
		}
		u.topUps++
		return c.grant(ctx, u) == nil
	}
	if ctx.Err() != nil {
		return false
	}
	// Submission: from here on the job is open at the receiver (its
	// sdPreInvoke may be stored even when the answer is lost), so it always
	// ends with sdJobFinished.
	job := &Job{InvokeID: jobID}
	o, _ := c.sync(ctx, u, callback.BizSDPreInvoke, jobID, "api-sd", page)
	var final []imageEntry
	if o == Accepted {
		subs := 1 + r.IntN(3)
		for k := range subs {
			sub := p
			apiID := "api-txt2img"
			if k > 0 {
				apiID = "api-img2img"
				sub.Seed = r.Int64N(1 << 32)
			}
			subID := fmt.Sprintf("%s-s%d", jobID, k+1)
			body, _ := json.Marshal(map[string]any{
				"prompt": sub.Prompt, "negative_prompt": sub.NegativePrompt, "steps": sub.Steps, "sampler_name": sub.Sampler,
				"cfg_scale": sub.CFGScale, "width": sub.Width, "height": sub.Height, "batch_size": sub.BatchSize,
				"n_iter": sub.NIter, "seed": sub.Seed, "override_settings": map[string]string{"sd_model_checkpoint": ck.AliasName},
			})
			if o, _ := c.sync(ctx, u, callback.BizAPIPreInvoke, subID, apiID, body); o != Accepted {
				break // refused (or unanswered): the platform does not run the request
			}
			price := int64(sub.BatchSize*sub.NIter) * c.cfg.PricePerImage
			success := r.Float64() >= c.cfg.FailRate
			var task []byte
			var entries []imageEntry
			if success {
				o, _ := c.sync(ctx, u, callback.BizAPICommit, subID, apiID, body)
				c.rec.update(u.account, func(a *Account) {
					a.Commits[subID] = price
					if o == Accepted {
						a.CommitsAccepted[subID] = true
					}
				})
				entries = c.makeImages(u, subID, sub.BatchSize*sub.NIter, ck)
				task = taskBody(true, entries, r.IntN(2) == 0)
			} else {
				c.sync(ctx, u, callback.BizAPIRollback, subID, apiID, nil)
				task = []byte(`{"success":false,"errMessage":"sub-task failed: CUDA out of memory","data":[]}`)
			}
			if !c.async(ctx, u, callback.BizTaskFinished, subID, apiID, task) {
				continue
			}
			job.Tasks = append(job.Tasks, subID)
			job.Success = append(job.Success, success)
			c.expect(u, subID, entries)
			if success {
				final = entries
			}
		}
	}
	// The job's own result: a plugin's post-processing of the sub-tasks'
	// outputs (a new image) or the last sub-task's images as they are.
	if len(final) > 0 && r.IntN(2) == 0 {
		final = c.makeImages(u, jobID+"-grid", 1, ck)
	}
	jobBody := taskBody(len(final) > 0, final, false)
	if c.async(ctx, u, callback.BizJobFinished, jobID, "api-sd", jobBody) {
		job.Closed = true
		c.expect(u, jobID, final)
	}
	c.rec.update(u.account, func(a *Account) {
		a.Jobs = append(a.Jobs, job)
		if !job.Closed {
			a.Uncertain = append(a.Uncertain, "sdJobFinished of "+jobID+" was not delivered")
		}
	})
	return true
}

// imageEntry is one image of a task result, as the seed's data entries.
type imageEntry struct {
	GeneratedImageID    string `json:"generatedImageId"`
	URL                 string `json:"url"`
	Type                string `json:"type"`
	ModelID             string `json:"modelId"`
	CheckpointVersionID string `json:"sdCheckpointVersionId"`
	CheckpointName      string `json:"sdCheckpointName"`
	VAE                 string `json:"sdVae"`
	Loras               string `json:"sdLoras"`
	Infotexts           string `json:"infotexts"`
	Width               string `json:"width"` // a string in the seed
	Height              int    `json:"height"`
	sha256              string
}

// makeImages generates n images of task id and serves them.
func (c *Callbacks) makeImages(u *user, id string, n int, ck model) []imageEntry {
	out := make([]imageEntry, 0, n)
	for i := range n {
		img, err := NewImage(fmt.Sprintf("%s-%d", id, i+1), u.rnd)
		if err != nil {
			continue
		}
		c.imagesMade.Add(1)
		out = append(out, imageEntry{
			GeneratedImageID: img.ID, URL: c.images.Add(img), Type: "png",
			ModelID: ck.ModelID, CheckpointVersionID: ck.ModelVersionID, CheckpointName: ck.AliasName,
			VAE: "vae-ft-mse-840000", Loras: "<lora:add_detail:0.6>",
			Infotexts: fmt.Sprintf("Steps: 20, Sampler: Euler a, Size: %dx%d", img.Width, img.Height),
			Width:     fmt.Sprint(img.Width), Height: img.Height, sha256: img.SHA256,
		})
	}
	return out
}

// taskBody is the body of sdTaskFinished or sdJobFinished: data is an
// array, or a single object for one image when single is set (the seed
// shows an object; platforms send both).
func taskBody(success bool, imgs []imageEntry, single bool) []byte {
	var data any = imgs
	if imgs == nil {
		data = []imageEntry{}
	}
	if single && len(imgs) == 1 {
		data = imgs[0]
	}
	b, _ := json.Marshal(map[string]any{"success": success, "data": data})
	return b
}

// expect notes the images of an accepted event of task id.
func (c *Callbacks) expect(u *user, id string, imgs []imageEntry) {
	out := make([]ExpectedImage, 0, len(imgs))
	for _, e := range imgs {
		out = append(out, ExpectedImage{Account: u.account, TaskID: id, SourceURL: fetch.RedactString(e.URL), SHA256: e.sha256})
	}
	c.rec.addImages(out...)
}

// key returns the key pair a request is signed with.
func (c *Callbacks) key(u *user) callback.Key {
	if c.cfg.RotateKeys && len(c.cfg.Keys) > 1 {
		return c.cfg.Keys[u.rnd.IntN(len(c.cfg.Keys))]
	}
	return c.cfg.Keys[0]
}

// attempt signs and sends one attempt of a callback.
func (c *Callbacks) attempt(ctx context.Context, u *user, bizType, invokeID, apiID string, body []byte) result {
	signer := CallbackSigner{Key: c.key(u)}
	p, err := signer.Sign(apiID, bizType, invokeID, u.token, body)
	if err != nil {
		return result{err: err}
	}
	req, err := NewCallbackRequest(c.cfg.Target, c.cfg.Source, p, body)
	if err != nil {
		return result{err: err}
	}
	return do(ctx, c.client, req, c.cfg.Timeout)
}

// sync sends a synchronous callback once: the platform never retries them.
func (c *Callbacks) sync(ctx context.Context, u *user, bizType, invokeID, apiID string, body []byte) (Outcome, answer) {
	r := c.attempt(ctx, u, bizType, invokeID, apiID, body)
	o, a := r.classify(true)
	c.stats.Attempt(bizType, o, r.lat, false)
	c.rec.attempt(callbackKey(c.cfg.Source, bizType, invokeID, body), "callback", bizType, u.account, r.ok())
	return o, a
}

// async sends an asynchronous callback and retries it on the seed's
// schedule (scaled) until it is answered 2xx or the schedule is exhausted;
// it reports whether it was accepted. A retry is signed afresh (new nonce,
// timestamp and IV), as the platform does.
func (c *Callbacks) async(ctx context.Context, u *user, bizType, invokeID, apiID string, body []byte) bool {
	key := callbackKey(c.cfg.Source, bizType, invokeID, body)
	for i := 0; ; i++ {
		r := c.attempt(ctx, u, bizType, invokeID, apiID, body)
		o, _ := r.classify(false)
		c.stats.Attempt(bizType, o, r.lat, i > 0)
		c.rec.attempt(key, "callback", bizType, u.account, r.ok())
		if o == Accepted {
			return true
		}
		if i == len(callbackRetrySchedule) || !sleep(ctx, scale(callbackRetrySchedule[i], c.cfg.TimeScale)) {
			c.stats.GaveUp(bizType)
			c.rec.update(u.account, func(a *Account) {
				a.Uncertain = append(a.Uncertain, bizType+" "+invokeID+" abandoned")
			})
			return false
		}
	}
}
