package sns

import "bytes"

// StringToSign returns the canonical string SNS signs for e: each signed key
// as "Key\nValue\n", in this order:
//
//	Notification:                      Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type
//	SubscriptionConfirmation,
//	UnsubscribeConfirmation:           Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type
//
// Other fields (UnsubscribeURL, SignatureVersion, Signature, SigningCertURL)
// are not signed. It fails like Envelope.Validate, with ErrUnknownType or
// ErrMalformed.
func StringToSign(e Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	add := func(k, v string) {
		b.WriteString(k)
		b.WriteByte('\n')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	add("Message", e.Message)
	add("MessageId", e.MessageId)
	if e.Type == TypeNotification {
		if e.Subject != nil {
			add("Subject", *e.Subject)
		}
		add("Timestamp", e.Timestamp)
	} else {
		add("SubscribeURL", e.SubscribeURL)
		add("Timestamp", e.Timestamp)
		add("Token", e.Token)
	}
	add("TopicArn", e.TopicArn)
	add("Type", e.Type)
	return b.Bytes(), nil
}
