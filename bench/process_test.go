package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natsrv"
	"github.com/sdevents/sdevents/pkg/proctest"
	"github.com/sdevents/sdevents/streams"
)

// The load of BenchmarkProcess: task results of processAccounts accounts
// over conns connections, for BENCH_PROCESS_DURATION.
const (
	processAccounts = 64
	exampleConfig   = "../sdevents.example.yaml"
)

// envDuration reads a duration from the environment, for quick runs.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration such as 10s", name, v)
	}
	return d
}

// BenchmarkProcess measures `sdevents run` as users run it: the binary built
// from cmd/sdevents, started with sdevents.example.yaml (temporary store and
// archive directories, free ports, the local image server allowed), every
// service on. The load is a closed loop of signed sdTaskFinished callbacks
// from 64 accounts over 64 connections, each naming one image on a local
// HTTP server, none followed by sdJobFinished, for BENCH_PROCESS_DURATION
// (default 60s). After the load it waits until every durable consumer of
// the process has caught up (num_pending + num_ack_pending = 0, at most
// BENCH_PROCESS_CATCHUP_MAX, default 10m) and checks that every accepted
// callback is in INGRESS and its image archived. SDEVENTS_* variables in
// the environment change the example's configuration as they would for
// `make run` (for example SDEVENTS_AGGREGATOR_KEY=invoke_id).
//
// The floor, in the same run and before the process: a minimal net/http
// handler publishing the raw body to an embedded JetStream with no checks,
// same load, same duration.
//
// Reported: requests/s and p50/p99 of both, the ratio, the time consumers
// needed to catch up (all, archiver, aggregator) and their backlog when the
// load ended, the binary's CPU seconds (user, system; load and catch-up,
// from /proc/<pid>/stat), CPU per request of both and its ratio, and the
// binary's peak RSS. The binary is built with
// `-tags pprof` (cmd/sdevents/pprof.go: a pprof listener on the loopback
// address in PPROF_ADDR, which release builds do not have) and a CPU profile of the load is written to
// BENCH_PROCESS_PROFILE (default: a file in the temporary directory, named
// in the log). BENCH_PROCESS_CATCHUP_PROFILE=<duration> also profiles the
// first part of the catch-up.
func BenchmarkProcess(b *testing.B) {
	d := envDuration(b, "BENCH_PROCESS_DURATION", 60*time.Second)
	catchUpMax := envDuration(b, "BENCH_PROCESS_CATCHUP_MAX", 10*time.Minute)
	var catchUpProfile time.Duration
	if os.Getenv("BENCH_PROCESS_CATCHUP_PROFILE") != "" {
		catchUpProfile = envDuration(b, "BENCH_PROCESS_CATCHUP_PROFILE", 0)
	}
	profilePath := os.Getenv("BENCH_PROCESS_PROFILE")
	if profilePath == "" {
		profilePath = filepath.Join(os.TempDir(), "sdevents-process-"+time.Now().Format("20060102-150405")+".cpu.pprof")
	}
	cfg, err := config.Load(exampleConfig, config.EnvFrom(os.Environ()))
	if err != nil {
		b.Fatal(err)
	}
	bin := buildProcess(b)
	imageHost := serveTaskImage(b)
	for range b.N {
		load := newTaskLoad(b, cfg, imageHost)
		b.Logf("load average before: %s", loadAvg())

		floor, floorCPU := runProcessFloor(b, load, d)
		b.Logf("floor:   %v; CPU of the benchmark process (load generator, floor, its JetStream) %.1f s", floor, floorCPU.Seconds())

		p := startProcess(b, bin, imageHost)
		got := p.measure(b, load, d, catchUpMax, profilePath, catchUpProfile)
		p.stop(b)
		b.Logf("load average after: %s", loadAvg())

		if floor.Errors > 0 || got.Errors > 0 {
			b.Errorf("errors: floor %d, process %d", floor.Errors, got.Errors)
		}
		b.ReportMetric(got.PerSecond(), "req/s")
		b.ReportMetric(floor.PerSecond(), "floor-req/s")
		b.ReportMetric(got.PerSecond()/floor.PerSecond(), "ratio")
		b.ReportMetric(ms(got.P50), "p50-ms")
		b.ReportMetric(ms(got.P99), "p99-ms")
		b.ReportMetric(ms(floor.P50), "floor-p50-ms")
		b.ReportMetric(ms(floor.P99), "floor-p99-ms")
		b.ReportMetric(got.catchUp.Seconds(), "catchup-s")
		b.ReportMetric(got.catchUpOf["archiver"].Seconds(), "archiver-catchup-s")
		b.ReportMetric(got.catchUpOf["aggregator"].Seconds(), "aggregator-catchup-s")
		b.ReportMetric(got.cpuLoad.user, "load-user-cpu-s")
		b.ReportMetric(got.cpuLoad.sys, "load-sys-cpu-s")
		b.ReportMetric(got.cpuCatchUp.user+got.cpuCatchUp.sys, "catchup-cpu-s")
		// CPU per request swings less with other work on the machine than
		// throughput does. The floor's is the benchmark process's (load
		// generator, handler, JetStream); the process's is its own over
		// the load and the catch-up plus the benchmark process's during
		// the load (load generator, image source).
		floorCPUPerReq := floorCPU.Seconds() * 1e6 / float64(max(1, floor.Requests))
		procCPUPerReq := (got.cpuLoad.user + got.cpuLoad.sys + got.cpuCatchUp.user + got.cpuCatchUp.sys) * 1e6 / float64(max(1, got.Requests))
		b.ReportMetric(procCPUPerReq, "cpu-µs/req")
		b.ReportMetric(floorCPUPerReq, "floor-cpu-µs/req")
		b.ReportMetric(floorCPUPerReq/(procCPUPerReq+got.benchCPU.Seconds()*1e6/float64(max(1, got.Requests))), "cpu-ratio")
		b.ReportMetric(float64(got.peakRSS)/(1<<20), "peak-rss-MB")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// buildProcess builds cmd/sdevents with -tags pprof into a temporary
// directory, as `make build` does otherwise (-trimpath, CGO off).
func buildProcess(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "sdevents")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "pprof", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "cmd", "sdevents")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveTaskImage serves one 64×64 PNG (about 4 KiB of noise, so that it
// does not compress away) at every path under /img/ on loopback, and returns
// its host:port.
func serveTaskImage(b *testing.B) string {
	b.Helper()
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.UintN(256))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		b.Fatal(err)
	}
	body, size := buf.Bytes(), strconv.Itoa(buf.Len())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/img/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", size)
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()
}

