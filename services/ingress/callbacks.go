package ingress

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// handleCallback serves POST /v1/callbacks[/:source].
//
// Everything the query alone decides is checked before the body is read:
// source (404), syntax and bounds (400), the signature's inputs (401), and
// freshness (401). Only then is the body read, within its limit (413), the
// signature verified (401) and the sign claimed (401 when another request
// used it), before the event is stored and answered. A synchronous callback
// is answered by the quota service, asked once the event is stored, or while
// it is for the checks (decidedWhileStoring).
func (s *Service) handleCallback(c echo.Context) error {
	info := httpserver.Info(c)
	name := c.Param("source")
	if name == "" {
		name = s.first
	}
	verifier, ok := s.sources[name]
	if !ok {
		return fmt.Errorf("%w: unknown callback source %.64q", httpserver.ErrNotFound, name) // any length may arrive
	}
	info.Source = name
	p, err := callback.ParseParams(c.Request().URL.RawQuery)
	if errors.Is(err, callback.ErrUnsigned) {
		return unverified(info, err)
	}
	if err != nil {
		return err
	}
	info.Kind, info.InvokeID = p.BizType, p.InvokeID
	if !callback.SignShaped(p.Sign) {
		return unverified(info, callback.ErrSignature)
	}
	ts, _ := callback.ParseTimestamp(p.Timestamp) // checked by ParseParams
	kind := callback.KindOf(p.BizType)
	win := callback.Window{MaxAge: s.cfg.SyncSkew, MaxFuture: s.cfg.SyncSkew}
	if kind != callback.Sync {
		win.MaxAge = s.cfg.AsyncMaxAge
	}
	now := s.now()
	if err := win.Check(ts, now); err != nil {
		return unverified(info, err)
	}
	body, err := readBody(c.Request(), s.cfg.MaxBody)
	if err != nil {
		return err
	}
	v, err := verifier.Verify(p, body)
	if err != nil {
		return unverified(info, err)
	}
	acct := v.Account()
	info.Account = acct
	ctx := c.Request().Context()
	if kind == callback.Sync {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.SyncDeadline)
		defer cancel()
	}
	ttl := claimTTL(ts, now, max(s.cfg.AsyncMaxAge, s.cfg.SyncSkew))
	if err := s.claims.claim(ctx, claimKey(name, p.Sign), claimValue(p), ttl); err != nil {
		if errors.Is(err, errReplayed) {
			info.Outcome = "replayed"
			return unverified(info, err)
		}
		return err
	}
	key := dedupKey(name, p.BizType, p.InvokeID, body)
	msg := callbackMessage(name, p, event.Meta{
		ID:          key,
		Source:      contract.SourceCallbacks + name,
		Type:        contract.TypeCallback + p.BizType,
		Time:        now,
		Subject:     acct,
		ContentType: contentType(c.Request()),
	}, body)

	var req quotarpc.DecideRequest
	var early <-chan decided
	if kind == callback.Sync {
		req = quotarpc.NewDecideRequest(body)
		req.Source, req.BizType, req.Account, req.InvokeID, req.APIID = name, p.BizType, acct, p.InvokeID, p.APIID
		req.At, req.RequestID = now, quotarpc.NewRequestID()
		if decidedWhileStoring(p.BizType) {
			early = s.decideAsync(ctx, req)
		}
	}
	stored, err := s.store.Put(ctx, msg, key, kind != callback.Sync)
	if err != nil {
		return err
	}
	info.Outcome, info.EventID, info.Seq = "stored", key, stored.Seq
	if stored.Duplicate {
		info.Outcome = "duplicate"
	}
	if kind != callback.Sync {
		return answerStored(c)
	}
	var ans quotarpc.Answer
	if early != nil {
		d := <-early
		ans, err = d.ans, d.err
	} else {
		req.IngressSeq = stored.Seq
		ans, err = s.decide(ctx, req)
	}
	if err != nil {
		info.Outcome = "quota-unavailable"
		info.Err = err
		ans = s.unavailableAnswer(p.BizType)
		if p.BizType == callback.BizAPIPreInvoke && !ans.Success && acct != "" && p.InvokeID != "" {
			s.abandonLater(acct, p.InvokeID, req.RequestID)
		}
	} else if ans.Success {
		info.Outcome = "accepted"
	} else {
		info.Outcome = "refused"
	}
	return c.JSON(http.StatusOK, ans)
}

