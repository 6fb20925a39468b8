package callback

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// ErrToken is returned (wrapped) for an apiToken that cannot be decrypted: bad
// base64, a length that is not IV plus whole blocks, bad PKCS#7 padding or a
// plaintext that is not UTF-8. The platform must not be told which.
var ErrToken = errors.New("undecryptable apiToken")

// The causes of ErrToken, built once: building them per request would make a
// failure cost more than a success.
var (
	errTokenBase64  = fmt.Errorf("%w: not base64", ErrToken)
	errTokenLength  = fmt.Errorf("%w: length is not IV plus whole blocks", ErrToken)
	errTokenPadding = fmt.Errorf("%w: bad padding", ErrToken)
	errTokenUTF8    = fmt.Errorf("%w: not UTF-8", ErrToken)
)

// tokenKey derives the AES-128 key from the secret key: SHA-256(sk)[:16].
func tokenKey(sk string) []byte {
	sum := sha256.Sum256([]byte(sk))
	return sum[:16]
}

// DecryptToken returns the plaintext user token of apiToken, which is
// base64(IV ‖ AES-128-CBC(key = SHA-256(sk)[:16], PKCS#7 padded token)).
//
// Unlike the seed's Python, it rejects lenient base64, truncated ciphertexts and
// malformed padding. The error never contains the plaintext.
func DecryptToken(apiToken, sk string) (string, error) {
	block, err := tokenCipher(sk)
	if err != nil {
		return "", err
	}
	raw, err := tokenBytes(apiToken)
	if err != nil {
		return "", err
	}
	pt, ok := openToken(block, raw, make([]byte, len(raw)-aes.BlockSize))
	if err := ok.err(); err != nil {
		return "", err
	}
	return string(pt), nil
}

// tokenCipher is the AES-128 cipher of the token key of sk.
func tokenCipher(sk string) (cipher.Block, error) {
	block, err := aes.NewCipher(tokenKey(sk))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	return block, nil
}

// tokenBytes decodes apiToken and checks its length: IV plus at least one
// whole block. Both depend on the apiToken as sent, not on any key, so they
// may fail early.
func tokenBytes(apiToken string) ([]byte, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(apiToken)
	if err != nil {
		return nil, errTokenBase64
	}
	if len(raw) < 2*aes.BlockSize || len(raw)%aes.BlockSize != 0 {
		return nil, errTokenLength
	}
	return raw, nil
}

// opened says whether a decrypted token holds: 1 for good padding and UTF-8,
// as constant-time flags.
type opened struct {
	padding, utf8 int
}

func (o opened) valid() int { return o.padding & o.utf8 }

// err is the cause of a token that does not hold, or nil.
func (o opened) err() error {
	switch {
	case o.padding != 1:
		return errTokenPadding
	case o.utf8 != 1:
		return errTokenUTF8
	}
	return nil
}

// openToken decrypts raw (IV ‖ ciphertext, checked by tokenBytes) into buf
// (len(raw)-16 bytes) and returns the plaintext without its padding, with
// flags that say whether padding and UTF-8 hold.
//
// It takes the same time whatever the plaintext: every one of the last 16
// bytes is examined, every byte is run through the UTF-8 automaton, and
// nothing branches on a decrypted byte. When the padding is bad, the
// plaintext returned is buf less its last block, a placeholder that callers
// go on working with as if it were the token. This is what keeps the
// verification free of a padding oracle (CBC padding attacks need to learn,
// from the answer or its timing, whether the padding of a forged token held).
func openToken(block cipher.Block, raw, buf []byte) ([]byte, opened) {
	cipher.NewCBCDecrypter(block, raw[:aes.BlockSize]).CryptBlocks(buf, raw[aes.BlockSize:])
	last := buf[len(buf)-1]
	pad := int(last)
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		same := subtle.ConstantTimeByteEq(buf[len(buf)-i], last)
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	n := len(buf) - subtle.ConstantTimeSelect(good, pad, aes.BlockSize)
	return buf[:n], opened{padding: good, utf8: validUTF8Prefix(buf, n)}
}

// validUTF8Prefix returns 1 when b[:n] is valid UTF-8 (as utf8.Valid) and 0
// otherwise, in time that depends on len(b) only: every byte of b passes
// through the automaton, those from n on without effect.
func validUTF8Prefix(b []byte, n int) int {
	state := utf8Accept
	for i, c := range b {
		next := int(utf8Table[256+state+int(utf8Table[c])])
		state = subtle.ConstantTimeSelect(subtle.ConstantTimeLessOrEq(i+1, n), next, state)
	}
	return subtle.ConstantTimeEq(int32(state), utf8Accept)
}

// utf8Table is Björn Höhrmann's UTF-8 automaton ("Flexible and Economical
// UTF-8 Decoder"): the first 256 entries map a byte to its class, the rest map
// state + class to the next state. State 0 accepts, 12 rejects (for good).
const utf8Accept = 0

var utf8Table = [...]uint8{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 00..1f
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 20..3f
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 40..5f
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 60..7f
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, // 80..9f
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // a0..bf
	8, 8, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, // c0..df
	10, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 11, 6, 6, 6, 5, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, // e0..ff
	0, 12, 24, 36, 60, 96, 84, 12, 12, 12, 48, 72, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
	12, 0, 12, 12, 12, 12, 12, 0, 12, 0, 12, 12, 12, 24, 12, 12, 12, 12, 12, 24, 12, 24, 12, 12,
	12, 12, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12, 12, 12, 12, 24, 12, 12,
	12, 12, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12, 12, 36, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
	12, 36, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
}

// EncryptToken is the platform's side of DecryptToken, used by the simulator and
// tests. A nil rnd means crypto/rand.
func EncryptToken(token, sk string, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	block, err := aes.NewCipher(tokenKey(sk))
	if err != nil {
		return "", fmt.Errorf("encrypt token: %w", err)
	}
	pad := aes.BlockSize - len(token)%aes.BlockSize
	buf := make([]byte, aes.BlockSize+len(token)+pad)
	if _, err := io.ReadFull(rnd, buf[:aes.BlockSize]); err != nil {
		return "", fmt.Errorf("encrypt token: iv: %w", err)
	}
	copy(buf[aes.BlockSize:], token)
	for i := len(buf) - pad; i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, buf[:aes.BlockSize]).CryptBlocks(buf[aes.BlockSize:], buf[aes.BlockSize:])
	return base64.StdEncoding.EncodeToString(buf), nil
}
