package ingress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/sns"
)

// Values of a key of contract.BucketSNSConfirmations.
const (
	confirmPending   = "pending"   // a delivery claimed the GET and is making it
	confirmConfirmed = "confirmed" // the GET succeeded
)

// errConfirming marks a delivery whose subscription another request is
// confirming right now: SNS should deliver it again later (503), when the
// outcome is known.
var errConfirming = errors.New("subscription confirmation in progress")

// confirmOnce GETs the SubscribeURL of a verified and stored
// SubscriptionConfirmation at most once per source and Token, whatever the
// replays, replicas and restarts, and reports whether this call made the GET.
//
// It claims the GET by creating the token's key in contract.BucketSNSConfirmations; a
// delivery that finds the key "confirmed" does nothing, one that finds it
// "pending" answers 503 (its holder is at it) unless the claim is older than
// src.confirmLease (its holder died), which it then takes over. The GET runs
// apart from the request's context, so that a client hanging up does not
// waste it; when it fails, the key is deleted, so that SNS's next delivery
// tries again, and the error (wrapping sns.ErrConfirm, 502) asks for it.
// Bucket failures wrap httpserver.ErrUnavailable.
func (s *Service) confirmOnce(ctx context.Context, source string, src *snsSource, env sns.Envelope) (bool, error) {
	key := confirmKey(source, env.TopicArn, env.Token)
	var rev uint64
	for attempt := 0; ; attempt++ {
		r, err := s.confirms.Create(ctx, key, []byte(confirmPending))
		if err == nil {
			rev = r
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("%w: claiming the confirmation: %v", httpserver.ErrUnavailable, err)
		}
		e, err := s.confirms.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && attempt == 0:
			continue // the GET failed and its claim was released: claim again
		case err != nil:
			return false, fmt.Errorf("%w: reading the confirmation: %v", httpserver.ErrUnavailable, err)
		case string(e.Value()) == confirmConfirmed:
			return false, nil
		case time.Since(e.Created()) < src.confirmLease:
			return false, fmt.Errorf("%w: %w", httpserver.ErrUnavailable, errConfirming)
		}
		// A claim its holder abandoned: take it over, unless another
		// delivery does first.
		if rev, err = s.confirms.Update(ctx, key, []byte(confirmPending), e.Revision()); err != nil {
			return false, fmt.Errorf("%w: %w", httpserver.ErrUnavailable, errConfirming)
		}
		break
	}

	// The outcome is recorded even when the client has gone.
	ctx = context.WithoutCancel(ctx)
	confirmErr := src.verifier.Confirm(ctx, env)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if confirmErr != nil {
		if err := s.confirms.Delete(rctx, key, jetstream.LastRevision(rev)); err != nil {
			// The claim stays until its lease ends; a later delivery
			// takes it over then.
			return true, errors.Join(confirmErr, fmt.Errorf("releasing the claim: %v", err))
		}
		return true, confirmErr
	}
	// Should the record fail, the claim stays "pending" and a delivery after
	// its lease confirms again, which SNS tolerates; the event is stored and
	// the subscription confirmed, so the answer is a success either way.
	_, _ = s.confirms.Update(rctx, key, []byte(confirmConfirmed), rev)
	return true, nil
}

// confirmKey names the confirmation of token for topic on source: a hash, so
// that the bucket never holds a Token.
func confirmKey(source, topic, token string) string {
	h := sha256.Sum256([]byte(source + "\x00" + topic + "\x00" + token))
	return "c" + hex.EncodeToString(h[:16])
}
