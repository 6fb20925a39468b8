package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(http.StatusOK)
	slow := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(slow) })

	if err := check(srv.URL+"/readyz", time.Second); err != nil {
		t.Errorf("200: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := check(srv.URL+"/readyz", time.Second); err == nil {
		t.Error("503: want an error")
	}
	if err := check(srv.URL+"/slow", 50*time.Millisecond); err == nil {
		t.Error("no answer within the timeout: want an error")
	}
	if err := check("http://127.0.0.1:1/readyz", time.Second); err == nil {
		t.Error("nothing listening: want an error")
	}
}
