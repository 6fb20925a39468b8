// Command natsusers writes the NATS users of pkg/natsauth into the NATS
// configuration of the deployments: compose/nats-users.conf (included by
// the compose stack's nats.conf; passwords as bcrypt hashes of
// compose/secrets/nats-<user>) and nats/users.values.yaml (the Helm chart's
// values; passwords from a Secret). A hash that still matches its password
// file is kept, so that the output changes only when the users, their
// permissions or a password change. Run it from deploy/ after changing
// pkg/natsauth, streams/ or a password file:
//
//	go run ./cmd/natsusers
//
// TestNATSUsersMatchPermissions fails until the output is committed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/sdevents/sdevents/deploy/natsusers"
	"github.com/sdevents/sdevents/pkg/natsauth"
)

// bcryptCost is what `nats server passwd` uses.
const bcryptCost = 11

func main() {
	secrets := flag.String("secrets", "compose/secrets", "directory of the compose stack's nats-<user> password files")
	confPath := flag.String("conf", "compose/nats-users.conf", "nats.conf include file to write")
	valuesPath := flag.String("values", "nats/users.values.yaml", "Helm values file to write")
	flag.Parse()
	if err := run(*secrets, *confPath, *valuesPath); err != nil {
		fmt.Fprintln(os.Stderr, "natsusers:", err)
		os.Exit(1)
	}
}

func run(secrets, confPath, valuesPath string) error {
	users, err := natsauth.Users()
	if err != nil {
		return err
	}
	old := map[string]string{}
	if raw, err := os.ReadFile(confPath); err == nil {
		if old, err = natsusers.Passwords(raw); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	hashes := map[string]string{}
	for _, u := range users {
		raw, err := os.ReadFile(filepath.Join(secrets, "nats-"+u.Name))
		if err != nil {
			return err
		}
		pw := []byte(strings.TrimSuffix(string(raw), "\n"))
		if h := old[u.Name]; h != "" && bcrypt.CompareHashAndPassword([]byte(h), pw) == nil {
			hashes[u.Name] = h
			continue
		}
		h, err := bcrypt.GenerateFromPassword(pw, bcryptCost)
		if err != nil {
			return err
		}
		hashes[u.Name] = string(h)
	}
	conf, err := natsusers.Conf(users, hashes)
	if err != nil {
		return err
	}
	values, err := natsusers.HelmValues(users)
	if err != nil {
		return err
	}
	for path, b := range map[string][]byte{confPath: conf, valuesPath: values} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("natsusers: wrote %s and %s (%d users)\n", confPath, valuesPath, len(users))
	return nil
}