// errUnverified is the answer to every callback that fails verification,
// whatever the cause (a missing or wrong sign, an undecryptable token, a key
// pair of another source, a stale timestamp): 401 with one body. An answer
// that told the causes apart would be an oracle: a token whose padding holds
// answered otherwise than one whose padding does not lets an attacker decrypt
// any captured token byte by byte (pkg/callback's Verifier also takes the same
// time for both).
var errUnverified = fmt.Errorf("%w: callback not verified", httpserver.ErrUnauthorized)

// unverified records cause for the request's log line and metrics, which
// may tell it (it never holds a token), and returns errUnverified for the
// client.
func unverified(info *httpserver.RequestInfo, cause error) error {
	info.Err = cause
	if info.Outcome == "" {
		info.Outcome = "unverified"
	}
	return errUnverified
}

// callbackMessage builds the INGRESS message of a verified callback: the
// CloudEvents attributes of m, then sd-source, sd-account (when there is one)
// and the request-context parameters of p.
func callbackMessage(source string, p callback.Params, m event.Meta, body []byte) *nats.Msg {
	extra := [...]event.Header{
		{Key: event.HeaderSDSource, Value: source}, {Key: event.HeaderSDAccount, Value: m.Subject},
		{Key: event.HeaderAPIID, Value: p.APIID}, {Key: event.HeaderBizType, Value: p.BizType},
		{Key: event.HeaderInvokeID, Value: p.InvokeID}, {Key: event.HeaderAPIToken, Value: p.APIToken},
		{Key: event.HeaderSign, Value: p.Sign}, {Key: event.HeaderNonce, Value: p.Nonce},
		{Key: event.HeaderTimestamp, Value: p.Timestamp},
	}
	hs := extra[:]
	if m.Subject == "" {
		hs = append(hs[:1], hs[2:]...) // no account, no sd-account
	}
	return event.Message(contract.SubjectCallback+source+"."+callback.SubjectToken(p.BizType), m, body, hs...)
}

// storedAnswer is the body of the 200 answer to a stored asynchronous event,
// byte for byte what echo's c.JSON writes for quotarpc.Answer{Success: true}:
// compact JSON and a newline.
var storedAnswer = compactAnswer(quotarpc.Answer{Success: true})

func compactAnswer(a quotarpc.Answer) []byte {
	b, err := json.Marshal(a)
	if err != nil {
		panic(fmt.Sprintf("ingress: encoding a fixed answer: %v", err))
	}
	return append(b, '\n')
}

// answerStored answers 200 with storedAnswer. When c.JSON would write
// something else (echo's debug mode, a "pretty" query parameter, another JSON
// serializer), it is left to c.JSON.
func answerStored(c echo.Context) error {
	e := c.Echo()
	if !stdJSON(e.JSONSerializer) || e.Debug || strings.Contains(c.Request().URL.RawQuery, "pretty") {
		return c.JSON(http.StatusOK, quotarpc.Answer{Success: true})
	}
	return c.JSONBlob(http.StatusOK, storedAnswer)
}

// stdJSON reports whether s is echo's default encoding/json serializer.
func stdJSON(s echo.JSONSerializer) bool {
	switch s.(type) {
	case echo.DefaultJSONSerializer, *echo.DefaultJSONSerializer:
		return true
	}
	return false
}

