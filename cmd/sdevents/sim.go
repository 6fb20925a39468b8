package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/services/simulator"
)

func newSimCmd(g *globals) *cobra.Command {
	sim := &cobra.Command{
		Use:   "sim",
		Short: "Play the platforms: signed callbacks and SNS deliveries, then check the end state",
		Long: `The platform simulator (docs/simulator.md). "sim callbacks" runs simulated users
through the callback protocol, "sim sns" plays SNS with its own CA; with --verify
both read the streams afterwards and check that nothing was lost, duplicated or
overdrawn. "sim send" signs and sends one callback.`,
	}
	sim.AddCommand(newSimSendCmd(g), newSimCallbacksCmd(g), newSimSNSCmd(g), newSimCACmd())
	return sim
}

// runFlags are the flags shared by the two simulations.
type runFlags struct {
	target     string
	users      int
	rate       float64
	duration   time.Duration
	limit      int
	drain      time.Duration
	timeScale  float64
	verify     bool
	settle     time.Duration
	jsonPath   string
	noProgress bool
	seed       uint64
	runID      string
	failRate   float64
}

func (f *runFlags) add(cmd *cobra.Command, limitName, limitHelp string) {
	fl := cmd.Flags()
	fl.StringVar(&f.target, "url", "", "base URL of the ingress (default http://<http.addr>)")
	fl.IntVar(&f.users, "users", 20, "simulated users (accounts)")
	fl.Float64Var(&f.rate, "rate", 5, "jobs (tasks) started per second, across all users")
	fl.DurationVar(&f.duration, "duration", 30*time.Second, "how long new work is started")
	fl.IntVar(&f.limit, limitName, 0, limitHelp)
	fl.DurationVar(&f.drain, "drain", 2*time.Minute, "how long work in progress (retries included) may continue after --duration")
	fl.Float64Var(&f.timeScale, "time-scale", 1, "compress the retry delays: 0.01 runs the schedule a hundred times faster")
	fl.BoolVar(&f.verify, "verify", false, "read the streams afterwards and check the end state (exit 1 when a check fails)")
	fl.DurationVar(&f.settle, "settle", 2*time.Minute, "with --verify: how long to wait for the consumers to catch up")
	fl.StringVar(&f.jsonPath, "json", "", "also write the summary and the checks as JSON to this file")
	fl.BoolVar(&f.noProgress, "no-progress", false, "draw no progress bar")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the run's random choices (0: random)")
	fl.StringVar(&f.runID, "run-id", "", "id of the run, in tokens and invokeIds (default: random)")
	fl.Float64Var(&f.failRate, "fail-rate", 0.05, "probability that a (sub-)task fails")
}

func (f *runFlags) progress(cmd *cobra.Command) io.Writer {
	if f.noProgress {
		return nil
	}
	return cmd.ErrOrStderr()
}

func (f *runFlags) base(cfg config.Config) string {
	if f.target != "" {
		return strings.TrimRight(f.target, "/")
	}
	return "http://" + cfg.HTTP.Addr
}

// simReport is the JSON written by --json.
type simReport struct {
	Mode         string                  `json:"mode"`
	RunID        string                  `json:"run_id"`
	Elapsed      string                  `json:"elapsed"`
	Work         int64                   `json:"work"`
	Images       int                     `json:"images"`
	Rows         []simulator.StatRow     `json:"rows"`
	Verification *simulator.Verification `json:"verification,omitempty"`
}

