package natsauth_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/streams"
)

func users(t *testing.T) map[string]natsauth.User {
	t.Helper()
	list, err := natsauth.Users()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]natsauth.User{}
	for _, u := range list {
		out[u.Name] = u
	}
	if got, want := len(out), len(natsauth.Names()); got != want || len(list) != want {
		t.Fatalf("%d users (%d distinct), want %d", len(list), got, want)
	}
	return out
}

// TestUsersPublishOnlyTheirOwnEvents: of the event subjects (sd.>), each
// service may publish only on its own streams' subjects, the downstream user
// on none; only the admin is unrestricted.
func TestUsersPublishOnlyTheirOwnEvents(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		natsauth.Ingress:    {"sd.callback.>", "sd.sns.>"},
		natsauth.Quota:      {"sd.quota.>", "sd.dead.quota-expiry"},
		natsauth.Archiver:   {"sd.archive.>", "sd.dead.archiver", "sd.dead.archiver-due", "sd.dead.archiver-retry"},
		natsauth.Aggregator: {"sd.job.finished.>", "sd.dead.aggregator", "sd.dead.aggregator-due"},
		natsauth.Console:    nil, // grants are requests to the quota replicas
		natsauth.Downstream: nil,
	}
	for name, u := range users(t) {
		if name == natsauth.Admin {
			if u.Permissions != nil {
				t.Errorf("admin has permissions %+v, want none (everything)", u.Permissions)
			}
			continue
		}
		if u.Permissions == nil {
			t.Fatalf("%s may do everything", name)
		}
		var events []string
		for _, s := range u.Permissions.Publish.Allow {
			if strings.HasPrefix(s, "sd.") || s == ">" || s == "sd.>" {
				events = append(events, s)
			}
		}
		if !slices.Equal(events, want[name]) {
			t.Errorf("%s publishes on %v, want %v", name, events, want[name])
		}
		for _, s := range u.Permissions.Subscribe.Allow {
			if strings.HasPrefix(s, "_INBOX") && s != natsauth.InboxPrefix(name)+".>" {
				t.Errorf("%s subscribes to %s, want only its own inbox %s.>", name, s, natsauth.InboxPrefix(name))
			}
		}
		if u.Permissions.AllowResponses != (name == natsauth.Quota) {
			t.Errorf("%s: allow_responses %v", name, u.Permissions.AllowResponses)
		}
	}
}

// TestOnlyTheConsoleAsksForGrants: among the restricted users, only the
// console may ask the quota replicas for a grant or an account's state
// (the operator subjects of quotarpc), and only quota may subscribe to
// them; a grant needs no event permission, so whoever may send one can
// mint credits.
func TestOnlyTheConsoleAsksForGrants(t *testing.T) {
	t.Parallel()
	for name, u := range users(t) {
		if name == natsauth.Admin {
			continue
		}
		for _, subject := range []string{quotarpc.SubjectGrant, quotarpc.SubjectAccount} {
			if asks := slices.Contains(u.Permissions.Publish.Allow, subject); asks != (name == natsauth.Console) {
				t.Errorf("%s may publish on %s: %v", name, subject, asks)
			}
			if answers := slices.Contains(u.Permissions.Subscribe.Allow, subject); answers != (name == natsauth.Quota) {
				t.Errorf("%s may subscribe to %s: %v", name, subject, answers)
			}
			for _, s := range append(slices.Clone(u.Permissions.Publish.Allow), u.Permissions.Subscribe.Allow...) {
				if s != subject && (strings.HasSuffix(s, ">") || strings.Contains(s, "*")) && matches(s, subject) {
					t.Errorf("%s: %s covers %s", name, s, subject)
				}
			}
		}
	}
}

// matches reports whether the NATS subject pattern covers subject.
func matches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// TestUsersKeepOffOthersConsumers: a user that may create consumers on a
// stream is denied every durable consumer of it that another user owns.
func TestUsersKeepOffOthersConsumers(t *testing.T) {
	t.Parallel()
	u := users(t)
	for _, tc := range []struct {
		user, subject string
		denied        bool
	}{
		{natsauth.Ingress, "$JS.API.CONSUMER.CREATE.INGRESS.archiver.>", true},
		{natsauth.Ingress, "$JS.API.CONSUMER.DELETE.INGRESS.aggregator", true},
		{natsauth.Aggregator, "$JS.API.CONSUMER.MSG.NEXT.INGRESS.archiver", true},
		{natsauth.Aggregator, "$JS.ACK.INGRESS.archiver.>", true},
		{natsauth.Downstream, "$JS.API.CONSUMER.DURABLE.CREATE.INGRESS.archiver", true},
		{natsauth.Downstream, "$JS.ACK.INGRESS.aggregator.>", true},
		{natsauth.Archiver, "$JS.API.CONSUMER.MSG.NEXT.INGRESS.archiver", false},
	} {
		deny := u[tc.user].Permissions.Publish.Deny
		if slices.Contains(deny, tc.subject) != tc.denied {
			t.Errorf("%s: %s denied = %v, want %v", tc.user, tc.subject, !tc.denied, tc.denied)
		}
	}
	// The downstream user reads the event streams of sd.> only: the four
	// of the services' events and DEAD, the messages consumers gave up on.
	var streams []string
	for _, s := range u[natsauth.Downstream].Permissions.Publish.Allow {
		if name, ok := strings.CutPrefix(s, "$JS.API.STREAM.MSG.GET."); ok {
			streams = append(streams, name)
		}
	}
	slices.Sort(streams)
	if want := []string{"ARCHIVE", "DEAD", "INGRESS", "JOBS", "QUOTA"}; !slices.Equal(streams, want) {
		t.Errorf("downstream reads %v, want %v", streams, want)
	}
}

