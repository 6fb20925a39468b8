package sns_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestFixturesVerify checks every real AWS-signed fixture with its real
// SigningCertURL: the dialer routes the AWS host to the local TLS server,
// whose certificate for that host is trusted through ExtraCAPEM. Each
// verifier's clock is moved to its fixture's Timestamp (they are years old).
func TestFixturesVerify(t *testing.T) {
	t.Parallel()
	fs := loadFixtures(t)
	s := newCertServer(t)
	for _, f := range fs {
		u, _ := url.Parse(f.env.SigningCertURL)
		s.serve(u.Path, f.certPEM)
	}
	for _, f := range fs {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			v := s.verifierAt(t, f.at(t).Add(time.Minute), f.env.TopicArn)
			if err := v.Verify(context.Background(), f.env); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFixturesVerifyExtraHost serves the fixtures' certificates from the local
// server as an extra host (SigningCertURL is not signed, so it may be moved).
func TestFixturesVerifyExtraHost(t *testing.T) {
	t.Parallel()
	fs := loadFixtures(t)
	s := newCertServer(t)
	for _, f := range fs {
		cfg := s.config(fixtureTopics(fs)...)
		cfg.DialContext = nil // only the extra host is reachable
		cfg.Now = func() time.Time { return f.at(t) }
		v, err := sns.NewVerifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(f.env.SigningCertURL)
		s.serve(u.Path, f.certPEM)
		e := f.env
		e.SigningCertURL = s.url(u.Path)
		if err := v.Verify(context.Background(), e); err != nil {
			t.Errorf("%s: %v", f.name, err)
		}
	}
}

// signedFields lists, per field, how to read and replace it.
var signedFields = []struct {
	name string
	get  func(e *sns.Envelope) *string
}{
	{"Message", func(e *sns.Envelope) *string { return &e.Message }},
	{"MessageId", func(e *sns.Envelope) *string { return &e.MessageId }},
	{"Subject", func(e *sns.Envelope) *string { return e.Subject }},
	{"Timestamp", func(e *sns.Envelope) *string { return &e.Timestamp }},
	{"TopicArn", func(e *sns.Envelope) *string { return &e.TopicArn }},
	{"Type", func(e *sns.Envelope) *string { return &e.Type }},
	{"Token", func(e *sns.Envelope) *string { return &e.Token }},
	{"SubscribeURL", func(e *sns.Envelope) *string { return &e.SubscribeURL }},
}

// mutation is one signed field of one fixture with one byte changed.
type mutation struct {
	fixture fixture
	field   string
	pos     int
	env     sns.Envelope
}

// oneByteMutations changes each byte of each signed field of f in two ways
// (flipping bit 0 and bit 5).
func oneByteMutations(f fixture) []mutation {
	var out []mutation
	for _, fld := range signedFields {
		cp := f.env
		p := fld.get(&cp)
		if p == nil || *p == "" {
			continue // not in this message type
		}
		orig := *p
		for i := range len(orig) {
			for _, delta := range []byte{0x01, 0x20} {
				e := f.env
				if e.Subject != nil {
					subj := *e.Subject
					e.Subject = &subj
				}
				b := []byte(orig)
				b[i] ^= delta
				*fld.get(&e) = string(b)
				out = append(out, mutation{fixture: f, field: fld.name, pos: i, env: e})
			}
		}
	}
	return out
}

// TestFixturesOneByteChange changes every byte of every signed field of every
// fixture, one at a time, and adds or removes Subject: none may verify. Every
// mutated TopicArn that is still a topic ARN is allowed too, so that for those
// the signature, not the allow-list, is what refuses them.
func TestFixturesOneByteChange(t *testing.T) {
	t.Parallel()
	fs := loadFixtures(t)
	s := newCertServer(t)
	topics := fixtureTopics(fs)
	var all []mutation
	for _, f := range fs {
		u, _ := url.Parse(f.env.SigningCertURL)
		s.serve(u.Path, f.certPEM)
		for _, m := range oneByteMutations(f) {
			all = append(all, m)
			if m.field == "TopicArn" {
				if _, err := sns.ParseTopicARN(m.env.TopicArn); err == nil {
					topics = append(topics, m.env.TopicArn)
				}
			}
		}
	}
	// One verifier per fixture, its clock at the fixture's Timestamp.
	verifiers := map[string]*sns.Verifier{}
	for _, f := range fs {
		verifiers[f.name] = s.verifierAt(t, f.at(t), topics...)
	}
	sameRegion := func(a, b string) bool {
		ta, errA := sns.ParseTopicARN(a)
		tb, errB := sns.ParseTopicARN(b)
		return errA == nil && errB == nil && ta.Region == tb.Region && ta.Partition == tb.Partition
	}
	for _, m := range all {
		err := verifiers[m.fixture.name].Verify(context.Background(), m.env)
		if err == nil {
			t.Fatalf("%s: %s[%d] changed to %q verified", m.fixture.name, m.field, m.pos, *fieldOf(&m.env, m.field))
		}
		wantSig := m.field == "Message" || m.field == "MessageId" || m.field == "Subject" || m.field == "Token" ||
			m.field == "TopicArn" && sameRegion(m.env.TopicArn, m.fixture.env.TopicArn)
		if wantSig && !errors.Is(err, sns.ErrSignature) {
			t.Fatalf("%s: %s[%d]: err = %v, want ErrSignature", m.fixture.name, m.field, m.pos, err)
		}
	}
	if len(all) < 10000 {
		t.Fatalf("only %d mutations", len(all))
	}
	for _, f := range fs {
		v := verifiers[f.name]
		// Removing or adding a Notification's Subject changes the canonical
		// string (a confirmation's Subject is not signed).
		e := f.env
		if e.Subject != nil {
			e.Subject = nil
		} else {
			empty := ""
			e.Subject = &empty
		}
		err := v.Verify(context.Background(), e)
		if e.Type == sns.TypeNotification && !errors.Is(err, sns.ErrSignature) {
			t.Errorf("%s: subject toggled: err = %v, want ErrSignature", f.name, err)
		}
		// Unsigned fields may change.
		e = f.env
		e.UnsubscribeURL = "https://example.com/"
		if err := v.Verify(context.Background(), e); err != nil {
			t.Errorf("%s: UnsubscribeURL changed: %v", f.name, err)
		}
	}
}

// fieldOf returns the signed field called name.
func fieldOf(e *sns.Envelope, name string) *string {
	for _, f := range signedFields {
		if f.name == name {
			return f.get(e)
		}
	}
	return nil
}

// TestMessageChangeIsSignatureError pins the error of a forged body.
func TestMessageChangeIsSignatureError(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	v := s.verifier(t, testTopic)
	e := note(t, awsCertURL)
	if err := v.Verify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	e.Message = strings.Replace(e.Message, "true", "false", 1)
	if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrSignature) {
		t.Fatalf("err = %v, want ErrSignature", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	v := s.verifier(t, testTopic)
	for _, version := range []string{sns.SignatureV1, sns.SignatureV2} {
		for _, certURL := range []string{awsCertURL, s.url(testCertPath)} {
			e := note(t, certURL)
			if err := sns.Sign(&e, signingKey(t), version); err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(context.Background(), e); err != nil {
				t.Errorf("v%s %s: %v", version, certURL, err)
			}
			// A signature of one version does not verify as the other.
			if version == sns.SignatureV1 {
				e.SignatureVersion = sns.SignatureV2
			} else {
				e.SignatureVersion = sns.SignatureV1
			}
			if err := v.Verify(context.Background(), e); !errors.Is(err, sns.ErrSignature) {
				t.Errorf("v%s relabelled: err = %v, want ErrSignature", version, err)
			}
		}
	}
	sub := confirmation(t, awsCertURL, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x")
	if err := v.Verify(context.Background(), sub); err != nil {
		t.Errorf("confirmation: %v", err)
	}
}

// TestRegionalSigningNames covers partitions whose certificate carries
// another name than sns.amazonaws.com.
func TestRegionalSigningNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		topic   string
		host    string
		certCN  string
		wantErr error
	}{
		{"china", "arn:aws-cn:sns:cn-north-1:123456789012:t", "sns.cn-north-1.amazonaws.com.cn", "sns-cn-north-1.amazonaws.com.cn", nil},
		{"china with global name", "arn:aws-cn:sns:cn-north-1:123456789012:t", "sns.cn-north-1.amazonaws.com.cn", "sns.amazonaws.com", sns.ErrCertificate},
		{"opt-in region", "arn:aws:sns:af-south-1:123456789012:t", "sns.af-south-1.amazonaws.com", "sns-signing.af-south-1.amazonaws.com", nil},
		{"opt-in name of another region", "arn:aws:sns:af-south-1:123456789012:t", "sns.af-south-1.amazonaws.com", "sns-signing.me-south-1.amazonaws.com", sns.ErrCertificate},
		{"china host for a global region", "arn:aws:sns:us-east-1:123456789012:t", "sns.us-east-1.amazonaws.com.cn", "sns.amazonaws.com", sns.ErrUntrustedURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			s.serve(testCertPath, makeCert(t, certSpec{cn: tt.certCN}))
			v := s.verifier(t, tt.topic)
			e := note(t, "https://"+tt.host+testCertPath)
			e.TopicArn = tt.topic
			if err := sns.Sign(&e, signingKey(t), sns.SignatureV2); err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(context.Background(), e); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
