package sns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sdevents/sdevents/pkg/sns"
)

// The seed corpora are checked in under testdata/fuzz/<FuzzName>/ (made from
// the fixtures); f.Add adds only a few extra shapes.

// FuzzParseEnvelope: ParseEnvelope never panics, and whatever it accepts can
// be signed canonically and survives a JSON round trip unchanged.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(with(`"Subject":""`)))
	f.Add([]byte(`{"Type":"SubscriptionConfirmation"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := sns.ParseEnvelope(body)
		if err != nil {
			for _, s := range []error{sns.ErrMalformed, sns.ErrTooLarge, sns.ErrUnknownType} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error without sentinel: %v", err)
		}
		if _, err := sns.StringToSign(e); err != nil {
			t.Fatalf("accepted but not signable: %v", err)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := sns.ParseEnvelope(again)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, e2)
		}
	})
}

// FuzzStringToSign: StringToSign never panics and, when it succeeds, is
// exactly the concatenation of the signed keys and values.
func FuzzStringToSign(f *testing.F) {
	f.Add("Notification", "id", "", "arn", "S", true, "m", "", "2025-06-01T12:00:00Z")
	f.Add("SubscriptionConfirmation", "id", "tok", "arn", "", false, "m\n", "https://x/", "2025-06-01T12:00:00.000Z")
	f.Fuzz(func(t *testing.T, typ, id, token, topic, subject string, hasSubject bool, message, subURL, ts string) {
		e := sns.Envelope{
			Type: typ, MessageId: id, Token: token, TopicArn: topic, Message: message,
			SubscribeURL: subURL, Timestamp: ts, SignatureVersion: "1", Signature: "x", SigningCertURL: "u",
		}
		if hasSubject {
			e.Subject = &subject
		}
		got, err := sns.StringToSign(e)
		if err != nil {
			return
		}
		var want bytes.Buffer
		add := func(k, v string) { want.WriteString(k + "\n" + v + "\n") }
		add("Message", message)
		add("MessageId", id)
		if typ == sns.TypeNotification {
			if hasSubject {
				add("Subject", subject)
			}
			add("Timestamp", ts)
		} else {
			add("SubscribeURL", subURL)
			add("Timestamp", ts)
			add("Token", token)
		}
		add("TopicArn", topic)
		add("Type", typ)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("got %q, want %q", got, want.Bytes())
		}
	})
}

// FuzzVerifyMutation replaces one signed field of a valid fixture with the
// fuzzer's value (or toggles Subject): the result must never verify.
func FuzzVerifyMutation(f *testing.F) {
	fs := loadFixtures(f)
	s := newCertServer(f)
	for _, fx := range fs {
		u, _ := url.Parse(fx.env.SigningCertURL)
		s.serve(u.Path, fx.certPEM)
	}
	// One verifier per fixture, its clock at the fixture's Timestamp.
	verifiers := make([]*sns.Verifier, len(fs))
	for i, fx := range fs {
		verifiers[i] = s.verifierAt(f, fx.at(f), fixtureTopics(fs)...)
		if err := verifiers[i].Verify(context.Background(), fx.env); err != nil {
			f.Fatalf("%s: %v", fx.name, err)
		}
	}
	f.Add(uint8(0), uint8(0), "Hello world!")
	f.Add(uint8(2), uint8(2), "")
	f.Fuzz(func(t *testing.T, which, field uint8, value string) {
		fx := fs[int(which)%len(fs)]
		v := verifiers[int(which)%len(fs)]
		e := fx.env
		fld := signedFields[int(field)%len(signedFields)]
		switch {
		case fld.name == "Subject" && e.Subject == nil:
			e.Subject = &value // adding a Subject
		case fld.name == "Subject" && value == *e.Subject:
			e.Subject = nil // removing it
		default:
			p := fld.get(&e)
			if *p == value {
				return // no change
			}
			*p = value
		}
		if !signedIn(fx.env.Type, fld.name) {
			return // e.g. a confirmation's Subject, a notification's Token
		}
		vv := v
		if fld.name == "TopicArn" {
			// Allow the new topic, so that the signature must refuse it.
			if _, err := sns.ParseTopicARN(value); err != nil {
				return
			}
			vv = s.verifierAt(t, fx.at(t), value)
		}
		if err := vv.Verify(context.Background(), e); err == nil {
			t.Fatalf("%s with %s = %q verified", fx.name, fld.name, value)
		}
	})
}

// signedIn reports whether field is part of the canonical string of typ.
func signedIn(typ, field string) bool {
	switch field {
	case "Subject":
		return typ == sns.TypeNotification
	case "Token", "SubscribeURL":
		return typ != sns.TypeNotification
	}
	return true
}

// TestFuzzCorpusPresent keeps the checked-in seed corpora from vanishing.
func TestFuzzCorpusPresent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"FuzzParseEnvelope", "FuzzStringToSign", "FuzzVerifyMutation"} {
		files, err := filepath.Glob("testdata/fuzz/" + name + "/*")
		if err != nil || len(files) < 3 {
			t.Errorf("%s: %d corpus files (%v)", name, len(files), err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil || !strings.HasPrefix(string(b), "go test fuzz v1\n") || !utf8.Valid(b) {
				t.Errorf("%s: not a fuzz corpus file (%v)", file, err)
			}
		}
	}
}