// TestDeadLettersOfOwnConsumers: every durable consumer of streams/ has its
// dead-letter subject sd.dead.<consumer> and its max-deliveries advisory,
// and exactly one user — its owner — may publish on the one and receive the
// other; the console (its page of dead letters) and downstream read DEAD.
func TestDeadLettersOfOwnConsumers(t *testing.T) {
	t.Parallel()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	u := users(t)
	durables := 0
	for _, f := range files {
		for _, c := range f.Consumers {
			durables++
			dead := "sd.dead." + c.Name
			advisory := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + f.Stream.Name + "." + c.Name
			var publishers, watchers []string
			for name, user := range u {
				if user.Permissions == nil {
					continue
				}
				if slices.Contains(user.Permissions.Publish.Allow, dead) {
					publishers = append(publishers, name)
				}
				if slices.Contains(user.Permissions.Subscribe.Allow, advisory) {
					watchers = append(watchers, name)
				}
			}
			if len(publishers) != 1 || !slices.Equal(publishers, watchers) {
				t.Errorf("%s/%s: %v publish on %s, %v receive its advisory; want its owner alone", f.Stream.Name, c.Name, publishers, dead, watchers)
			}
		}
	}
	if durables < 6 {
		t.Fatalf("%d durable consumers in streams/", durables)
	}
	for name, user := range u {
		if user.Permissions == nil {
			continue
		}
		for _, s := range user.Permissions.Publish.Allow {
			if strings.HasPrefix(s, "sd.dead.") && strings.ContainsAny(s, "*>") {
				t.Errorf("%s publishes on %s", name, s)
			}
		}
	}
	for _, name := range []string{natsauth.Console, natsauth.Downstream} {
		if !slices.Contains(u[name].Permissions.Publish.Allow, "$JS.API.DIRECT.GET.DEAD") {
			t.Errorf("%s does not read DEAD", name)
		}
	}
}

func TestInboxPrefix(t *testing.T) {
	t.Parallel()
	if got := natsauth.InboxPrefix(natsauth.Archiver); got != "_INBOX_archiver" {
		t.Errorf("archiver: %q", got)
	}
	for _, user := range []string{natsauth.Downstream, "someone-else"} {
		if got := natsauth.InboxPrefix(user); got != "_INBOX" {
			t.Errorf("%s: %q", user, got)
		}
	}
}

// TestLoadOrCreatePasswords: passwords are made once, private, and found
// again; one the operator wrote is kept; an empty file is an error.
func TestLoadOrCreatePasswords(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "credentials")
	first, err := natsauth.LoadOrCreatePasswords(dir, natsauth.Names())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, name := range natsauth.Names() {
		pw := first[name]
		if len(pw) < 43 || seen[pw] {
			t.Fatalf("%s: password %d bytes long, repeated %v", name, len(pw), seen[pw])
		}
		seen[pw] = true
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v (%v), want 0600", name, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v (%v), want 0700", fi.Mode(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, natsauth.Downstream), []byte("chosen-by-the-operator\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := natsauth.LoadOrCreatePasswords(dir, natsauth.Names())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range natsauth.Names() {
		want := first[name]
		if name == natsauth.Downstream {
			want = "chosen-by-the-operator"
		}
		if again[name] != want {
			t.Errorf("%s: password changed on restart", name)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, natsauth.Downstream)); fi.Mode().Perm() != 0o600 {
		t.Errorf("operator's file left at mode %v", fi.Mode())
	}
	if pw, err := natsauth.ReadPassword(dir, natsauth.Admin); err != nil || pw != first[natsauth.Admin] {
		t.Errorf("ReadPassword: %v", err)
	}
	if _, err := natsauth.ReadPassword(t.TempDir(), natsauth.Admin); !errors.Is(err, natsauth.ErrNoPassword) {
		t.Errorf("ReadPassword of a missing file: %v, want ErrNoPassword", err)
	}
	if err := os.WriteFile(filepath.Join(dir, natsauth.Admin), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.LoadOrCreatePasswords(dir, natsauth.Names()); err == nil || !strings.Contains(err.Error(), "empty password") {
		t.Errorf("empty password file: %v", err)
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	got := natsauth.URL("downstream", "p@ss:w/rd", "127.0.0.1:4222")
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := u.User.Password(); u.User.Username() != "downstream" || pw != "p@ss:w/rd" || u.Host != "127.0.0.1:4222" || u.Scheme != "nats" {
		t.Errorf("URL %q", got)
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "downstream.url")
	for _, data := range []string{"one", "two"} {
		if err := natsauth.WriteFile(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if err != nil || string(raw) != "two" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v %v", raw, fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