// finish prints the summary, verifies when asked and writes the JSON
// report; it returns an error when a check failed.
func (f *runFlags) finish(ctx context.Context, cmd *cobra.Command, cfg config.Config, mode, runID string, elapsed time.Duration,
	work int64, what string, stats *simulator.Stats, rec *simulator.Record) error {
	out := cmd.OutOrStdout()
	_, _, images := rec.Counts()
	fmt.Fprintf(out, "\nrun %s: %d %s, %d images, in %s\n\n", runID, work, what, images, elapsed.Round(100*time.Millisecond))
	rows := stats.Rows()
	if err := simulator.WriteTable(out, rows); err != nil {
		return err
	}
	rep := simReport{Mode: mode, RunID: runID, Elapsed: elapsed.String(), Work: work, Images: images, Rows: rows}
	var failed bool
	if f.verify {
		nc, js, err := connectJetStream(cfg)
		if err != nil {
			return err
		}
		defer nc.Close()
		v, err := simulator.Verify(ctx, js, rec, simulator.VerifyOptions{Settle: f.settle, Progress: cmd.ErrOrStderr()})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		rep.Verification = v
		fmt.Fprintf(out, "\nend state (after %s):\n", v.Settled.Round(100*time.Millisecond))
		simulator.WriteChecks(out, v)
		failed = !v.Passed()
	}
	if f.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(f.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if failed {
		return fmt.Errorf("end-state checks failed")
	}
	return nil
}

func newSimCallbacksCmd(g *globals) *cobra.Command {
	var (
		f                           runFlags
		source, imageAddr, adminURL string
		credits                     int64
		topUps                      int
		urlTTL                      time.Duration
		rotate                      bool
	)
	cmd := &cobra.Command{
		Use:   "callbacks",
		Short: "Simulated users run image-generation jobs through the signed callback protocol",
		Long: `Simulated users, each with a token, run jobs: sdImgGenControlConfig → sdPreInvoke →
per sub-request apiAccessPreInvoke → apiAccessCommit or apiAccessRollback →
sdTaskFinished per sub-task → sdJobFinished. Requests are signed with the
source's key pairs from the configuration, exactly as the platform does. Every
user is first granted --credits through the admin API (admin.token). Images are
real PNGs served by the simulator on --image-addr, which archive.allow_hosts
must list. Asynchronous events answered non-2xx are retried on the platform's
schedule (10 s, 30 s, 1 min … 2 h) times --time-scale.`,
		Example: `  sdevents sim callbacks --config scripts/demo.yaml --duration 30s --verify`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, src, err := g.loadCallbackSource(source)
			if err != nil {
				return err
			}
			var keys []callback.Key
			for _, k := range src.Keys {
				keys = append(keys, callback.Key{AK: k.AK, SK: k.SK.Reveal()})
			}
			warnAllowHosts(cmd.ErrOrStderr(), cfg, imageAddr)
			sim, err := simulator.NewCallbacks(simulator.CallbacksConfig{
				Target: f.base(cfg), Source: src.Name, Keys: keys, RotateKeys: rotate, AdminURL: adminURL, AdminToken: cfg.Admin.Token.Reveal(),
				Users: f.users, Credits: credits, TopUps: topUps, Rate: f.rate, Duration: f.duration, MaxJobs: f.limit,
				Drain: f.drain, TimeScale: f.timeScale, ImageAddr: imageAddr, URLTTL: urlTTL, FailRate: f.failRate,
				PricePerImage: cfg.Quota.Price.PerImage, RunID: f.runID, Seed: f.seed, Progress: f.progress(cmd),
			})
			if err != nil {
				return err
			}
			defer sim.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.ErrOrStderr(), "run %s: %d users, %.3g jobs/s for %s against %s/v1/callbacks/%s; images on http://%s\n",
				sim.RunID(), f.users, f.rate, f.duration, f.base(cfg), src.Name, sim.Images().Host())
			start := time.Now()
			if err := sim.Run(ctx); err != nil {
				return err
			}
			return f.finish(ctx, cmd, cfg, "callbacks", sim.RunID(), time.Since(start), sim.Jobs(), "jobs", sim.Stats(), sim.Record())
		},
	}
	f.add(cmd, "jobs", "stop after this many jobs (0: run for --duration)")
	fl := cmd.Flags()
	fl.StringVar(&source, "source", "", "callback source name (default: the first)")
	fl.StringVar(&adminURL, "admin-url", "", "base URL of the admin API, a quota replica's HTTP address (default: --url)")
	fl.BoolVar(&rotate, "rotate-keys", false, "sign with a random key pair of the source (key rotation)")
	fl.Int64Var(&credits, "credits", 100, "credits granted to every user before the run")
	fl.IntVar(&topUps, "top-ups", 1, "times a user out of credits is granted --credits again before it stops")
	fl.StringVar(&imageAddr, "image-addr", "127.0.0.1:9700", "address of the simulator's image server (list it in archive.allow_hosts)")
	fl.DurationVar(&urlTTL, "url-ttl", 5*time.Hour, "how long an image URL stays valid")
	return cmd
}

