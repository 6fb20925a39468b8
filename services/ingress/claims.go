package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// claimMargin is added to a claim's lifetime: it covers the differences
// between the clocks of the ingress replicas, which judge freshness each by
// its own.
const claimMargin = time.Minute

// errReplayed is returned by claims.claim for a sign already accepted with
// other fields: a replay whose characters were moved between the parts of
// the signed string, which has no separators. It is answered like any
// verification failure.
var errReplayed = errors.New("sign already used by a request with other fields")

// claims makes a callback's sign acceptable once per source while it is
// fresh, across every ingress replica and restart (docs/design.md, "Replays
// of a sign"). The signed string joins its fields without separators, so
// moving characters from one field to the next (invokeId into apiId, say)
// keeps the sign valid; the platform never sends one sign twice except as
// the same request. A claim is a message on a subject of its own, created
// only while that subject is empty, holding a digest of the request's
// fields, and gone when the sign could no longer pass the freshness check.
type claims struct {
	js      jetstream.JetStream
	stream  jetstream.Stream // INGRESS_CLAIMS, for reading a claim back
	timeout time.Duration
}

// claim records that the request whose fields digest to value used the sign
// behind key, for ttl. It returns nil when the claim is new or when it holds
// value already (a byte-identical repeat, which the store's de-duplication
// answers as the first, or a retry after a crash between claim and store);
// errReplayed when it holds another value; and an error wrapping
// httpserver.ErrUnavailable when the claim could not be stored or read (the
// platform retries).
//
// Claim before storing: a store that fails after a claim leaves a claim its
// own retry finds equal.
func (c *claims) claim(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	subject := contract.SubjectIngressClaim + key
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		_, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: value},
			jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithMsgTTL(ttl))
		if err == nil {
			return nil
		}
		if !wrongLastSequence(err) {
			return fmt.Errorf("%w: claim: %v", httpserver.ErrUnavailable, err)
		}
		m, err := c.stream.GetLastMsgForSubject(ctx, subject)
		switch {
		case err == nil && bytes.Equal(m.Data, value):
			return nil
		case err == nil:
			return errReplayed
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("%w: claim: read back: %v", httpserver.ErrUnavailable, err)
		}
		// The claim that took the subject is not readable: on a replicated
		// stream it may still be in flight, or it expired since. Look again.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: claim: %w", httpserver.ErrUnavailable, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// wrongLastSequence reports whether err is JetStream's refusal of an
// expected last subject sequence (10071; 10164 on a replicated stream).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// claimKey is the claim subject token of a sign: 128 bits of SHA-256 over
// the source and the sign, length-prefixed, in hex.
func claimKey(source, sign string) string {
	h := sha256.New()
	for _, f := range [...]string{source, sign} {
		writeField(h, len(f))
		_, _ = io.WriteString(h, f)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// claimValue digests the request's query fields (but the sign, which is in
// the key). The body needs no place in it: two requests that verify with
// the same sign have the same signed string, so when every other field is
// equal, so is the body, which is the rest of that string.
func claimValue(p callback.Params) []byte {
	h := sha256.New()
	for _, f := range [...]string{p.APIID, p.BizType, p.InvokeID, p.APIToken, p.Nonce, p.Timestamp} {
		writeField(h, len(f))
		_, _ = io.WriteString(h, f)
	}
	return h.Sum(nil)[:16]
}

// claimTTL is how long the claim of a sign whose timestamp is ts must last
// when made at now: until no variant of the request could pass the
// freshness check, whatever its bizType (a shifted bizType may change the
// window), plus claimMargin. JetStream counts TTLs in whole seconds.
func claimTTL(ts, now time.Time, widest time.Duration) time.Duration {
	ttl := ts.Add(widest).Sub(now) + claimMargin
	return max(ttl.Truncate(time.Second)+time.Second, time.Second)
}
