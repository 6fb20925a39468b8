package callback

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"unicode"

	"github.com/sdevents/sdevents/pkg/account"
)

// ErrSignature is returned when no configured key pair reproduces the request's
// sign. Callers answer 401.
var ErrSignature = errors.New("signature mismatch")

// Key is one access-key pair of a callback source. Printed with fmt, it
// shows the access key and hides the secret.
type Key struct {
	AK string
	SK string
}

// String shows AK and hides SK.
func (k Key) String() string {
	sk := ""
	if k.SK != "" {
		sk = "[redacted]"
	}
	return fmt.Sprintf("{AK:%s SK:%s}", k.AK, sk)
}

// GoString is String, for %#v.
func (k Key) GoString() string { return "callback.Key" + k.String() }

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
// ak + nonce + body + timestamp [+ token + bizType + apiId + invokeId]. The
// string is built in a buffer of capacity n (at least its length), so that
// its allocation does not depend on the token's length.
func writeSignString(h hash.Hash, ak string, p Params, body, token []byte, n int) {
	b := append(append(append(append(make([]byte, 0, n), ak...), p.Nonce...), body...), p.Timestamp...)
	if signsContext(p.BizType) {
		b = append(append(append(append(b, token...), p.BizType...), p.APIID...), p.InvokeID...)
	}
	h.Write(b)
}

// signStringLen is the length of the sign string with a token of tokenLen
// bytes.
func signStringLen(ak string, p Params, bodyLen, tokenLen int) int {
	n := len(ak) + len(p.Nonce) + bodyLen + len(p.Timestamp)
	if signsContext(p.BizType) {
		n += tokenLen + len(p.BizType) + len(p.APIID) + len(p.InvokeID)
	}
	return n
}

// macBlocks is the number of SHA-256 blocks the inner hash of an
// HMAC-SHA256 over n bytes compresses: the key block, the message, and the
// padding with its 8-byte length.
func macBlocks(n int) int {
	return (sha256.BlockSize + n + 1 + 8 + sha256.BlockSize - 1) / sha256.BlockSize
}

// signLen is the length of a sign: base64 of an HMAC-SHA256.
var signLen = base64.StdEncoding.EncodedLen(sha256.Size)

// SignShaped reports whether sign could be one at all: 44 characters of
// base64. A sign of any other shape fails Verify whatever the body, so a
// caller may refuse it before reading the body.
func SignShaped(sign string) bool {
	if len(sign) != signLen {
		return false
	}
	for i := 0; i < len(sign); i++ {
		c := sign[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' && i == len(sign)-1) {
			return false
		}
	}
	return true
}

// Sign returns the sign the platform sends for p and body, given the decrypted
// token: base64(HMAC-SHA256(sk, sign string)). It agrees byte for byte with the
// seed's check_sign_equal; p.Sign is ignored.
func Sign(k Key, p Params, body []byte, token string) string {
	h := hmac.New(sha256.New, []byte(k.SK))
	writeSignString(h, k.AK, p, body, []byte(token), signStringLen(k.AK, p, len(body), len(token)))
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

// Verify checks p and body against every key pair in keys and returns the
// first that reproduces p.Sign, comparing in constant time. It returns
// ErrToken (wrapped, with its cause) when apiToken is present but no key
// decrypts it, and ErrSignature otherwise.
//
// A failure takes the same work whatever its cause (Verifier.Verify): the
// error is for the log; what a client is told must not depend on it.
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

// zeroBlock feeds the dummy compressions of Verifier.Verify.
var zeroBlock [sha256.BlockSize]byte

// Verify is the package's Verify over v's key pairs.
//
// It does the same work for every request of a given shape (the lengths of
// its fields), whether the token decrypts or not and whether its padding
// holds: every key pair is tried, with no early exit; the token is opened in
// constant time (openToken); when it does not open, the HMAC is computed
// over a placeholder token instead of being skipped; and the HMAC is topped
// up with dummy SHA-256 blocks to the number that the longest token the
// ciphertext could hold would need, so that its time does not tell the
// token's length either. Only a success, which the caller reveals anyway,
// ends differently.
func (v *Verifier) Verify(p Params, body []byte) (Verified, error) {
	var given [sha256.Size]byte
	signOK := 0
	if len(p.Sign) == signLen {
		var dec [sha256.Size + 1]byte // DecodedLen of 44 characters
		if n, err := base64.StdEncoding.Strict().Decode(dec[:], []byte(p.Sign)); err == nil && n == sha256.Size {
			copy(given[:], dec[:n])
			signOK = 1
		}
	}
	// The token's base64 and length depend on the request alone: a token
	// that fails them fails under every key, early.
	var raw, buf []byte
	var cause error
	if p.APIToken != "" {
		if raw, cause = tokenBytes(p.APIToken); cause == nil {
			buf = make([]byte, len(raw)-aes.BlockSize)
		}
	}
	longest := max(len(buf)-1, 0) // the longest token buf can hold
	dummy := sha256.New()
	var sum [sha256.Size]byte
	winner, opens := -1, 0
	var token []byte
	for i, k := range v.keys {
		var tok []byte
		ok := opened{padding: 1, utf8: 1} // no token: nothing to open
		switch {
		case buf != nil:
			tok, ok = k.open(raw, buf)
		case p.APIToken != "":
			ok = opened{}
		}
		most := signStringLen(k.AK, p, len(body), longest)
		h := k.newMAC()
		writeSignString(h, k.AK, p, body, tok, most)
		for range macBlocks(most) - macBlocks(signStringLen(k.AK, p, len(body), len(tok))) {
			dummy.Write(zeroBlock[:])
		}
		match := subtle.ConstantTimeCompare(h.Sum(sum[:0]), given[:]) & signOK & ok.valid()
		opens |= ok.valid()
		if match == 1 && winner < 0 {
			winner, token = i, bytes.Clone(tok)
		}
		if i == 0 && cause == nil && p.APIToken != "" {
			cause = ok.err()
		}
	}
	switch {
	case winner >= 0:
		return Verified{KeyIndex: winner, Token: string(token)}, nil
	case p.APIToken != "" && opens == 0:
		if cause == nil {
			cause = ErrToken
		}
		return Verified{}, cause
	}
	return Verified{}, ErrSignature
}

// open decrypts raw (checked by tokenBytes) with k's token key into buf.
func (k preparedKey) open(raw, buf []byte) ([]byte, opened) {
	block := k.token
	if block == nil {
		var err error
		if block, err = tokenCipher(k.SK); err != nil {
			return buf[:0], opened{}
		}
	}
	return openToken(block, raw, buf)
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
