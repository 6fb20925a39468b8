package ingress

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// abandonWindow bounds how long the ingress retries an abandonment; past
// it, or when the process stops, the reservation's expiry is the backstop.
const abandonWindow = 2 * time.Minute

// abandonAttempt bounds one attempt: background work is not held to the
// platform's answer deadline.
const abandonAttempt = 10 * time.Second

// abandonLater asks the quota service, in the background and until it
// answers, to abandon the apiAccessPreInvoke decide request named request,
// for invokeID, whose answer the ingress gave up waiting for: the platform
// was told the credit service was busy, so a reservation the quota stored
// for that request anyway, or will store when the request reaches it, must
// not hold its credits until it expires (services/quota/abandon.go). What
// another request for the same invokeId was told is not touched.
func (s *Service) abandonLater(account, invokeID, request string) {
	payload, err := json.Marshal(quotarpc.AbandonRequest{Account: account, InvokeID: invokeID, RequestID: request})
	if err != nil {
		return
	}
	s.work.Add(1)
	go func() {
		defer s.work.Done()
		ctx, cancel := context.WithTimeout(s.bg, abandonWindow)
		defer cancel()
		for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			attempt, stop := context.WithTimeout(ctx, abandonAttempt)
			resp, err := s.nc.RequestWithContext(attempt, quotarpc.SubjectAbandon, payload)
			stop()
			var ans quotarpc.Answer
			if err == nil && json.Unmarshal(resp.Data, &ans) == nil && ans.Success {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}()
}
