package simulator

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
)

// CallbackSigner signs callbacks with one key pair of a source as the
// platform does: the token is encrypted with AES-128-CBC under SHA-256(sk)[:16]
// and a random IV, and sign is base64(HMAC-SHA256(sk, ak + nonce + body +
// timestamp [+ token + bizType + apiId + invokeId])), the bracket only for a
// non-blank bizType (callback.Sign, checked against the seed's vectors).
type CallbackSigner struct {
	Key callback.Key
	// Rand supplies IVs and nonces; crypto/rand when nil.
	Rand io.Reader
	// Now stamps the requests (milliseconds); time.Now when nil.
	Now func() time.Time
}

// Sign returns the query parameters of a fresh request: a new IV for the
// token, a new nonce and the current time. token is the user's token in
// clear; an empty token sends no apiToken. Every call gives different
// parameters, as every retry of the platform does.
func (s CallbackSigner) Sign(apiID, bizType, invokeID, token string, body []byte) (callback.Params, error) {
	rnd := s.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var nonce [12]byte
	if _, err := io.ReadFull(rnd, nonce[:]); err != nil {
		return callback.Params{}, fmt.Errorf("simulator: nonce: %w", err)
	}
	p := callback.Params{
		APIID: apiID, BizType: bizType, InvokeID: invokeID,
		Nonce:     hex.EncodeToString(nonce[:]),
		Timestamp: strconv.FormatInt(now().UnixMilli(), 10),
	}
	if token != "" {
		enc, err := callback.EncryptToken(token, s.Key.SK, rnd)
		if err != nil {
			return callback.Params{}, err
		}
		p.APIToken = enc
	}
	p.Sign = callback.Sign(s.Key, p, body, token)
	return p, nil
}

// Query encodes the seven protocol parameters as the platform sends them.
// Values are form-encoded, so the '+' of base64 travels as %2B.
func Query(p callback.Params) string {
	return url.Values{
		"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp},
	}.Encode()
}

// NewCallbackRequest returns the POST of a signed callback to base (the
// ingress, e.g. http://127.0.0.1:8080) for source.
func NewCallbackRequest(base, source string, p callback.Params, body []byte) (*http.Request, error) {
	u := base + "/v1/callbacks/" + url.PathEscape(source) + "?" + Query(p)
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("simulator: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}
