// Package account derives the opaque account ids that every event, ledger entry
// and archive key of sdevents uses instead of a user credential.
//
// An id is a one-way function of the credential: it identifies the user without
// revealing the token, so it may be logged, stored and used in NATS subjects.
package account

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Unknown is the account id of events that carry no user credential (an SNS task
// result without a context account).
const Unknown = "_"

// Prefix starts every derived account id.
const Prefix = "a_"

// idLen is the number of base32 characters kept from the digest (130 bits).
const idLen = 26

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrInvalid is returned by Parse for a string that is neither a derived id nor
// a "token:" reference. Callers answer it as a client error.
var ErrInvalid = errors.New("invalid account id")

// FromToken returns the account id of a decrypted user token:
// "a_" + lowercase unpadded base32(SHA-256(token))[:26].
func FromToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return Prefix + strings.ToLower(b32.EncodeToString(sum[:]))[:idLen]
}

// Valid reports whether id has the shape of a derived account id or is Unknown.
func Valid(id string) bool {
	if id == Unknown {
		return true
	}
	if len(id) != len(Prefix)+idLen || !strings.HasPrefix(id, Prefix) {
		return false
	}
	for _, r := range id[len(Prefix):] {
		if !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') {
			return false
		}
	}
	return true
}

// Parse resolves how an operator names an account: a derived id, or
// "token:<token>", which is turned into its id. The token is not kept.
func Parse(s string) (string, error) {
	if tok, ok := strings.CutPrefix(s, "token:"); ok {
		if tok == "" {
			return "", fmt.Errorf("%w: empty token", ErrInvalid)
		}
		return FromToken(tok), nil
	}
	if !Valid(s) {
		return "", fmt.Errorf("%w: want %s<26 base32 characters> or token:<token>", ErrInvalid, Prefix)
	}
	return s, nil
}