// decidedWhileStoring reports whether the quota is asked for the answer to a
// synchronous callback of bizType while its event is being stored, rather
// than once it is: one round trip less on the platform's clock. That is so
// for the two checks, which change nothing: when the store fails (503), the
// quota's answer is dropped and nothing needs taking back. The reservation,
// commit and rollback are asked only once their event is stored, with its
// INGRESS sequence, so that a request answered 503 never reached the quota
// (docs/quota.md, "The RPC").
func decidedWhileStoring(bizType string) bool {
	switch bizType {
	case callback.BizImgGenControlConfig, callback.BizSDPreInvoke:
		return true
	}
	return false
}

// decided is the outcome of decide.
type decided struct {
	ans quotarpc.Answer
	err error
}

// decideAsync runs decide in its own goroutine and delivers its outcome on
// the channel; it ends when decide does, at the latest when ctx ends.
func (s *Service) decideAsync(ctx context.Context, req quotarpc.DecideRequest) <-chan decided {
	ch := make(chan decided, 1)
	go func() {
		ans, err := s.decide(ctx, req)
		ch <- decided{ans, err}
	}()
	return ch
}

// decide asks the quota service for the answer to a synchronous callback.
func (s *Service) decide(ctx context.Context, req quotarpc.DecideRequest) (quotarpc.Answer, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return quotarpc.Answer{}, fmt.Errorf("quota request: %w", err)
	}
	resp, err := s.nc.RequestWithContext(ctx, quotarpc.SubjectDecide, payload)
	if err != nil {
		return quotarpc.Answer{}, fmt.Errorf("quota request: %w", err)
	}
	var ans quotarpc.Answer
	if err := json.Unmarshal(resp.Data, &ans); err != nil {
		return quotarpc.Answer{}, fmt.Errorf("quota reply: %w", err)
	}
	return ans, nil
}

// unavailableAnswer is the answer when the quota service cannot decide in
// time: a refusal, or an acceptance when the operator chose fail-open.
func (s *Service) unavailableAnswer(bizType string) quotarpc.Answer {
	if s.cfg.FailOpen {
		ans := quotarpc.Answer{Success: true}
		if bizType == callback.BizImgGenControlConfig || bizType == callback.BizSDPreInvoke {
			ans.Data = &quotarpc.Data{Message: "Credit check unavailable; generation allowed.", ButtonText: "Generate"}
		}
		return ans
	}
	const msg = "The credit service is busy. Please try again in a moment."
	ans := quotarpc.Answer{Success: false, ErrMessage: msg}
	if bizType == callback.BizImgGenControlConfig || bizType == callback.BizSDPreInvoke {
		ans.Data = &quotarpc.Data{Message: msg, ButtonText: "Unavailable", Disabled: true}
	}
	return ans
}

// readBody reads at most limit bytes from r.Body; a larger body is
// ErrTooLarge. An error of the body that already maps to an answer (a
// middleware's limit wrapping the body) keeps it; any other is ErrBadRequest.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", httpserver.ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, fmt.Errorf("%w: %w", httpserver.ErrTooLarge, err)
		case httpserver.StatusOf(err) != http.StatusInternalServerError:
			return nil, fmt.Errorf("reading body: %w", err)
		}
		return nil, fmt.Errorf("%w: reading body: %v", httpserver.ErrBadRequest, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: limit %d bytes", httpserver.ErrTooLarge, limit)
	}
	return body, nil
}

func contentType(r *http.Request) string {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "application/json"
}

// dedupKey identifies a callback across the platform's retries: retries keep
// source, bizType, invokeId and body but get a fresh nonce, timestamp and sign.
// Fields are length-prefixed so that no two tuples share a key.
func dedupKey(source, bizType, invokeID string, body []byte) string {
	h := sha256.New()
	for _, f := range [...]string{source, bizType, invokeID} {
		writeField(h, len(f))
		_, _ = io.WriteString(h, f)
	}
	writeField(h, len(body))
	h.Write(body)
	var sum [sha256.Size]byte
	var key [len("cb-") + 32]byte
	copy(key[:], "cb-")
	hex.Encode(key[len("cb-"):], h.Sum(sum[:0])[:16])
	return string(key[:])
}

// writeField writes the big-endian 64-bit length prefix of a key field.
func writeField(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}
