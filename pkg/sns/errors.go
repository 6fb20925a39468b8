package sns

import "errors"

// sentinels lists the sentinels below, for Sentinel.
var sentinels = []error{
	ErrTooLarge, ErrMalformed, ErrUnknownType, ErrUnknownTopic, ErrUnsupportedVersion, ErrUntrustedURL,
	ErrCertFetch, ErrCertificate, ErrStale, ErrSignature, ErrConfirm, ErrRawDelivery,
}

// Sentinel returns the sentinel of this package that err wraps, or nil. Its
// text names the kind of failure and nothing of the case: no host, address,
// resolver or certificate detail, which err's own text may hold. Callers
// answer with it and log err.
func Sentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is); the text after the sentinel describes the case
// and never contains a certificate body or a Token.
var (
	// ErrTooLarge is returned by ParseEnvelope for a body over MaxEnvelopeSize.
	// Callers answer 413.
	ErrTooLarge = errors.New("sns: envelope too large")

	// ErrMalformed is returned for a body that is not a JSON object, a field of
	// the wrong JSON type, a duplicated field, a missing required field or an
	// unparsable Timestamp. Callers answer 400 (SNS does not retry 4xx).
	ErrMalformed = errors.New("sns: malformed envelope")

	// ErrUnknownType is returned for a Type other than Notification,
	// SubscriptionConfirmation and UnsubscribeConfirmation. Callers answer 400.
	ErrUnknownType = errors.New("sns: unknown message type")

	// ErrUnknownTopic is returned by Verify when TopicArn is not in the
	// Verifier's allow-list; nothing has been fetched. Callers answer 403.
	ErrUnknownTopic = errors.New("sns: topic not allowed")

	// ErrUnsupportedVersion is returned when SignatureVersion is neither "1"
	// nor "2". Callers answer 403.
	ErrUnsupportedVersion = errors.New("sns: unsupported signature version")

	// ErrUntrustedURL is returned when SigningCertURL or SubscribeURL is not on
	// a trusted host or breaks the URL rules (scheme, port, user info, path,
	// query, fragment). Nothing has been fetched. Callers answer 403.
	ErrUntrustedURL = errors.New("sns: untrusted url")

	// ErrCertFetch is returned when the signing certificate could not be
	// retrieved for a transient reason (connection, TLS handshake, timeout,
	// non-200 status). Callers answer 5xx so that SNS retries.
	ErrCertFetch = errors.New("sns: fetching signing certificate")

	// ErrCertificate is returned when a trusted host answered with something
	// that is not an acceptable signing certificate: a redirect, an oversized
	// or non-PEM body, more than one block, a certificate issued to another
	// name, a non-RSA key, or a certificate not valid at the message's
	// Timestamp. Callers answer 403.
	ErrCertificate = errors.New("sns: bad signing certificate")

	// ErrStale is returned by Verify when Timestamp is older than
	// Config.MaxAge, or more than MaxClockSkew ahead of the Verifier's clock:
	// SNS no longer retries such a message, so it is a replay. Nothing has
	// been fetched. Callers answer 403.
	ErrStale = errors.New("sns: stale message")

	// ErrSignature is returned when Signature is not valid base64 or does not
	// verify against the canonical string. Callers answer 403.
	ErrSignature = errors.New("sns: signature mismatch")

	// ErrConfirm is returned by Confirm when the SubscribeURL GET failed or
	// answered with a non-2xx status. Callers answer 5xx so that SNS resends
	// the confirmation, or leave it to the operator.
	ErrConfirm = errors.New("sns: confirming subscription")

	// ErrRawDelivery is not returned by this package: it is for the HTTP layer,
	// which refuses deliveries for which IsRawDelivery is true (raw message
	// delivery carries no signature). Callers answer 403.
	ErrRawDelivery = errors.New("sns: raw message delivery refused")
)
