package ingress

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/pkg/taskresult"
)

// snsSource is one configured SNS source with its verifier.
type snsSource struct {
	verifier    *sns.Verifier
	autoConfirm bool
	// confirmLease is how long a claim to confirm a subscription holds
	// (confirm.go): twice the bound of the GET it covers.
	confirmLease time.Duration
}

// newSNSSource builds the verifier of one source from its configuration and
// the ingress settings (maxAge: Config.SNSMaxAge).
func newSNSSource(c SNSSource, maxAge time.Duration, opts ...func(*sns.Config)) (*snsSource, error) {
	sc := sns.Config{TopicARNs: c.TopicARNs, ExtraHosts: c.CertHosts, MaxAge: maxAge}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sns source %s: ca_file: %w", c.Name, err)
		}
		sc.ExtraCAPEM = pem
	}
	for _, o := range opts {
		o(&sc)
	}
	v, err := sns.NewVerifier(sc)
	if err != nil {
		return nil, fmt.Errorf("sns source %s: %w", c.Name, err)
	}
	lease := 2 * cmp.Or(sc.FetchTimeout, sns.DefaultFetchTimeout)
	return &snsSource{verifier: v, autoConfirm: c.AutoConfirm, confirmLease: lease}, nil
}

// handleSNS serves POST /v1/sns/:source: verify the envelope (certificate
// from the topic's SNS host only), store it once per MessageId, confirm
// subscriptions once per Token (confirm.go) and answer 200 after the ack.
// Forged, unknown-topic, stale (older than ingress.sns_max_age) and
// unverifiable messages get 403, which SNS does not retry; transient
// failures (certificate fetch, confirmation, JetStream) get 5xx, which it
// does.
//
// An answer's errMessage names the kind of failure only: an error's text may
// name hosts, addresses and resolvers (of a certificate fetch, a
// confirmation, the store), which go to the request's log line instead.
func (s *Service) handleSNS(c echo.Context) error {
	err := s.serveSNS(c)
	if err == nil {
		return nil
	}
	httpserver.Info(c).Err = err
	return publicError{err}
}

// publicError is an SNS failure as answered: its text is the kind of failure
// (publicReason); it wraps the whole error, which chooses the status.
type publicError struct{ err error }

func (e publicError) Error() string { return publicReason(e.err) }
func (e publicError) Unwrap() error { return e.err }

// httpSentinels are the httpserver sentinels an SNS failure may wrap.
var httpSentinels = []error{
	httpserver.ErrNotFound, httpserver.ErrTooLarge, httpserver.ErrBadRequest, httpserver.ErrUnavailable,
}

// publicReason returns the text of the sentinel err wraps: an sns one first,
// then an httpserver one; "internal error" otherwise.
func publicReason(err error) string {
	if s := sns.Sentinel(err); s != nil {
		return s.Error()
	}
	for _, s := range httpSentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "internal error"
}

// serveSNS is handleSNS with errors as they are.
func (s *Service) serveSNS(c echo.Context) error {
	info := httpserver.Info(c)
	name := c.Param("source")
	src, ok := s.snsSources[name]
	if !ok {
		return fmt.Errorf("%w: unknown SNS source %q", httpserver.ErrNotFound, name)
	}
	info.Source = name
	if sns.IsRawDelivery(c.Request().Header) {
		return fmt.Errorf("%w: raw message delivery carries no signature", sns.ErrRawDelivery)
	}
	body, err := readBody(c.Request(), min(s.cfg.MaxBody, sns.MaxEnvelopeSize))
	if err != nil {
		return err
	}
	env, err := sns.ParseEnvelope(body)
	if err != nil {
		return err
	}
	info.Kind = env.Type
	if h := c.Request().Header.Get("x-amz-sns-message-type"); h != "" && h != env.Type {
		return fmt.Errorf("%w: x-amz-sns-message-type %q differs from Type", sns.ErrMalformed, h)
	}
	ctx := c.Request().Context()
	if err := src.verifier.Verify(ctx, env); err != nil {
		return err
	}

	acct, taskID := account.Unknown, ""
	if env.Type == sns.TypeNotification {
		r := taskresult.ParseSNSMessage(env.Message)
		taskID = r.ID
		if r.Account != "" {
			acct = account.FromToken(r.Account)
		}
	}
	info.Account, info.InvokeID = acct, taskID

	key := snsKey(name, env.MessageId)
	msg := event.Message(contract.SubjectSNS+name+"."+env.Type, event.Meta{
		ID: key, Source: contract.SourceSNS + name, Type: contract.TypeSNS + env.Type, Time: s.now(),
		Subject: acct, ContentType: "application/json",
	}, body)
	for _, h := range []struct{ k, v string }{
		{event.HeaderSDSource, name}, {event.HeaderSDAccount, acct}, {event.HeaderSNSType, env.Type},
		{event.HeaderSNSMsgID, env.MessageId}, {event.HeaderSNSTopicARN, env.TopicArn}, {event.HeaderTaskID, taskID},
	} {
		if h.v != "" {
			event.Set(msg, h.k, h.v)
		}
	}
	stored, err := s.store.Put(ctx, msg, key, true)
	if err != nil {
		return err
	}
	info.Outcome, info.EventID, info.Seq = "stored", key, stored.Seq
	if stored.Duplicate {
		info.Outcome = "duplicate"
	}
	if env.Type == sns.TypeSubscriptionConfirmation && src.autoConfirm {
		// Stored first: the confirmation is on record even when the GET
		// fails, and a redelivery retries only the GET.
		made, err := s.confirmOnce(ctx, name, src, env)
		if err != nil {
			return err
		}
		if made {
			info.Outcome = "confirmed"
		}
	}
	return answerStored(c)
}

// snsKey identifies an SNS message across retries: SNS keeps the MessageId.
func snsKey(source, messageID string) string {
	h := sha256.Sum256([]byte(source + "\x00" + messageID))
	return "sns-" + hex.EncodeToString(h[:16])
}
