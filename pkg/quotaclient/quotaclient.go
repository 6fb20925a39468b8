// Package quotaclient asks the quota service for grants and account states
// over NATS request/reply (the operator subjects of package quotarpc): any
// replica of the quota queue group answers, in this process or another.
// The console grants through it. It does not log; its errors wrap the
// quotarpc sentinels.
package quotaclient

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Client sends operator requests on one NATS connection. It is safe for
// concurrent use.
type Client struct {
	nc *nats.Conn
}

// New returns a client on nc, which stays the caller's to close.
func New(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Grant asks a quota replica to apply req (quotarpc.SubjectGrant) and
// returns the account's state after it. It blocks until a replica answers
// or ctx ends. Its error wraps quotarpc.ErrInvalid,
// quotarpc.ErrInsufficientCredits or quotarpc.ErrUnavailable (no answer:
// the grant may be stored or not; send it again with the same id).
func (c *Client) Grant(ctx context.Context, req quotarpc.GrantRequest) (quotarpc.GrantAnswer, error) {
	var ans quotarpc.GrantAnswer
	err := c.call(ctx, quotarpc.SubjectGrant, req, &ans)
	return ans, err
}

// Account asks a quota replica for the state of account id
// (quotarpc.SubjectAccount), caught up with the QUOTA stream. It blocks
// until a replica answers or ctx ends. Its error wraps quotarpc.ErrInvalid
// (id is no account id) or quotarpc.ErrUnavailable.
func (c *Client) Account(ctx context.Context, id string) (quotarpc.AccountState, error) {
	var st quotarpc.AccountState
	err := c.call(ctx, quotarpc.SubjectAccount, quotarpc.AccountRequest{Account: id}, &st)
	return st, err
}

// call sends req on subject and decodes the reply's result into out.
func (c *Client) call(ctx context.Context, subject string, req, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("quota request: %w", err)
	}
	m, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", quotarpc.ErrUnavailable, subject, err)
	}
	var r quotarpc.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("%w: %s: undecodable reply: %v", quotarpc.ErrUnavailable, subject, err)
	}
	return r.Decode(out)
}
