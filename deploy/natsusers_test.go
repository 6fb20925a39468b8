package deploy

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/sdevents/sdevents/deploy/natsusers"
	"github.com/sdevents/sdevents/pkg/natsauth"
)

// The files cmd/natsusers writes.
const (
	natsUsersConf   = "deploy/compose/nats-users.conf"
	natsUsersValues = "deploy/nats/users.values.yaml"
)

// TestNATSUsersMatchPermissions checks that the NATS users of the compose
// stack and of the Helm values are pkg/natsauth's, with its permissions, and
// that each compose password hash is of the user's password file.
func TestNATSUsersMatchPermissions(t *testing.T) {
	t.Parallel()
	users, err := natsauth.Users()
	if err != nil {
		t.Fatal(err)
	}
	conf := readFile(t, natsUsersConf)
	hashes, err := natsusers.Passwords(conf)
	if err != nil {
		t.Fatal(err)
	}
	want, err := natsusers.Conf(users, hashes)
	if err != nil {
		t.Fatalf("%s: %v (run `go run ./cmd/natsusers` in deploy/)", natsUsersConf, err)
	}
	if !bytes.Equal(conf, want) {
		t.Errorf("%s is not what pkg/natsauth makes: run `go run ./cmd/natsusers` in deploy/", natsUsersConf)
	}
	for _, u := range users {
		pw := strings.TrimSuffix(string(readFile(t, "deploy/compose/secrets/nats-"+u.Name)), "\n")
		if bcrypt.CompareHashAndPassword([]byte(hashes[u.Name]), []byte(pw)) != nil {
			t.Errorf("%s: the hash of %s is not of deploy/compose/secrets/nats-%s", natsUsersConf, u.Name, u.Name)
		}
	}
	values, err := natsusers.HelmValues(users)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, natsUsersValues), values) {
		t.Errorf("%s is not what pkg/natsauth makes: run `go run ./cmd/natsusers` in deploy/", natsUsersValues)
	}
}

// TestComposeNATSUsersAdmit starts a nats-server with the compose stack's
// users (nats-users.conf, as nats.conf includes it): each user gets in with
// its password file, with another user's password or none it does not.
func TestComposeNATSUsersAdmit(t *testing.T) {
	t.Parallel()
	opts := &server.Options{}
	if err := opts.ProcessConfigFile(filepath.Join(repoRoot(t), natsUsersConf)); err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	// A bcrypt comparison (cost 11) takes a while under the race detector.
	opts.AuthTimeout, opts.DisableShortFirstPing = 60, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	password := func(user string) string {
		return strings.TrimSuffix(string(readFile(t, "deploy/compose/secrets/nats-"+user)), "\n")
	}
	connect := func(opts ...nats.Option) error {
		nc, err := nats.Connect(s.ClientURL(), append(opts, nats.Timeout(time.Minute))...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	for _, user := range natsauth.Names() {
		if err := connect(nats.UserInfo(user, password(user))); err != nil {
			t.Errorf("%s with its password: %v", user, err)
		}
	}
	if err := connect(nats.UserInfo(natsauth.Quota, password(natsauth.Admin))); err == nil {
		t.Error("quota got in with the admin's password")
	}
	if err := connect(); err == nil {
		t.Error("a client without a user got in")
	}
}
