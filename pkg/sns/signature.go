package sns

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Signature versions SNS uses.
const (
	SignatureV1 = "1" // RSA PKCS#1 v1.5 with SHA-1
	SignatureV2 = "2" // RSA PKCS#1 v1.5 with SHA-256
)

// digest hashes msg with the hash of version. It fails with
// ErrUnsupportedVersion for any version but "1" and "2".
func digest(version string, msg []byte) (crypto.Hash, []byte, error) {
	switch version {
	case SignatureV1:
		h := sha1.Sum(msg)
		return crypto.SHA1, h[:], nil
	case SignatureV2:
		h := sha256.Sum256(msg)
		return crypto.SHA256, h[:], nil
	default:
		return 0, nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, version)
	}
}

// Sign sets e.SignatureVersion to version and e.Signature to the base64 RSA
// PKCS#1 v1.5 signature of StringToSign(*e) with key, as SNS does. It is for
// tests and simulators; e.SigningCertURL must be set by the caller to where the
// matching certificate is served.
//
// Errors: ErrUnsupportedVersion, the errors of StringToSign, or the error of
// rsa.SignPKCS1v15. e is unchanged on error.
func Sign(e *Envelope, key *rsa.PrivateKey, version string) error {
	cp := *e
	cp.SignatureVersion = version
	if cp.Signature == "" {
		cp.Signature = "-" // Validate requires one; it is not signed.
	}
	msg, err := StringToSign(cp)
	if err != nil {
		return err
	}
	h, sum, err := digest(version, msg)
	if err != nil {
		return err
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, h, sum)
	if err != nil {
		return fmt.Errorf("sns: signing: %w", err)
	}
	e.SignatureVersion = version
	e.Signature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// checkSignature verifies e.Signature over StringToSign(e) with pub.
// Errors: ErrUnsupportedVersion, ErrMalformed, ErrUnknownType, ErrSignature.
func checkSignature(e Envelope, pub *rsa.PublicKey) error {
	sig, err := base64.StdEncoding.Strict().DecodeString(e.Signature)
	if err != nil {
		return fmt.Errorf("%w: Signature is not base64", ErrSignature)
	}
	msg, err := StringToSign(e)
	if err != nil {
		return err
	}
	h, sum, err := digest(e.SignatureVersion, msg)
	if err != nil {
		return err
	}
	if err := rsa.VerifyPKCS1v15(pub, h, sum, sig); err != nil {
		return fmt.Errorf("%w: version %s", ErrSignature, e.SignatureVersion)
	}
	return nil
}
