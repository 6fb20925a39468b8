package callback

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strings"
	"unicode"

	"github.com/sdevents/sdevents/pkg/account"
)

// ErrSignature is returned when no configured key pair reproduces the request's
// sign. Callers answer 401.
var ErrSignature = errors.New("signature mismatch")

// Key is one access-key pair of a callback source.
type Key struct {
	AK string
	SK string
}

// signsContext reports whether the context fields (token, bizType, apiId,
// invokeId) are part of the signed string: exactly when bizType is non-empty
// after Python's str.strip().
func signsContext(bizType string) bool {
	return strings.TrimFunc(bizType, isPySpace) != ""
}

// isPySpace matches Python's str.isspace: Go's unicode.IsSpace plus the ASCII
// information separators U+001C..U+001F, which Python also strips.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// writeSignString feeds the seed's sign string into h, in one write:
// ak + nonce + body + timestamp [+ token + bizType + apiId + invokeId].
func writeSignString(h hash.Hash, ak string, p Params, body []byte, token string) {
	n := len(ak) + len(p.Nonce) + len(body) + len(p.Timestamp) + len(token) + len(p.BizType) + len(p.APIID) + len(p.InvokeID)
	b := append(append(append(append(make([]byte, 0, n), ak...), p.Nonce...), body...), p.Timestamp...)
	if signsContext(p.BizType) {
		b = append(append(append(append(b, token...), p.BizType...), p.APIID...), p.InvokeID...)
	}
	h.Write(b)
}

// Sign returns the sign the platform sends for p and body, given the decrypted
// token: base64(HMAC-SHA256(sk, sign string)). It agrees byte for byte with the
// seed's check_sign_equal; p.Sign is ignored.
func Sign(k Key, p Params, body []byte, token string) string {
	h := hmac.New(sha256.New, []byte(k.SK))
	writeSignString(h, k.AK, p, body, token)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Verified is the outcome of a successful Verify.
type Verified struct {
	// KeyIndex is the index of the key pair that verified the request.
	KeyIndex int
	// Token is the decrypted user token ("" when apiToken is empty). It is a
	// credential: never log, store or return it to a client.
	Token string
}

// Account returns the account id of the verified token, or "" when the request
// carried no apiToken.
func (v Verified) Account() string {
	if v.Token == "" {
		return ""
	}
	return account.FromToken(v.Token)
}

// Verify checks p and body against every key pair in keys and returns the first
// that reproduces p.Sign, comparing in constant time. It returns ErrToken when
// apiToken is present but no key decrypts it, and ErrSignature otherwise.
func Verify(keys []Key, p Params, body []byte) (Verified, error) {
	return NewVerifier(keys).Verify(p, body)
}

// Verifier is Verify over a fixed list of key pairs, with what depends on a
// key alone (the HMAC key pads, the AES key schedule of the token key) done
// once. It is safe for concurrent use.
type Verifier struct {
	keys []preparedKey
}

// preparedKey is a key pair with its prepared HMAC and token cipher; either
// is nil when it could not be prepared and is then built per request.
type preparedKey struct {
	Key
	mac   hash.Cloner  // HMAC-SHA256 keyed with SK, nothing written yet
	token cipher.Block // AES-128 with SHA-256(SK)[:16]
}

// NewVerifier prepares keys, in order.
func NewVerifier(keys []Key) *Verifier {
	v := &Verifier{keys: make([]preparedKey, len(keys))}
	for i, k := range keys {
		pk := preparedKey{Key: k}
		mac := hmac.New(sha256.New, []byte(k.SK))
		mac.Reset() // keeps the hashed pads: clones start from them
		pk.mac, _ = mac.(hash.Cloner)
		pk.token, _ = tokenCipher(k.SK)
		v.keys[i] = pk
	}
	return v
}

// Verify is the package's Verify over v's key pairs.
func (v *Verifier) Verify(p Params, body []byte) (Verified, error) {
	given, err := base64.StdEncoding.Strict().DecodeString(p.Sign)
	if err != nil || len(given) != sha256.Size {
		return Verified{}, ErrSignature
	}
	decrypted := false
	for i, k := range v.keys {
		token := ""
		if p.APIToken != "" {
			t, err := k.decrypt(p.APIToken)
			if err != nil {
				continue
			}
			token, decrypted = t, true
		}
		h := k.newMAC()
		writeSignString(h, k.AK, p, body, token)
		if hmac.Equal(h.Sum(nil), given) {
			return Verified{KeyIndex: i, Token: token}, nil
		}
	}
	if p.APIToken != "" && !decrypted {
		return Verified{}, ErrToken
	}
	return Verified{}, ErrSignature
}

// newMAC returns a fresh HMAC-SHA256 keyed with k.SK.
func (k preparedKey) newMAC() hash.Hash {
	if k.mac != nil {
		if h, err := k.mac.Clone(); err == nil {
			return h
		}
	}
	return hmac.New(sha256.New, []byte(k.SK))
}

// decrypt is DecryptToken with k.SK.
func (k preparedKey) decrypt(apiToken string) (string, error) {
	if k.token == nil {
		return DecryptToken(apiToken, k.SK)
	}
	return decryptToken(apiToken, k.token)
}
