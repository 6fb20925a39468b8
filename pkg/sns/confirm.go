package sns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// maxConfirmBody bounds how much of the ConfirmSubscription answer is read.
const maxConfirmBody = 64 << 10

// Confirm confirms the subscription of a SubscriptionConfirmation by GETting
// its SubscribeURL with the Verifier's client. The caller must have verified e
// with Verify first: Confirm re-checks only the type, the topic and the URL
// rules (so that it never contacts a host Verify would refuse), not the
// signature.
//
// The answer must be 2xx without a redirect; at most 64 KiB of its body is
// read and discarded. A ctx without deadline gets Config.FetchTimeout.
//
// Errors: ErrMalformed for another Type, ErrUnknownTopic, ErrUntrustedURL
// (nothing contacted), ErrConfirm for a failed GET, a redirect or a non-2xx
// status.
func (v *Verifier) Confirm(ctx context.Context, e Envelope) error {
	if e.Type != TypeSubscriptionConfirmation {
		return fmt.Errorf("%w: %q is not a %s", ErrMalformed, e.Type, TypeSubscriptionConfirmation)
	}
	topic, ok := v.topics[e.TopicArn]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, e.TopicArn)
	}
	if err := v.hosts.checkSubscribeURL(e.SubscribeURL, topic); err != nil {
		return fmt.Errorf("SubscribeURL: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.fetchTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.SubscribeURL, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfirm, err)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfirm, transportCause(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxConfirmBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: status %d", ErrConfirm, resp.StatusCode)
	}
	return nil
}

// transportCause strips the URL from a client error: a SubscribeURL carries
// the subscription Token, which errors must not repeat.
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
