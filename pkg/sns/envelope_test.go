package sns_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/sns"
)

// minimal is a valid Notification body that the cases below bend.
const minimal = `{"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:123456789012:t",` +
	`"Message":"hi","Timestamp":"2025-06-01T12:00:00.000Z","SignatureVersion":"1","Signature":"AAAA",` +
	`"SigningCertURL":"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-00.pem"}`

// with returns minimal with its last '}' replaced by extra fields.
func with(extra string) string { return strings.TrimSuffix(minimal, "}") + "," + extra + "}" }

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	confirmation := `{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:123456789012:t",` +
		`"Message":"hi","Timestamp":"2025-06-01T12:00:00Z","SignatureVersion":"1","Signature":"AAAA",` +
		`"SigningCertURL":"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-00.pem"`
	tests := []struct {
		name    string
		body    string
		wantErr error
	}{
		{"minimal", minimal, nil},
		{"unknown keys ignored", with(`"MessageAttributes":{"a":{"Type":"String","Value":"b"}},"X":[1,2]`), nil},
		{"null subject is absent", with(`"Subject":null`), nil},
		{"whitespace around", " \n" + minimal + "\n ", nil},
		{"confirmation", confirmation + `,"Token":"tok","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"}`, nil},
		{"confirmation without token", confirmation + `,"SubscribeURL":"https://x"}`, sns.ErrMalformed},
		{"confirmation without SubscribeURL", confirmation + `,"Token":"tok"}`, sns.ErrMalformed},
		{"empty", ``, sns.ErrMalformed},
		{"array", `[` + minimal + `]`, sns.ErrMalformed},
		{"string", `"Notification"`, sns.ErrMalformed},
		{"number", `42`, sns.ErrMalformed},
		{"null", `null`, sns.ErrMalformed},
		{"truncated", minimal[:len(minimal)-1], sns.ErrMalformed},
		{"two objects", minimal + minimal, sns.ErrMalformed},
		{"trailing garbage", minimal + "x", sns.ErrMalformed},
		{"duplicate Message", with(`"Message":"evil"`), sns.ErrMalformed},
		{"case variant of Message", with(`"message":"evil"`), sns.ErrMalformed},
		{"case variant of Type", with(`"TYPE":"Notification"`), sns.ErrMalformed},
		{"long s folds to Message", with(`"Me\u017f\u017fage":"evil"`), sns.ErrMalformed},
		{"long s folds to Message (raw UTF-8)", with("\"Meſſage\":\"evil\""), sns.ErrMalformed},
		{"Kelvin sign folds to Token", with("\"To\u212aen\":\"evil\""), sns.ErrMalformed},
		{"number value", strings.Replace(minimal, `"MessageId":"m"`, `"MessageId":7`, 1), sns.ErrMalformed},
		{"object value", with(`"Subject":{}`), sns.ErrMalformed},
		{"missing Signature", strings.Replace(minimal, `"Signature":"AAAA",`, ``, 1), sns.ErrMalformed},
		{"empty Message", strings.Replace(minimal, `"Message":"hi"`, `"Message":""`, 1), sns.ErrMalformed},
		{"missing Type", strings.Replace(minimal, `"Type":"Notification",`, ``, 1), sns.ErrMalformed},
		{"bad Timestamp", strings.Replace(minimal, `2025-06-01T12:00:00.000Z`, `yesterday`, 1), sns.ErrMalformed},
		{"unknown Type", strings.Replace(minimal, `"Notification"`, `"Notice"`, 1), sns.ErrUnknownType},
		{"invalid UTF-8", strings.Replace(minimal, `"hi"`, "\"h\xffi\"", 1), sns.ErrMalformed},
		{"too large", with(`"Pad":"` + strings.Repeat("x", sns.MaxEnvelopeSize) + `"`), sns.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sns.ParseEnvelope([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestParseEnvelopeSubjectPresence(t *testing.T) {
	t.Parallel()
	absent, err := sns.ParseEnvelope([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	empty, err := sns.ParseEnvelope([]byte(with(`"Subject":""`)))
	if err != nil {
		t.Fatal(err)
	}
	if absent.Subject != nil || empty.Subject == nil || *empty.Subject != "" {
		t.Fatalf("absent %v, empty %v", absent.Subject, empty.Subject)
	}
	a, _ := sns.StringToSign(absent)
	e, _ := sns.StringToSign(empty)
	if bytes.Contains(a, []byte("Subject")) || !bytes.Contains(e, []byte("Subject\n\nTimestamp")) {
		t.Fatalf("absent:\n%s\nempty:\n%s", a, e)
	}
}

func TestParseEnvelopeFixtures(t *testing.T) {
	t.Parallel()
	for _, f := range loadFixtures(t) {
		var m map[string]any
		if err := json.Unmarshal(f.raw, &m); err != nil {
			t.Fatal(err)
		}
		_, hasSubject := m["Subject"]
		if (f.env.Subject != nil) != hasSubject || f.env.Message != m["Message"] || f.env.Signature != m["Signature"] {
			t.Errorf("%s: parsed %+v", f.name, f.env)
		}
	}
}

func TestStringToSign(t *testing.T) {
	t.Parallel()
	subject := "S"
	base := sns.Envelope{
		MessageId: "id", TopicArn: "arn", Message: "m\nx", Timestamp: "2025-06-01T12:00:00Z",
		SignatureVersion: "1", Signature: "sig", SigningCertURL: "u", UnsubscribeURL: "unsub",
	}
	tests := []struct {
		name    string
		edit    func(e *sns.Envelope)
		want    string
		wantErr error
	}{
		{
			name: "notification without subject",
			edit: func(e *sns.Envelope) { e.Type = sns.TypeNotification },
			want: "Message\nm\nx\nMessageId\nid\nTimestamp\n2025-06-01T12:00:00Z\nTopicArn\narn\nType\nNotification\n",
		},
		{
			name: "notification with subject",
			edit: func(e *sns.Envelope) { e.Type, e.Subject = sns.TypeNotification, &subject },
			want: "Message\nm\nx\nMessageId\nid\nSubject\nS\nTimestamp\n2025-06-01T12:00:00Z\nTopicArn\narn\nType\nNotification\n",
		},
		{
			name: "subscription confirmation ignores subject",
			edit: func(e *sns.Envelope) {
				e.Type, e.Subject, e.Token, e.SubscribeURL = sns.TypeSubscriptionConfirmation, &subject, "tok", "sub"
			},
			want: "Message\nm\nx\nMessageId\nid\nSubscribeURL\nsub\nTimestamp\n2025-06-01T12:00:00Z\nToken\ntok\nTopicArn\narn\nType\nSubscriptionConfirmation\n",
		},
		{
			name: "unsubscribe confirmation",
			edit: func(e *sns.Envelope) {
				e.Type, e.Token, e.SubscribeURL = sns.TypeUnsubscribeConfirmation, "tok", "sub"
			},
			want: "Message\nm\nx\nMessageId\nid\nSubscribeURL\nsub\nTimestamp\n2025-06-01T12:00:00Z\nToken\ntok\nTopicArn\narn\nType\nUnsubscribeConfirmation\n",
		},
		{
			name:    "unknown type",
			edit:    func(e *sns.Envelope) { e.Type = "Other" },
			wantErr: sns.ErrUnknownType,
		},
		{
			name:    "confirmation without token",
			edit:    func(e *sns.Envelope) { e.Type, e.SubscribeURL = sns.TypeSubscriptionConfirmation, "sub" },
			wantErr: sns.ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := base
			tt.edit(&e)
			got, err := sns.StringToSign(e)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestIsRawDelivery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		set   bool
		want  bool
	}{
		{"true", true, true},
		{"True", true, true},
		{" true ", true, true},
		{"false", true, false},
		{"", true, false},
		{"", false, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.set {
			h.Set("x-amz-sns-rawdelivery", tt.value)
		}
		if got := sns.IsRawDelivery(h); got != tt.want {
			t.Errorf("IsRawDelivery(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}
