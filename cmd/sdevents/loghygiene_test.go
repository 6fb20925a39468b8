package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
	"github.com/sdevents/sdevents/services/simulator"
)

// logTime is a log line's time: RFC 3339, UTC, with milliseconds.
var logTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// unitless are duration field names without their unit.
var unitless = map[string]bool{"took": true, "wait": true, "retry_in": true, "delay": true, "duration": true, "elapsed": true, "latency": true}

// TestLogHygiene runs the built binary's `sdevents run` with JSON logs at
// debug level, drives callbacks (stored, repeated, synchronous, refused), an
// SNS notification and admin calls through it, stops it, and reads every
// line of its log: each is JSON with service and a time in milliseconds, no
// duration field lacks its unit, a field keeps one JSON type across lines,
// request lines carry the request id the answer echoed, and the lines of
// stored requests the event's ce_id and INGRESS seq.
func TestLogHygiene(t *testing.T) {
	bin := proctest.Build(t, ".", "sdevents")
	dir := t.TempDir()
	httpAddr, natsAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	ca, err := simulator.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	local, err := simulator.NewLocalSNS("127.0.0.1:0", ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, local.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	const topic = "arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"
	cfgPath := filepath.Join(dir, "sdevents.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`http:
  addr: %s
nats:
  embedded:
    addr: %s
    store_dir: %s
callbacks:
  - name: default
    keys: [{ak: AK-log, sk: SK-log}]
sns:
  - name: eks
    topic_arns: [%q]
    cert_hosts: [%q]
    ca_file: %s
admin:
  token: log-admin-token
archive:
  dir: %s
log:
  level: debug
  format: json
shutdown_timeout: 5s
`, httpAddr, natsAddr, filepath.Join(dir, "nats"), topic, local.Host(), caFile, filepath.Join(dir, "archive")))

	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitHTTPReady(t, httpAddr)

	d := driver{t: t, base: "http://" + httpAddr, key: callback.Key{AK: "AK-log", SK: "SK-log"}}
	d.admin(http.MethodPost, "/v1/admin/accounts/token:user-log/credits", `{"credits": 10, "id": "g-log"}`, "req-admin-grant")
	d.admin(http.MethodGet, "/v1/admin/accounts/token:user-log", "", "")
	task := `{"success":true,"data":{"generatedImageId":"g-1","url":"http://127.0.0.1:9/a.png"}}`
	d.callback(callback.BizTaskFinished, "i-log-1", task, "n1", "req-cb-1", true)
	d.callback(callback.BizTaskFinished, "i-log-1", task, "n2", "", true)                                // a retry: duplicate
	d.callback(callback.BizAPIPreInvoke, "i-log-2", `{"batch_size":1,"n_iter":1}`, "n3", "bad id", true) // sync, decided by quota
	d.callback(callback.BizTaskFinished, "i-log-3", task, "n4", strings.Repeat("r", 129), false)         // a wrong signature
	env, err := local.Notification(topic, `{"id":"t-log-1","status":"running"}`, nil, "1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(env)
	d.post("/v1/sns/eks", "text/plain; charset=UTF-8", body, "req-sns-1", map[string]string{"x-amz-sns-message-type": env.Type})

	// Wait for every request's line and for the consumers to act on the
	// events (the archiver gives the loopback image up; the aggregator
	// handles the task results), then stop the process cleanly.
	natstest.Eventually(t, time.Minute, "the consumers' log lines", func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte(`"message":"archive failed"`)) && bytes.Contains(b, []byte(`"message":"aggregator message"`)) &&
			bytes.Count(b, []byte(`"message":"request"`)) >= len(d.sent)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("sdevents run exited with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sdevents run did not stop on SIGTERM")
	}

	lines := readLogLines(t, logPath)
	types := map[string]string{} // field → JSON type, with the first line that had it
	typeLine := map[string]int{}
	services := map[string]bool{}
	byRequest := map[string]map[string]any{}
	for i, l := range lines {
		svc, _ := l["service"].(string)
		if svc == "" {
			t.Errorf("line %d has no service: %v", i+1, l)
		}
		services[svc] = true
		if ts, _ := l["time"].(string); !logTime.MatchString(ts) {
			t.Errorf("line %d: time %v is not RFC 3339 UTC with milliseconds", i+1, l["time"])
		}
		for k, v := range l {
			if unitless[k] {
				t.Errorf("line %d: duration field %q does not name its unit: %v", i+1, k, l)
			}
			typ := jsonType(v)
			if (strings.HasSuffix(k, "_ms") || strings.HasSuffix(k, "_seconds")) && typ != "number" {
				t.Errorf("line %d: %s is a %s, want a number", i+1, k, typ)
			}
			if prev, ok := types[k]; ok && prev != typ {
				t.Errorf("field %q is a %s on line %d and a %s on line %d", k, prev, typeLine[k], typ, i+1)
			} else if !ok {
				types[k], typeLine[k] = typ, i+1
			}
		}
		if l["message"] == "request" {
			id, _ := l["request_id"].(string)
			if !httpserver.ValidRequestID(id) {
				t.Errorf("line %d: request line without a valid request_id: %v", i+1, l)
			}
			byRequest[id] = l
		}
	}
	for _, want := range []string{strings.Join(runAll(), ","), "archiver", "aggregator"} {
		if !services[want] {
			t.Errorf("no line with service %q (services seen: %v)", want, services)
		}
	}

	var firstSeq any
	for _, s := range d.sent {
		l, ok := byRequest[s.echoed]
		if !ok {
			t.Errorf("%s %s: no request line with the echoed id %q", s.method, s.path, s.echoed)
			continue
		}
		switch {
		case s.incoming != "" && httpserver.ValidRequestID(s.incoming) && s.echoed != s.incoming:
			t.Errorf("%s: echoed %q, want the incoming %q", s.path, s.echoed, s.incoming)
		case s.incoming != "" && !httpserver.ValidRequestID(s.incoming) && s.echoed == s.incoming:
			t.Errorf("%s: the invalid id %q was kept", s.path, s.incoming)
		}
		ceID, _ := l["ce_id"].(string)
		seq, _ := l["seq"].(float64)
		switch {
		case !s.stored && (ceID != "" || seq != 0):
			t.Errorf("%s (%d): ce_id/seq on a request that stored nothing: %v", s.path, s.status, l)
		case s.stored && (ceID == "" || seq < 1):
			t.Errorf("%s (%d, outcome %v): want ce_id and seq on the line: %v", s.path, s.status, l["outcome"], l)
		case s.stored && strings.HasPrefix(s.path, "/v1/callbacks") && !strings.HasPrefix(ceID, "cb-"),
			s.stored && strings.HasPrefix(s.path, "/v1/sns") && !strings.HasPrefix(ceID, "sns-"):
			t.Errorf("%s: ce_id %q", s.path, ceID)
		}
		if s.invokeID == "i-log-1" {
			if firstSeq == nil {
				firstSeq = l["seq"]
			} else if l["seq"] != firstSeq || l["outcome"] != "duplicate" {
				t.Errorf("the retry's line %v: want outcome duplicate and the first event's seq %v", l, firstSeq)
			}
		}
	}
}

// sent is one request the driver made and what came back.
type sent struct {
	method, path, invokeID string
	incoming, echoed       string // X-Request-Id sent ("" for none) and answered
	status                 int
	stored                 bool // the request's event is in INGRESS
}

// driver sends requests to a running sdevents and records them.
type driver struct {
	t    *testing.T
	base string
	key  callback.Key
	sent []sent
}

func (d *driver) do(req *http.Request, incoming string) (int, string) {
	d.t.Helper()
	if incoming != "" {
		req.Header.Set(httpserver.HeaderRequestID, incoming)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(httpserver.HeaderRequestID)
}

func (d *driver) admin(method, path, body, incoming string) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer log-admin-token")
	req.Header.Set("Content-Type", "application/json")
	status, echoed := d.do(req, incoming)
	if status != http.StatusOK {
		d.t.Fatalf("%s %s: %d", method, path, status)
	}
	d.sent = append(d.sent, sent{method: method, path: path, incoming: incoming, echoed: echoed, status: status})
}

// callback sends a callback signed with d.key (or with a wrong signature
// when !valid) for the token user-log.
func (d *driver) callback(bizType, invokeID, body, nonce, incoming string, valid bool) {
	d.t.Helper()
	enc, err := callback.EncryptToken("user-log", d.key.SK, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	p := callback.Params{APIID: "api", BizType: bizType, InvokeID: invokeID, APIToken: enc, Nonce: nonce,
		Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(d.key, p, []byte(body), "user-log")
	if !valid {
		p.Sign = callback.Sign(callback.Key{AK: d.key.AK, SK: "wrong"}, p, []byte(body), "user-log")
	}
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	path := "/v1/callbacks/default"
	req, _ := http.NewRequest(http.MethodPost, d.base+path+"?"+q.Encode(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	status, echoed := d.do(req, incoming)
	if valid != (status == http.StatusOK) {
		d.t.Fatalf("callback %s %s: %d", bizType, invokeID, status)
	}
	d.sent = append(d.sent, sent{method: http.MethodPost, path: path, invokeID: invokeID, incoming: incoming, echoed: echoed, status: status, stored: valid})
}

func (d *driver) post(path, contentType string, body []byte, incoming string, headers map[string]string) {
	d.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	status, echoed := d.do(req, incoming)
	if status != http.StatusOK {
		d.t.Fatalf("POST %s: %d", path, status)
	}
	d.sent = append(d.sent, sent{method: http.MethodPost, path: path, incoming: incoming, echoed: echoed, status: status, stored: true})
}

// readLogLines decodes every line of the log at path as a JSON object.
func readLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not a JSON object: %q", n, sc.Text())
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("empty log")
	}
	return out
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
