package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// sdevents runs the CLI with args and the given environment and returns its
// output and error.
func sdevents(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot(env)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestQuotaCLI(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t, t.TempDir())
	cfg.Admin.Token = "cli-admin-token"
	r := startRun(t, cfg)
	base := "http://" + r.p.http.Addr()
	env := append([]string{"SDEVENTS_ADMIN_TOKEN=cli-admin-token"}, r.natsEnv(natsauth.Admin)...)
	admin := func(args ...string) string {
		t.Helper()
		// Flags first: a negative amount follows "--".
		out, _, err := sdevents(t, env, append([]string{args[0], args[1], "--url", base}, args[2:]...)...)
		if err != nil {
			t.Fatalf("sdevents %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	acct := account.FromToken("cli-user")

	if out := admin("quota", "grant", "token:cli-user", "5", "--id", "g-1"); !strings.Contains(out, "granted 5 credits to "+acct) || !strings.Contains(out, "balance 5") {
		t.Fatalf("grant:\n%s", out)
	}
	if out := admin("quota", "grant", acct, "5", "--id", "g-1"); !strings.Contains(out, "already applied") || !strings.Contains(out, "balance 5") {
		t.Fatalf("repeated grant:\n%s", out)
	}
	if out := admin("quota", "grant", acct, "--", "-2"); !strings.Contains(out, "balance 3") {
		t.Fatalf("removal:\n%s", out)
	}
	if out := admin("quota", "balance", "token:cli-user"); !strings.Contains(out, "balance   3") || !strings.Contains(out, acct) {
		t.Fatalf("balance:\n%s", out)
	}
	out := admin("quota", "ledger", acct, "--json")
	var evs []struct {
		Seq uint64 `json:"seq"`
		ledger.Event
	}
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) != 2 || evs[0].ID != "g-1" || evs[1].Credits != -2 {
		t.Fatalf("ledger --json (%v):\n%s", err, out)
	}
	if out := admin("quota", "ledger", acct); !strings.Contains(out, "granted") || !strings.Contains(out, "g-1") {
		t.Fatalf("ledger:\n%s", out)
	}

	// Refusals are errors with the server's message.
	if _, _, err := sdevents(t, env, "quota", "grant", "--url", base, acct, "--", "-9"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("over-removal: %v", err)
	}
	if _, _, err := sdevents(t, env, "quota", "balance", acct, "--url", base, "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}

	// Replay agrees with every stored balance...
	stdout, _, err := sdevents(t, env, "replay", "quota")
	if err != nil || !strings.Contains(stdout, "replayed 2 events of 1 accounts") || !strings.Contains(stdout, "agrees") {
		t.Fatalf("replay (%v):\n%s", err, stdout)
	}
	// ...and names an account whose stored balance does not.
	_, js := r.connect(t, natsauth.Admin)
	bad := account.FromToken("tampered")
	data, _ := json.Marshal(ledger.Event{Type: ledger.TypeGranted, Account: bad, Credits: 1, Balance: 1000, At: time.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "sd.quota."+bad, data, jetstream.WithMsgID("tampered")); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = sdevents(t, env, "replay", "quota")
	if err == nil || !strings.Contains(stdout, bad) || strings.Contains(stdout, acct) {
		t.Fatalf("replay of a tampered ledger (%v):\n%s", err, stdout)
	}
}
