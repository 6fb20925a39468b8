package sns_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sdevents/sdevents/pkg/sns"
)

func TestConfirm(t *testing.T) {
	t.Parallel()
	const subPath = "/"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		edit    func(e *sns.Envelope)
		wantErr error
		wantHit bool
	}{
		{name: "confirmed", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("<ConfirmSubscriptionResponse/>"))
		}, wantHit: true},
		{name: "large answer is capped", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		}, wantHit: true},
		{name: "server error", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		}, wantErr: sns.ErrConfirm, wantHit: true},
		{name: "forbidden", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no", http.StatusForbidden)
		}, wantErr: sns.ErrConfirm, wantHit: true},
		{name: "redirect not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("Action") == "ConfirmSubscription" {
				http.Redirect(w, r, "/?followed=1", http.StatusFound)
			}
		}, wantErr: sns.ErrConfirm, wantHit: true},
		{name: "notification", edit: func(e *sns.Envelope) { e.Type = sns.TypeNotification }, wantErr: sns.ErrMalformed},
		{name: "unsubscribe confirmation", edit: func(e *sns.Envelope) { e.Type = sns.TypeUnsubscribeConfirmation }, wantErr: sns.ErrMalformed},
		{name: "foreign host", edit: func(e *sns.Envelope) {
			e.SubscribeURL = "https://evil.example/?Action=ConfirmSubscription"
		}, wantErr: sns.ErrUntrustedURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			var hits atomic.Int64
			var gotQuery atomic.Value
			s.handle(subPath, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("followed") != "" {
					t.Error("redirect followed")
				}
				hits.Add(1)
				gotQuery.Store(r.URL.RawQuery)
				if tt.handler != nil {
					tt.handler(w, r)
				}
			})
			v := s.verifier(t, testTopic)
			query := "?Action=ConfirmSubscription&TopicArn=" + testTopic + "&Token=2336412f"
			for _, subURL := range []string{s.url(subPath) + query, "https://sns.us-east-1.amazonaws.com/" + query} {
				hits.Store(0)
				e := confirmation(t, awsCertURL, subURL)
				if tt.edit != nil {
					tt.edit(&e)
				}
				err := v.Confirm(context.Background(), e)
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("%s: err = %v, want %v", subURL, err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "2336412f") {
					t.Fatalf("error repeats the token: %v", err)
				}
				if got := hits.Load() == 1; got != tt.wantHit {
					t.Fatalf("%s: %d requests, want hit=%v", subURL, hits.Load(), tt.wantHit)
				}
				if tt.wantHit && gotQuery.Load() != query[1:] {
					t.Fatalf("query %q, want %q", gotQuery.Load(), query[1:])
				}
			}
		})
	}
}

// TestConfirmAfterVerify is the caller's sequence: Verify, then Confirm.
func TestConfirmAfterVerify(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	var confirmed atomic.Bool
	s.handle("/", func(w http.ResponseWriter, r *http.Request) {
		confirmed.Store(r.URL.Query().Get("Action") == "ConfirmSubscription")
	})
	v := s.verifier(t, testTopic)
	e := confirmation(t, awsCertURL, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x")
	if err := v.Verify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := v.Confirm(context.Background(), e); err != nil || !confirmed.Load() {
		t.Fatalf("err = %v, confirmed = %v", err, confirmed.Load())
	}
}
