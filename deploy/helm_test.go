package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sdevents/sdevents/deploy/nack"
)

// helmValues is deploy/nats/values.yaml, the values of the official NATS
// chart (1.x).
type helmValues map[string]any

func natsValues(t *testing.T) helmValues {
	t.Helper()
	var v map[string]any // not helmValues: yaml.v3 would reuse the named type for nested maps
	if err := yaml.Unmarshal(readFile(t, "deploy/nats/values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	return helmValues(v)
}

// get returns the value at a key path, nil when a key is missing.
func (v helmValues) get(keys ...string) any {
	var cur any = map[string]any(v)
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// port returns config.<listener>.port.
func (v helmValues) port(listener string) int {
	p, _ := v.get("config", listener, "port").(int)
	return p
}

// TestNATSHelmValues checks the chart values against what sdevents needs: a
// three-node cluster (the manifests' replica count), JetStream on persistent
// file storage, the monitoring port KEDA reads, a max_payload that fits
// INGRESS, and the server version the tests run.
func TestNATSHelmValues(t *testing.T) {
	t.Parallel()
	v := natsValues(t)
	checks := []struct {
		keys []string
		want any
	}{
		{[]string{"config", "cluster", "enabled"}, true},
		{[]string{"config", "cluster", "replicas"}, nack.Replicas},
		{[]string{"config", "jetstream", "enabled"}, true},
		{[]string{"config", "jetstream", "fileStore", "enabled"}, true},
		{[]string{"config", "jetstream", "fileStore", "pvc", "enabled"}, true},
		{[]string{"config", "jetstream", "memoryStore", "enabled"}, false},
		{[]string{"config", "monitor", "enabled"}, true},
		{[]string{"config", "nats", "port"}, 4222},
	}
	for _, c := range checks {
		if got := v.get(c.keys...); got != c.want {
			t.Errorf("%v = %v, want %v", c.keys, got, c.want)
		}
	}
	if v.port("monitor") == 0 {
		t.Error("config.monitor.port is not set")
	}
	if mp, _ := v.get("config", "merge", "max_payload").(int); mp < ingressMaxMsgSize(t) {
		t.Errorf("config.merge.max_payload %d is below INGRESS's max_msg_size %d", mp, ingressMaxMsgSize(t))
	}
	tag := fmt.Sprint(v.get("container", "image", "tag"))
	if want := natsServerMinor(t); !regexp.MustCompile(`^` + regexp.QuoteMeta(want) + `(\.\d+)?-alpine$`).MatchString(tag) {
		t.Errorf("container.image.tag %q: want nats-server %s (cmd/sdevents/go.mod)", tag, want)
	}
}

// TestNATSHelmInstallHasUsers checks that every install command of the NATS
// chart adds the users (users.values.yaml): without them the servers take
// any client.
func TestNATSHelmInstallHasUsers(t *testing.T) {
	t.Parallel()
	n := 0
	for _, f := range []string{"deploy/nats/values.yaml", "docs/operations.md"} {
		lines := strings.Split(string(readFile(t, f)), "\n")
		for i, line := range lines {
			if !strings.Contains(line, "install nats nats/nats") {
				continue
			}
			n++
			cmd := line
			for j := i; strings.HasSuffix(strings.TrimSpace(lines[j]), "\\") && j+1 < len(lines); j++ {
				cmd += lines[j+1]
			}
			if !strings.Contains(cmd, "-f deploy/nats/users.values.yaml") {
				t.Errorf("%s:%d: %q does not add deploy/nats/users.values.yaml", f, i+1, strings.TrimSpace(cmd))
			}
		}
	}
	if n == 0 {
		t.Error("no install command of the nats chart found")
	}
}

// nackChart is the pinned version of the nats/nack chart (NACK 0.24.0),
// whose CRDs and controller know allowMsgSchedules.
const nackChart = "0.36.0"

// TestNACKPinned checks that the timer streams' allowMsgSchedules has what it
// needs: every install command names the pinned NACK chart, and the NATS
// server is 2.12 or later (message schedules).
func TestNACKPinned(t *testing.T) {
	t.Parallel()
	schedules := false
	paths, _ := filepath.Glob("base/nack/*.yaml")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		schedules = schedules || bytes.Contains(b, []byte("allowMsgSchedules: true"))
	}
	if !schedules {
		t.Fatal("no stream uses allowMsgSchedules: the pin may be relaxed")
	}
	for _, f := range []string{"deploy/nats/values.yaml", "docs/operations.md"} {
		for _, line := range strings.Split(string(readFile(t, f)), "\n") {
			if strings.Contains(line, "install nack nats/nack") && !strings.Contains(line, "--version "+nackChart) {
				t.Errorf("%s: %q does not pin the nack chart %s", f, strings.TrimSpace(line), nackChart)
			}
		}
		if !strings.Contains(string(readFile(t, f)), "--version "+nackChart) {
			t.Errorf("%s does not install the nack chart %s", f, nackChart)
		}
	}
	var major, minor int
	if _, err := fmt.Sscanf(natsServerMinor(t), "%d.%d", &major, &minor); err != nil || major < 2 || (major == 2 && minor < 12) {
		t.Errorf("nats-server %s: message schedules need 2.12 or later", natsServerMinor(t))
	}
}
