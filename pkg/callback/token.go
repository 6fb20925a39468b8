package callback

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrToken is returned (wrapped) for an apiToken that cannot be decrypted: bad
// base64, a length that is not IV plus whole blocks, bad PKCS#7 padding or a
// plaintext that is not UTF-8. The platform must not be told which.
var ErrToken = errors.New("undecryptable apiToken")

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
	return decryptToken(apiToken, block)
}

// tokenCipher is the AES-128 cipher of the token key of sk.
func tokenCipher(sk string) (cipher.Block, error) {
	block, err := aes.NewCipher(tokenKey(sk))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	return block, nil
}

// decryptToken is DecryptToken with the cipher of the token key given.
func decryptToken(apiToken string, block cipher.Block) (string, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(apiToken)
	if err != nil {
		return "", fmt.Errorf("%w: not base64", ErrToken)
	}
	if len(raw) < 2*aes.BlockSize || len(raw)%aes.BlockSize != 0 {
		return "", fmt.Errorf("%w: length %d is not IV plus whole blocks", ErrToken, len(raw))
	}
	iv, pt := raw[:aes.BlockSize], raw[aes.BlockSize:]
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, pt)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize {
		return "", fmt.Errorf("%w: bad padding", ErrToken)
	}
	// Check every padding byte without branching on which one differs.
	var bad byte
	for _, b := range pt[len(pt)-pad:] {
		bad |= b ^ byte(pad)
	}
	if bad != 0 {
		return "", fmt.Errorf("%w: bad padding", ErrToken)
	}
	pt = pt[:len(pt)-pad]
	if !utf8.Valid(pt) {
		return "", fmt.Errorf("%w: not UTF-8", ErrToken)
	}
	return string(pt), nil
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
