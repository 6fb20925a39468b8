package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// chromiumPath is Debian's chromium; .ci/run installs it.
const chromiumPath = "/usr/bin/chromium"

// TestConsoleInChromium is the console's end-to-end test: `sdevents run`
// from the example configuration, a signed job through the ingress (a
// reservation, two sdTaskFinished callbacks with images on a loopback
// server, a commit, then sdJobFinished), and headless Chromium that logs in,
// sees the job with its thumbnails, opens it, grants credits through the
// form and sees the balance change. Screenshots are written to
// $SDTEST_ARTIFACTS (else a temporary directory); with
// SDEVENTS_UPDATE_SCREENSHOT=1 the job view also goes to docs/console.png.
func TestConsoleInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console's browser test needs Debian's chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	for _, s := range []string{"ingress", "quota", "archiver", "aggregator", "console"} {
		if _, ok := findTarget(s); !ok || !slices.Contains(runAll(), s) {
			t.Fatalf("%s is not a target of `sdevents run`; the console test needs it", s)
		}
	}

	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hue, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/img/"), ".png"))
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(gradientPNG(t, 768, 512, float64(hue)))
	}))
	defer images.Close()
	host := images.Listener.Addr().(*net.TCPAddr).AddrPort().String()

	cfg := exampleConfig(t, t.TempDir())
	cfg.Archive.AllowHosts = []string{host}
	r := startRun(t, cfg)
	base := "http://" + r.p.http.Addr()
	const token = "user-console-e2e"
	acct := account.FromToken(token)

	// A job: credits granted through the admin API, one reservation and
	// its commit, two images, and the job event once both are archived.
	adminGrant(t, base, cfg, token, 10)
	send := func(biz, invoke, body string) {
		t.Helper()
		if code, ans := sendCallback(t, base, cfg, biz, token, invoke, body); code != http.StatusOK || !strings.Contains(ans, `"success":true`) {
			t.Fatalf("%s %s: %d %s", biz, invoke, code, ans)
		}
	}
	send(callback.BizAPIPreInvoke, "inv-e2e-1", `{"batch_size":2,"n_iter":1}`)
	for i, hue := range []int{210, 20} {
		send(callback.BizTaskFinished, fmt.Sprintf("inv-e2e-1-t%d", i+1), fmt.Sprintf(
			`{"success":true,"data":{"generatedImageId":"g-%d","url":"http://%s/img/%d.png?Expires=1&Signature=IMAGESECRET","type":"png","width":768,"height":512}}`,
			i+1, host, hue))
	}
	send(callback.BizAPICommit, "inv-e2e-1", `{}`)
	natstest.Eventually(t, 30*time.Second, "both images archived", func() bool {
		return streamMsgs(t, r, contract.StreamArchive) == 2
	})
	send(callback.BizJobFinished, "inv-e2e-1", `{"success":true}`)
	natstest.Eventually(t, 30*time.Second, "the job record", func() bool { return streamMsgs(t, r, contract.StreamJobs) == 1 })

	// The browser.
	artifacts := os.Getenv("SDTEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		// Nothing but loopback, whatever Chromium would like to reach.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1360, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first call starts the browser: no deadline on it (it would stop
	// the browser); each later step has one.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			// What the browser shows, for the failure report.
			dctx, dcancel := context.WithTimeout(bctx, 10*time.Second)
			defer dcancel()
			html, _ := chromedp.Run(dctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
			if png, err := chromedp.Run(dctx, chromedp.FullScreenshot(100)); err == nil {
				_ = os.WriteFile(filepath.Join(artifacts, "console-failure.png"), png, 0o644)
			}
			t.Fatalf("browser: %s: %v\npage (screenshot in %s):\n%s", what, err, artifacts, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	eval := func(expr string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("browser: %s: %v", expr, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 = PNG
		if err != nil {
			t.Fatalf("browser: screenshot: %v", err)
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	imagesLoaded := func(sel string, n int) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const i = [...document.querySelectorAll(%q)];
			return i.length === %d && i.every(x => x.complete && x.naturalWidth > 0) })()`, sel, n),
			chromedp.WithPollingTimeout(20*time.Second))
	}

	step("a wrong token",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`#login-form`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), "wrong-token"),
		// The first page already shows an error ("log in"): mark it, so
		// that what follows waits for the answer to the form.
		chromedp.Evaluate[chromedp.Void](`document.body.setAttribute('data-stale', '1')`),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitNotPresent(chromedp.CSS(`body[data-stale]`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-error`)),
	)
	loginStatus := eval(`performance.getEntriesByType("navigation")[0].responseStatus`)
	step("log in and see the job with its thumbnails",
		chromedp.SendKeys(chromedp.CSS(`#token`), cfg.Admin.Token.Reveal()),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr.job`)),
		imagesLoaded(`#jobs img.thumb`, 2),
	)
	thumbWidth := eval(`document.querySelector('#jobs img.thumb').naturalWidth`)
	shot("console-jobs.png")

	step("open the job",
		chromedp.Click(chromedp.CSS(`#jobs tr.job a`)),
		chromedp.WaitVisible(chromedp.CSS(`#credits`)),
		imagesLoaded(`img.preview`, 2),
	)
	previewWidth := eval(`document.querySelector('img.preview').naturalWidth`)
	credits := text(`#credits`)
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	shot("console-job.png")

	step("open the account", chromedp.Click(chromedp.CSS(`dd.mono a`)), chromedp.WaitVisible(chromedp.CSS(`#balance`)))
	balanceBefore := text(`#balance`)
	step("grant 5 credits",
		chromedp.SendKeys(chromedp.CSS(`#grant-credits`), "5"),
		chromedp.Click(chromedp.CSS(`#grant`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	flash, balanceAfter := text(`#flash`), text(`#balance`)
	shot("console-account.png")

	step("the live view", chromedp.Navigate(base+"/console/live"), chromedp.WaitVisible(chromedp.CSS(`#tail li`)))
	shot("console-live.png")

	if loginStatus != http.StatusUnauthorized {
		t.Errorf("a wrong token answered %d, want 401", loginStatus)
	}
	if thumbWidth != 160 || previewWidth != 480 {
		t.Errorf("thumbnail %d px wide, preview %d px; want 160 and 480 (scaled from 768)", thumbWidth, previewWidth)
	}
	if !strings.Contains(credits, "reserved 2") || !strings.Contains(credits, "committed 2") {
		t.Errorf("job credits: %q", credits)
	}
	for _, want := range []string{acct, "inv-e2e-1-t1", "inv-e2e-1-t2", "sdJobFinished", "sd-api-token"} {
		if !strings.Contains(page, want) {
			t.Errorf("job page lacks %q", want)
		}
	}
	for _, secret := range []string{token, "IMAGESECRET", cfg.Admin.Token.Reveal()} {
		if i := strings.Index(page, secret); i >= 0 {
			t.Errorf("job page shows %q: …%s…", secret, page[max(0, i-300):min(len(page), i+100)])
		}
	}
	if balanceBefore != "8" || balanceAfter != "13" || !strings.Contains(flash, "Granted 5") {
		t.Errorf("balance %q, then %q after granting 5 (%q); want 8 then 13", balanceBefore, balanceAfter, flash)
	}

	if os.Getenv("SDEVENTS_UPDATE_SCREENSHOT") == "1" {
		raw, err := os.ReadFile(filepath.Join(artifacts, "console-job.png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console.png"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("updated docs/console.png")
	}
}

// TestConsoleCommandNeedsAdminToken: `sdevents console` refuses to start
// without an admin token, and needs an external NATS.
func TestConsoleCommandNeedsAdminToken(t *testing.T) {
	t.Parallel()
	_, _, err := sdevents(t, []string{"SDEVENTS_ADMIN_TOKEN=", "SDEVENTS_NATS_URL=nats://127.0.0.1:1"}, "console")
	if err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Fatalf("console without a token: %v", err)
	}
	_, _, err = sdevents(t, []string{"SDEVENTS_ADMIN_TOKEN=x"}, "console")
	if err == nil || !strings.Contains(err.Error(), "nats.url") {
		t.Fatalf("console without an external NATS: %v", err)
	}
}

// TestRunWithoutAdminTokenHasNoConsole: the console is off without a token.
func TestRunWithoutAdminTokenHasNoConsole(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	cfg.Admin.Token = ""
	r := startRun(t, cfg)
	resp, err := http.Get("http://" + r.p.http.Addr() + "/console/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/console/jobs without admin.token: %d, want 404", resp.StatusCode)
	}
}

// TestOneBrakeForAdminTokens: the operator API and the console count wrong
// admin tokens on one brake, built once by the composition root: wrong
// tokens split between the console's bearer header, its login form and the
// admin API use up the client's tries on both, and the right token is then
// refused (429) on either.
func TestOneBrakeForAdminTokens(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	r := startRun(t, cfg)
	base := "http://" + r.p.http.Addr()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(c *http.Client, method, path, token string, form url.Values) *http.Response {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// The login form's pre-session CSRF token.
	page := httptest.NewRecorder()
	resp, err := browser.Get(base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(page, resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.Body.String())
	if m == nil {
		t.Fatal("no CSRF token in the login form")
	}
	for i := range admintoken.MaxFailures {
		guess := fmt.Sprintf("guess-%d", i)
		var a *http.Response
		switch i % 3 {
		case 0:
			a = call(http.DefaultClient, http.MethodGet, "/v1/admin/accounts/_", guess, nil)
		case 1:
			a = call(http.DefaultClient, http.MethodGet, "/console/jobs", guess, nil)
		default:
			a = call(browser, http.MethodPost, "/console/login", "", url.Values{"csrf": {m[1]}, "token": {guess}})
		}
		if a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, a.StatusCode)
		}
	}
	token := cfg.Admin.Token.Reveal()
	for name, a := range map[string]*http.Response{
		"admin API":     call(http.DefaultClient, http.MethodGet, "/v1/admin/accounts/_", token, nil),
		"console":       call(http.DefaultClient, http.MethodGet, "/console/jobs", token, nil),
		"console login": call(browser, http.MethodPost, "/console/login", "", url.Values{"csrf": {m[1]}, "token": {token}}),
	} {
		if a.StatusCode != http.StatusTooManyRequests || a.Header.Get("Retry-After") == "" {
			t.Errorf("%s after %d wrong tokens on both: %d, Retry-After %q; want 429", name, admintoken.MaxFailures, a.StatusCode, a.Header.Get("Retry-After"))
		}
	}
}

// gradientPNG draws a w×h gradient around hue (degrees).
func gradientPNG(t *testing.T, w, h int, hue float64) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			r, g, b := hsv(hue+60*fx, 0.35+0.5*fy, 0.95-0.35*fy*fx)
			img.Set(x, y, color.NRGBA{r, g, b, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func hsv(h, s, v float64) (uint8, uint8, uint8) {
	h = math.Mod(h, 360)
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g = c, x
	case h < 120:
		r, g = x, c
	case h < 180:
		g, b = c, x
	case h < 240:
		g, b = x, c
	case h < 300:
		r, b = x, c
	default:
		r, b = c, x
	}
	return uint8((r + m) * 255), uint8((g + m) * 255), uint8((b + m) * 255)
}

// sendCallback signs and sends one callback as the platform does.
func sendCallback(t *testing.T, base string, cfg config.Config, bizType, token, invokeID, body string) (int, string) {
	t.Helper()
	key := callback.Key{AK: cfg.Callbacks[0].Keys[0].AK, SK: cfg.Callbacks[0].Keys[0].SK.Reveal()}
	enc, err := callback.EncryptToken(token, key.SK, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := callback.Params{APIID: "api-e2e", BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(key, p, []byte(body), token)
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	resp, err := http.Post(base+"/v1/callbacks/default?"+q.Encode(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// adminGrant grants credits to the account of token through the admin API.
func adminGrant(t *testing.T, base string, cfg config.Config, token string, credits int) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"credits": credits})
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/accounts/"+url.PathEscape("token:"+token)+"/credits", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grant: %d", resp.StatusCode)
	}
}

func streamMsgs(t *testing.T, r *running, name string) uint64 {
	t.Helper()
	s, err := r.p.js.Stream(t.Context(), name)
	if err != nil {
		return 0
	}
	info, err := s.Info(t.Context())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestConsoleGrantsThroughQuotaReplicas: `sdevents console`, a process of its
// own connected as the console's NATS user, grants through the quota
// replica of another process (`sdevents run` here) over NATS, with the
// quota's rules: a repeated id changes nothing, zero credits and a reused
// id are 400, a removal beyond the balance 409. The account page shows the
// replica's balance, and the replica decided every grant (its grant
// decisions count them): the console keeps no ledger of its own.
func TestConsoleGrantsThroughQuotaReplicas(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	r := startRun(t, cfg)
	alone, err := config.Load(filepath.Join("..", "..", "sdevents.example.yaml"), config.EnvFrom(append(r.natsEnv(natsauth.Console),
		"SDEVENTS_HTTP_ADDR=127.0.0.1:0", "SDEVENTS_LOG_LEVEL=warn", "SDEVENTS_ARCHIVE_DIR="+cfg.Archive.Dir)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, cleanup, err := build(ctx, alone, []string{"console"})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("console: %v", err)
		}
	}()
	base := "http://" + p.http.Addr()
	waitHTTPReady(t, p.http.Addr())

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, path string, form url.Values) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+alone.Admin.Token.Reveal())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(raw)
	}
	grant := func(credits, id string) (int, string, string) {
		return call(http.MethodPost, "/console/accounts/grant", url.Values{"account": {"token:user-split"}, "credits": {credits}, "id": {id}})
	}
	acct := account.FromToken("user-split")
	if code, loc, body := grant("7", "g-split"); code != http.StatusSeeOther || loc != "/console/accounts/"+acct+"?granted=7" {
		t.Fatalf("grant: %d %q %s", code, loc, body)
	}
	if code, loc, _ := grant("7", "g-split"); code != http.StatusSeeOther || !strings.Contains(loc, "repeat=1") {
		t.Fatalf("repeated grant: %d %q", code, loc)
	}
	for _, tc := range []struct {
		name, credits, id string
		want              int
		msg               string
	}{
		{"zero credits", "0", "", http.StatusBadRequest, "zero"},
		{"id reused for other credits", "3", "g-split", http.StatusBadRequest, "already used"},
		{"removal beyond the balance", "-100", "", http.StatusConflict, "cannot remove"},
	} {
		if code, _, body := grant(tc.credits, tc.id); code != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.name, code, tc.want, tc.msg, body)
		}
	}
	if code, _, body := call(http.MethodGet, "/console/accounts/"+acct, nil); code != http.StatusOK ||
		!strings.Contains(body, `<dd id="balance" class="num">7</dd>`) || !strings.Contains(body, "g-split") {
		t.Fatalf("account page: %d\n%s", code, body)
	}
	if n := grantDecisions(t, r.p); n != 5 {
		t.Fatalf("the quota replica of `sdevents run` decided %v grants, want all 5", n)
	}
}

// grantDecisions is the number of grants p's quota replica decided.
func grantDecisions(t *testing.T, p *process) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "sdevents_quota_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "grant" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
