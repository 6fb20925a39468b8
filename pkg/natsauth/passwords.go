package natsauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// passwordBytes is the randomness of a generated password (256 bits).
const passwordBytes = 32

// ErrNoPassword is returned (wrapped) by ReadPassword when the user's
// password file does not exist: the embedded server has not made it yet
// (start `sdevents run` once), or the directory is not the one it uses.
var ErrNoPassword = errors.New("no password file")

// LoadOrCreatePasswords returns the password of each user in names, read
// from dir/<name>. A missing file is created with a random password
// (URL-safe base64 of 32 random bytes) and mode 0600, in a directory of
// mode 0700, so that a restart finds the same passwords. An existing file
// keeps its password (an operator may write one of their own there; one
// trailing newline is removed) and is set to mode 0600. An empty file, or
// one that cannot be read or written, is an error naming it.
func LoadOrCreatePasswords(dir string, names []string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: credentials: %w", err)
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		pw, err := loadOrCreate(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out[name] = pw
	}
	return out, nil
}

func loadOrCreate(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("natsauth: %w", err)
		}
		return readPassword(path)
	}
	if err != nil {
		return "", fmt.Errorf("natsauth: %w", err)
	}
	raw := make([]byte, passwordBytes)
	_, _ = rand.Read(raw) // never fails (crypto/rand)
	pw := base64.RawURLEncoding.EncodeToString(raw)
	_, werr := f.WriteString(pw + "\n")
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("natsauth: %w", werr)
	}
	return pw, nil
}

// ReadPassword reads the password of user from dir/<user>, as
// LoadOrCreatePasswords wrote it. A missing file is ErrNoPassword.
func ReadPassword(dir, user string) (string, error) {
	return readPassword(filepath.Join(dir, user))
}

func readPassword(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("natsauth: %s: %w", path, ErrNoPassword)
	}
	if err != nil {
		return "", fmt.Errorf("natsauth: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("natsauth: %s: empty password", path)
	}
	return pw, nil
}

// URL is nats://user:password@hostPort, the user and password escaped.
func URL(user, password, hostPort string) string {
	u := url.URL{Scheme: "nats", User: url.UserPassword(user, password), Host: hostPort}
	return u.String()
}

// WriteFile writes data to path with mode 0600, replacing what was there
// (through a temporary file in the same directory, renamed over it).
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing left to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	return nil
}
