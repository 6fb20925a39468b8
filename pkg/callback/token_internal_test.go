package callback

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"
)

// FuzzValidUTF8Prefix: the constant-time automaton agrees with utf8.Valid on
// every prefix.
func FuzzValidUTF8Prefix(f *testing.F) {
	for _, s := range []string{"", "abc", "é", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "日本語", "\xe2\x82", "\xf0\x9f\x98\x80x"} {
		f.Add([]byte(s), uint16(len(s)))
	}
	f.Fuzz(func(t *testing.T, b []byte, n uint16) {
		k := int(n) % (len(b) + 1)
		want := 0
		if utf8.Valid(b[:k]) {
			want = 1
		}
		if got := validUTF8Prefix(b, k); got != want {
			t.Fatalf("validUTF8Prefix(%q, %d) = %d, utf8.Valid = %d", b, k, got, want)
		}
	})
}

// FuzzDecryptTokenReference: DecryptToken, constant-time, agrees with the
// straightforward decryption it replaced on every input, causes included.
func FuzzDecryptTokenReference(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), "sk")
	f.Add(make([]byte, 48), "")
	for _, tok := range []string{"user-42", "", "0123456789abcdef", "é\xff"} {
		enc, err := EncryptToken(tok, "sk", nil)
		if err != nil {
			f.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(enc)
		f.Add(raw, "sk")
		bad := append([]byte(nil), raw...)
		bad[len(bad)-17] ^= 0x03
		f.Add(bad, "sk")
	}
	f.Fuzz(func(t *testing.T, raw []byte, sk string) {
		apiToken := base64.StdEncoding.EncodeToString(raw)
		got, gotErr := DecryptToken(apiToken, sk)
		want, wantErr := referenceDecryptToken(apiToken, sk)
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || errors.Is(gotErr, ErrToken) != (wantErr != nil) {
			t.Fatalf("DecryptToken = %q, %v; reference %q, %v", got, gotErr, want, wantErr)
		}
	})
}

// referenceDecryptToken is DecryptToken as first written: it branches on the
// padding and stops at the first bad byte.
func referenceDecryptToken(apiToken, sk string) (string, error) {
	block, err := aes.NewCipher(tokenKey(sk))
	if err != nil {
		return "", err
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(apiToken)
	if err != nil {
		return "", fmt.Errorf("%w: not base64", ErrToken)
	}
	if len(raw) < 2*aes.BlockSize || len(raw)%aes.BlockSize != 0 {
		return "", fmt.Errorf("%w: length is not IV plus whole blocks", ErrToken)
	}
	iv, pt := raw[:aes.BlockSize], raw[aes.BlockSize:]
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, pt)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize {
		return "", fmt.Errorf("%w: bad padding", ErrToken)
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return "", fmt.Errorf("%w: bad padding", ErrToken)
		}
	}
	pt = pt[:len(pt)-pad]
	if !utf8.Valid(pt) {
		return "", fmt.Errorf("%w: not UTF-8", ErrToken)
	}
	return string(pt), nil
}