// warnAllowHosts warns when the image server's address is not in
// archive.allow_hosts: the archiver refuses loopback addresses otherwise.
func warnAllowHosts(w io.Writer, cfg config.Config, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		fmt.Fprintf(w, "note: the image server listens on a random port; archive.allow_hosts must list it\n")
		return
	}
	if slices.Contains(cfg.Archive.AllowHosts, addr) || slices.Contains(cfg.Archive.AllowHosts, host) {
		return
	}
	fmt.Fprintf(w, "warning: archive.allow_hosts does not list %s: the archiver will refuse the simulator's images\n", addr)
}

func newSimSNSCmd(g *globals) *cobra.Command {
	var (
		f                                    runFlags
		source, topic, listen, caFile, caKey string
		version, format                      string
		running                              bool
		duplicates                           float64
		retries                              int
		retryDelay, confirmTimeout           time.Duration
		s3                                   simulator.S3Target
	)
	cmd := &cobra.Command{
		Use:   "sns",
		Short: "A local SNS with its own CA delivers SD-on-EKS task results (images in S3)",
		Long: `A local SNS: an HTTPS server on --listen with its own CA (--ca-file, created with
its key on first use) serves the signing certificate and answers SubscribeURL.
It sends a SubscriptionConfirmation and waits for its GET, then delivers
Notifications signed with SignatureVersion 1 and 2, in the SD-on-EKS shape
({id, result, image_url[], output_url, context}, and the newer {runtime, id,
status}), with the images stored in an S3 bucket as s3:// URIs. Failed
deliveries are retried as SNS does (--retries, --retry-delay, times
--time-scale). The receiving source must list --listen in cert_hosts and the
CA file in ca_file; archive.source_s3 must reach the bucket.`,
		Example: `  sdevents sim ca --ca-file data/sim-ca.pem     # once, before sdevents run reads ca_file
  sdevents sim sns --config sdevents.yaml --ca-file data/sim-ca.pem --s3-bucket sd-output --verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if source == "" && len(cfg.SNS) > 0 {
				source = cfg.SNS[0].Name
			}
			var src *config.SNS
			for i := range cfg.SNS {
				if cfg.SNS[i].Name == source {
					src = &cfg.SNS[i]
				}
			}
			if src == nil {
				return fmt.Errorf("no sns source %q in the configuration", source)
			}
			if topic == "" && len(src.TopicARNs) > 0 {
				topic = src.TopicARNs[0]
			}
			if caFile == "" {
				caFile = src.CAFile
			}
			if caFile == "" {
				return fmt.Errorf("--ca-file is needed (or sns[].ca_file of source %s)", source)
			}
			if caKey == "" {
				caKey = caFile + ".key"
			}
			ca, created, err := simulator.LoadOrCreateCA(caFile, caKey)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "created the simulator's CA in %s (key %s); the receiver reads it at start\n", caFile, caKey)
			}
			if !slices.Contains(src.CertHosts, listen) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: sns source %s does not list %s in cert_hosts: the receiver will refuse the messages\n", source, listen)
			}
			fillS3(&s3, cfg.Archive.SourceS3, cmd)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sim, err := simulator.NewSNSRun(ctx, simulator.SNSConfig{
				Endpoint: f.base(cfg) + "/v1/sns/" + url.PathEscape(source), Source: source, TopicARN: topic,
				Listen: listen, CA: ca, Users: f.users, Rate: f.rate, Duration: f.duration, MaxTasks: f.limit,
				Drain: f.drain, TimeScale: f.timeScale, Retries: retries, RetryDelay: retryDelay,
				SignatureVersion: version, Format: format, Running: running, Duplicates: duplicates, FailRate: f.failRate,
				S3: s3, ConfirmTimeout: confirmTimeout, RunID: f.runID, Seed: f.seed, Progress: f.progress(cmd),
			})
			if err != nil {
				return err
			}
			defer sim.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "run %s: local SNS on https://%s, %d accounts, %.3g tasks/s for %s to %s/v1/sns/%s; images in s3://%s\n",
				sim.Record().RunID, sim.Local().Host(), f.users, f.rate, f.duration, f.base(cfg), source, s3.Bucket)
			start := time.Now()
			if err := sim.Run(ctx); err != nil {
				return err
			}
			return f.finish(ctx, cmd, cfg, "sns", sim.Record().RunID, time.Since(start), sim.Tasks(), "tasks", sim.Stats(), sim.Record())
		},
	}
	f.add(cmd, "tasks", "stop after this many tasks (0: run for --duration)")
	fl := cmd.Flags()
	fl.StringVar(&source, "source", "", "sns source name (default: the first)")
	fl.StringVar(&topic, "topic", "", "topic ARN (default: the source's first)")
	fl.StringVar(&listen, "listen", "127.0.0.1:9443", "HTTPS address of the local SNS (list it in the source's cert_hosts)")
	fl.StringVar(&caFile, "ca-file", "", "the simulator's CA certificate, created when missing (default: the source's ca_file)")
	fl.StringVar(&caKey, "ca-key-file", "", "the CA's private key (default: <ca-file>.key)")
	fl.StringVar(&version, "signature-version", "mixed", "SignatureVersion: 1, 2 or mixed")
	fl.StringVar(&format, "format", "mixed", "message format: legacy ({id, result, …}), current ({runtime, id, status, …}) or mixed")
	fl.BoolVar(&running, "running", true, "send a running message before each result (current format)")
	fl.Float64Var(&duplicates, "duplicates", 0.1, "probability that a task is reported again (redelivery, re-report or late running message)")
	fl.IntVar(&retries, "retries", simulator.DefaultSNSRetries, "delivery retries after a 5xx, a timeout or a transport error")
	fl.DurationVar(&retryDelay, "retry-delay", simulator.DefaultSNSRetryDelay, "delay between delivery retries (times --time-scale)")
	fl.DurationVar(&confirmTimeout, "confirm-timeout", 30*time.Second, "how long to wait for the GET on the SubscribeURL")
	fl.StringVar(&s3.Endpoint, "s3-endpoint", "", "S3/MinIO host:port for the images (default: archive.source_s3.endpoint)")
	fl.StringVar(&s3.Bucket, "s3-bucket", "sd-output", "bucket for the images (created when missing)")
	fl.StringVar(&s3.AccessKey, "s3-access-key", "", "default: archive.source_s3.access_key")
	fl.StringVar(&s3.SecretKey, "s3-secret-key", "", "default: archive.source_s3.secret_key")
	fl.BoolVar(&s3.Secure, "s3-secure", false, "HTTPS to S3 (default: archive.source_s3.secure)")
	return cmd
}

// fillS3 takes what the flags leave empty from archive.source_s3: the
// simulator writes where the archiver reads.
func fillS3(t *simulator.S3Target, c config.S3, cmd *cobra.Command) {
	if t.Endpoint == "" {
		t.Endpoint = c.Endpoint
	}
	if t.AccessKey == "" {
		t.AccessKey = c.AccessKey
	}
	if t.SecretKey == "" {
		t.SecretKey = c.SecretKey.Reveal()
	}
	if !cmd.Flags().Changed("s3-secure") {
		t.Secure = c.Secure
	}
}

func newSimCACmd() *cobra.Command {
	var caFile, caKey string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Create the SNS simulator's CA (certificate and key) if missing, for sns[].ca_file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caKey == "" {
				caKey = caFile + ".key"
			}
			_, created, err := simulator.LoadOrCreateCA(caFile, caKey)
			if err != nil {
				return err
			}
			what := "exists"
			if created {
				what = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA %s: %s (key %s)\n", what, caFile, caKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&caFile, "ca-file", "data/sim-ca.pem", "CA certificate file (what sns[].ca_file names)")
	cmd.Flags().StringVar(&caKey, "ca-key-file", "", "CA key file (default: <ca-file>.key)")
	return cmd
}

// newSimSendCmd signs one callback exactly as the platform does and sends it.
func newSimSendCmd(g *globals) *cobra.Command {
	var (
		target, source, bizType, invokeID, apiID, token, body string
		keyIndex                                              int
	)
	cmd := &cobra.Command{
		Use:   "send",
		Short: "Sign one callback with a configured key pair and POST it",
		Example: `  sdevents sim send --config sdevents.example.yaml --biz-type apiAccessPreInvoke \
    --token user-42 --invoke-id i-2 --body '{"batch_size":2,"n_iter":1}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, src, err := g.loadCallbackSource(source)
			if err != nil {
				return err
			}
			if keyIndex < 0 || keyIndex >= len(src.Keys) {
				return fmt.Errorf("source %q has %d key pairs", src.Name, len(src.Keys))
			}
			key := callback.Key{AK: src.Keys[keyIndex].AK, SK: src.Keys[keyIndex].SK.Reveal()}
			if target == "" {
				target = "http://" + cfg.HTTP.Addr
			}
			p, err := simulator.CallbackSigner{Key: key}.Sign(apiID, bizType, invokeID, token, []byte(body))
			if err != nil {
				return err
			}
			req, err := simulator.NewCallbackRequest(strings.TrimRight(target, "/"), src.Name, p, []byte(body))
			if err != nil {
				return err
			}
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Do(req.WithContext(cmd.Context()))
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", resp.StatusCode, bytes.TrimSpace(out))
			if resp.StatusCode >= 300 {
				return fmt.Errorf("answered %d", resp.StatusCode)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "url", "", "base URL of the ingress (default http://<http.addr>)")
	f.StringVar(&source, "source", "", "callback source name (default: the first)")
	f.IntVar(&keyIndex, "key", 0, "index of the source's key pair to sign with")
	f.StringVar(&bizType, "biz-type", callback.BizTaskFinished, "bizType")
	f.StringVar(&invokeID, "invoke-id", "i-"+strconv.FormatInt(time.Now().UnixNano(), 36), "invokeId")
	f.StringVar(&apiID, "api-id", "api-txt2img", "apiId")
	f.StringVar(&token, "token", "user-1", "the user's token (sent encrypted)")
	f.StringVar(&body, "body", `{"success":true,"data":{"generatedImageId":"g-1","url":"https://images.invalid/a.png","type":"png","width":512,"height":512}}`, "request body (the default image URL never resolves)")
	return cmd
}

// loadCallbackSource loads the configuration and returns it with its
// callback source called name, or the first one when name is empty.
func (g *globals) loadCallbackSource(name string) (config.Config, config.Callback, error) {
	cfg, err := g.load()
	if err != nil {
		return cfg, config.Callback{}, err
	}
	if name == "" && len(cfg.Callbacks) > 0 {
		name = cfg.Callbacks[0].Name
	}
	src, ok := cfg.CallbackSource(name)
	if !ok {
		return cfg, config.Callback{}, fmt.Errorf("no callback source %q in the configuration", name)
	}
	return cfg, src, nil
}