// taskLoad builds the signed sdTaskFinished callbacks of the benchmark: the
// i-th is from account i mod 64, with its own invokeId, nonce and image.
type taskLoad struct {
	key       callback.Key
	source    string
	tokens    []string
	encs      []string // query-escaped encrypted tokens
	imageHost string
}

func newTaskLoad(b *testing.B, cfg config.Config, imageHost string) *taskLoad {
	b.Helper()
	src := cfg.Callbacks[0]
	l := &taskLoad{key: callback.Key{AK: src.Keys[0].AK, SK: src.Keys[0].SK.Reveal()}, source: src.Name, imageHost: imageHost}
	for k := range processAccounts {
		tok := "bench-user-" + strconv.Itoa(k)
		enc, err := callback.EncryptToken(tok, l.key.SK, nil)
		if err != nil {
			b.Fatal(err)
		}
		l.tokens = append(l.tokens, tok)
		l.encs = append(l.encs, url.QueryEscape(enc))
	}
	return l
}

// against returns the request builder for RunFor, posting to base (a URL
// without query); run prefixes every id, so that two phases never send the
// same invokeId, nonce or image.
func (l *taskLoad) against(base, run string) func(int) Request {
	return func(i int) Request {
		k := i % processAccounts
		n := run + "-" + strconv.Itoa(i)
		body := make([]byte, 0, 192)
		body = append(body, `{"success":true,"data":{"generatedImageId":"g-`...)
		body = append(body, n...)
		body = append(body, `","url":"http://`...)
		body = append(body, l.imageHost...)
		body = append(body, "/img/"...)
		body = strconv.AppendInt(body, int64(k), 10)
		body = append(body, '/')
		body = append(body, n...)
		body = append(body, `.png","type":"png","width":"64","height":64}}`...)
		p := callback.Params{APIID: "api-txt2img", BizType: callback.BizTaskFinished, InvokeID: "i-" + n,
			Nonce: n, Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
		sign := callback.Sign(l.key, p, body, l.tokens[k])
		q := "apiId=" + p.APIID + "&bizType=" + p.BizType + "&invokeId=" + p.InvokeID + "&apiToken=" + l.encs[k] +
			"&sign=" + url.QueryEscape(sign) + "&nonce=" + p.Nonce + "&timestamp=" + p.Timestamp
		return Request{URL: base + "?" + q, Body: body}
	}
}

// runProcessFloor runs the load for d against the floor: an embedded
// JetStream (the same streams, sync interval as in the example) and a
// net/http handler that publishes the raw body and answers after the ack.
// Both are stopped before it returns. It returns the CPU time the benchmark
// process spent meanwhile.
func runProcessFloor(b *testing.B, l *taskLoad, d time.Duration) (Result, time.Duration) {
	b.Helper()
	srv, err := natsrv.Start(natsrv.Options{Addr: "127.0.0.1:0", StoreDir: filepath.Join(b.TempDir(), "floor"),
		SyncInterval: 2 * time.Minute, MaxPayload: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := streams.ApplyEmbedded(context.Background(), js, 1); err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: floorHandler(js)}
	ln, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	c0 := cpuTime()
	res := RunFor(context.Background(), l.against("http://"+ln.Addr().String()+"/floor", "floor"), conns, d)
	return res, cpuTime() - c0
}

// process is a running `sdevents run`.
type process struct {
	cmd      *exec.Cmd
	exited   chan error
	log      string
	httpAddr string
	natsURL  string
	storeDir string // the embedded server's, where its users' passwords are
	pprof    string // base URL of the pprof endpoints
}

// startProcess starts bin as `sdevents run --config sdevents.example.yaml`
// with the overrides an operator would give it through the environment, and
// returns once /readyz answers 200. The process is killed when the benchmark
// ends if stop was not called.
func startProcess(b *testing.B, bin, imageHost string) *process {
	b.Helper()
	dir := b.TempDir()
	ports := proctest.FreePorts(b, 3)
	p := &process{
		log:      filepath.Join(dir, "sdevents.log"),
		httpAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		natsURL:  "nats://127.0.0.1:" + strconv.Itoa(ports[1]),
		storeDir: filepath.Join(dir, "nats"),
		pprof:    "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/debug/pprof/",
		exited:   make(chan error, 1),
	}
	logFile, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", exampleConfig)
	// SDEVENTS_* variables of the environment reach the process as they
	// would under `make run`; the ones set here come last and win.
	p.cmd.Env = append(os.Environ(),
		"SDEVENTS_HTTP_ADDR="+p.httpAddr,
		"SDEVENTS_NATS_EMBEDDED_ADDR=127.0.0.1:"+strconv.Itoa(ports[1]),
		"SDEVENTS_NATS_EMBEDDED_STORE_DIR="+p.storeDir,
		"SDEVENTS_ARCHIVE_DIR="+filepath.Join(dir, "archive"),
		"SDEVENTS_ARCHIVE_ALLOW_HOSTS="+imageHost,
		"PPROF_ADDR=127.0.0.1:"+strconv.Itoa(ports[2]), // cmd/sdevents/pprof.go
	)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		b.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait(); logFile.Close() }()
	b.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-p.exited:
			b.Fatalf("sdevents run exited: %v\n%s", err, tail(p.log, 20))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("sdevents run not ready after 2 minutes\n%s", tail(p.log, 20))
		}
		if ready(p.httpAddr) {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(b *testing.B) {
	b.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			b.Errorf("sdevents run after SIGTERM: %v\n%s", err, tail(p.log, 20))
		}
	case <-time.After(2 * time.Minute):
		b.Errorf("sdevents run still running 2 minutes after SIGTERM")
	}
}

// cpuSeconds is CPU time of a process, in seconds.
type cpuSeconds struct{ user, sys float64 }

func (c cpuSeconds) sub(o cpuSeconds) cpuSeconds { return cpuSeconds{c.user - o.user, c.sys - o.sys} }

// procCPU reads utime and stime of pid from /proc/<pid>/stat (clock ticks
// of 1/100 s, the value of USER_HZ on Linux).
func procCPU(b *testing.B, pid int) cpuSeconds {
	b.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime and stime the 12th and 13th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	user, _ := strconv.ParseFloat(f[11], 64)
	sys, _ := strconv.ParseFloat(f[12], 64)
	return cpuSeconds{user / 100, sys / 100}
}

// procIO returns the process's wchar (bytes written through write calls)
// and write_bytes (bytes it caused to be sent to storage) from
// /proc/<pid>/io.
func procIO(pid int) (wchar, storage int64) {
	raw, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			wchar, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			storage, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return wchar, storage
}

// peakRSS returns VmHWM of pid in bytes.
func peakRSS(pid int) int64 {
	raw, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// processFigures is what one run of the process measured.
type processFigures struct {
	Result
	catchUp    time.Duration            // until every durable consumer had caught up
	catchUpOf  map[string]time.Duration // by consumer name
	cpuLoad    cpuSeconds
	cpuCatchUp cpuSeconds
	benchCPU   time.Duration // of the benchmark process during the load
	peakRSS    int64
}

// measure runs the load for d against the process while taking a CPU
// profile of it, then waits for its consumers to catch up and checks that
// every accepted callback was stored and its image archived.
func (p *process) measure(b *testing.B, l *taskLoad, d, catchUpMax time.Duration, profilePath string, catchUpProfile time.Duration) processFigures {
	b.Helper()
	// The embedded server admits its own users only; reading every
	// consumer's state takes the admin's.
	pw, err := natsauth.ReadPassword(filepath.Join(p.storeDir, "credentials"), natsauth.Admin)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(p.natsURL, nats.UserInfo(natsauth.Admin, pw), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.Admin)))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	consumers := durableConsumers(b, js)
	pid := p.cmd.Process.Pid

	profiled := make(chan error, 1)
	go func() { profiled <- p.profile(d, profilePath) }()
	c0, self0 := procCPU(b, pid), cpuTime()
	w0, s0 := procIO(pid)
	// Requests sent and images archived per window of the load: rates that
	// fall show a cost per request that grows with what the process holds.
	next := l.against("http://"+p.httpAddr+"/v1/callbacks/"+l.source, "proc")
	var sent atomic.Int64
	window := max(time.Second, d/6)
	windows := make(chan string, 1)
	loaded := make(chan struct{})
	go func() {
		var rates, archived []string
		t := time.NewTicker(window)
		defer t.Stop()
		var lastSent, lastArchived uint64
		perSecond := func(n uint64) string { return strconv.FormatFloat(float64(n)/window.Seconds(), 'f', 0, 64) }
		for {
			select {
			case <-t.C:
				n, a := uint64(sent.Load()), max(lastArchived, lastSeq(js, contract.StreamArchive))
				rates, archived = append(rates, perSecond(n-lastSent)), append(archived, perSecond(a-lastArchived))
				lastSent, lastArchived = n, a
			case <-loaded:
				windows <- fmt.Sprintf("requests/s per %s: %s; images archived/s: %s", window, strings.Join(rates, ", "), strings.Join(archived, ", "))
				return
			}
		}
	}()
	res := RunFor(context.Background(), func(i int) Request { sent.Add(1); return next(i) }, conns, d)
	close(loaded)
	c1, self1 := procCPU(b, pid), cpuTime()
	w1, s1 := procIO(pid)
	b.Logf("process: %v; %s", res, <-windows)
	fig := processFigures{Result: res, cpuLoad: c1.sub(c0), benchCPU: self1 - self0, catchUpOf: map[string]time.Duration{}}
	b.Logf("during the load: process CPU %.1f s user + %.1f s system, %.0f MB written (%.0f MB to storage); CPU of the benchmark process (load generator, image source) %.1f s",
		fig.cpuLoad.user, fig.cpuLoad.sys, float64(w1-w0)/1e6, float64(s1-s0)/1e6, fig.benchCPU.Seconds())

	// Catch-up: from the end of the load until every durable consumer has
	// nothing pending and nothing unacknowledged.
	ended := time.Now()
	if catchUpProfile > 0 {
		go func() {
			profiled <- p.profile(catchUpProfile, strings.TrimSuffix(profilePath, ".cpu.pprof")+".catchup.cpu.pprof")
		}()
	}
	backlog := map[string]uint64{}
	for {
		left := 0
		for _, c := range consumers {
			n, err := c.outstanding(js)
			if err != nil {
				b.Fatal(err)
			}
			if _, seen := backlog[c.name]; !seen {
				backlog[c.name] = n
			}
			if _, done := fig.catchUpOf[c.name]; !done && n == 0 {
				fig.catchUpOf[c.name] = time.Since(ended)
			}
			if n > 0 {
				left++
				delete(fig.catchUpOf, c.name) // back to work: not caught up yet
			}
		}
		if left == 0 {
			fig.catchUp = time.Since(ended)
			break
		}
		if time.Since(ended) > catchUpMax {
			fig.catchUp = time.Since(ended)
			b.Errorf("consumers not caught up %s after the load", catchUpMax)
			for _, c := range consumers {
				if _, done := fig.catchUpOf[c.name]; !done {
					fig.catchUpOf[c.name] = fig.catchUp
				}
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fig.cpuCatchUp = procCPU(b, pid).sub(c1)
	fig.peakRSS = peakRSS(pid)
	b.Logf("backlog when the load ended: %v; caught up after %s: %v; process CPU meanwhile %.1f s user + %.1f s system; peak RSS %.0f MB",
		backlog, fig.catchUp.Round(time.Millisecond), fig.catchUpOf, fig.cpuCatchUp.user, fig.cpuCatchUp.sys, float64(fig.peakRSS)/(1<<20))

	profiles := 1
	if catchUpProfile > 0 {
		profiles++
	}
	for range profiles {
		if err := <-profiled; err != nil {
			b.Errorf("profile: %v", err)
		}
	}

	logStreams(b, js)
	stored := subjectCount(b, js, contract.StreamIngress, "sd.callback."+l.source+".sdTaskFinished")
	archived := subjectCount(b, js, contract.StreamArchive, contract.SubjectArchiveStored+">")
	failed := subjectCount(b, js, contract.StreamArchive, contract.SubjectArchiveFailed+">")
	b.Logf("accepted %d, in INGRESS %d, archived %d, failed %d; CPU profile of the load: go tool pprof -top %s",
		res.Requests-res.Errors, stored, archived, failed, profilePath)
	if ok := uint64(res.Requests - res.Errors); stored < ok || stored > uint64(res.Requests) || archived != stored || failed != 0 {
		b.Errorf("accepted %d of %d: %d in INGRESS, %d images archived, %d failed", ok, res.Requests, stored, archived, failed)
	}
	return fig
}

// profile writes a CPU profile of the process over d to path.
func (p *process) profile(d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	client := &http.Client{Timeout: time.Duration(secs)*time.Second + time.Minute}
	resp, err := client.Get(p.pprof + "profile?seconds=" + strconv.Itoa(secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// consumerRef names a durable consumer of a stream.
type consumerRef struct{ stream, name string }

// durableConsumers lists the durable consumers of every stream of the
// process (the services' inputs; the ordered consumers that rebuild
// indexes are not among them).
func durableConsumers(b *testing.B, js jetstream.JetStream) []consumerRef {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var refs []consumerRef
	names := js.StreamNames(ctx)
	for s := range names.Name() {
		st, err := js.Stream(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		list := st.ListConsumers(ctx)
		for ci := range list.Info() {
			if ci.Config.Durable != "" {
				refs = append(refs, consumerRef{s, ci.Name})
			}
		}
		if err := list.Err(); err != nil {
			b.Fatal(err)
		}
	}
	if err := names.Err(); err != nil {
		b.Fatal(err)
	}
	for _, want := range []string{"archiver", "aggregator"} {
		found := false
		for _, r := range refs {
			found = found || r.stream == contract.StreamIngress && r.name == want
		}
		if !found {
			b.Fatalf("no durable consumer %s on %s among %v", want, contract.StreamIngress, refs)
		}
	}
	return refs
}

// outstanding returns the consumer's num_pending + num_ack_pending.
func (c consumerRef) outstanding(js jetstream.JetStream) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, c.stream, c.name)
	if err != nil {
		return 0, fmt.Errorf("consumer %s/%s: %w", c.stream, c.name, err)
	}
	ci := cons.CachedInfo()
	return ci.NumPending + uint64(ci.NumAckPending), nil
}

// logStreams logs the messages written to each stream of the process (its
// last sequence) and the bytes it holds: where the store's writes went.
func logStreams(b *testing.B, js jetstream.JetStream) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var parts []string
	list := js.ListStreams(ctx)
	for si := range list.Info() {
		if si.State.LastSeq > 0 {
			parts = append(parts, fmt.Sprintf("%s %d written, %d held, %.1f MB", si.Config.Name, si.State.LastSeq, si.State.Msgs, float64(si.State.Bytes)/1e6))
		}
	}
	if err := list.Err(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(parts)
	b.Logf("streams: %s", strings.Join(parts, "; "))
}

// lastSeq returns the last sequence of stream, 0 when it cannot be read.
func lastSeq(js jetstream.JetStream, stream string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.LastSeq
}

// subjectCount returns the number of messages of stream on subjects
// matching filter.
func subjectCount(b *testing.B, js jetstream.JetStream, stream, filter string) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		b.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}
