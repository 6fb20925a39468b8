package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// DefaultAdminCallTimeout bounds one call of an AdminClient whose context
// has no deadline.
const DefaultAdminCallTimeout = 30 * time.Second

// maxAdminAnswer bounds the answer an AdminClient reads (an account view
// holds at most 50 ledger events).
const maxAdminAnswer = 16 << 20

// AdminClient calls the operator API of a running deployment (CONTRACT §7),
// the API Routes serves: what `sdevents quota grant`, `balance` and
// `ledger` speak. An account is named by its id or as token:<token>.
type AdminClient struct {
	// Base is the API's base URL, such as http://127.0.0.1:8080.
	Base string
	// Token is the admin bearer token (admin.token).
	Token string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// Grant adds req's credits to acct (removes them when negative). A repeat
// of an applied grant id changes nothing and answers Repeat. Any answer but
// a 2xx is an error carrying the server's status and message.
func (c AdminClient) Grant(ctx context.Context, acct string, req GrantRequest) (quotarpc.GrantAnswer, error) {
	var ans quotarpc.GrantAnswer
	err := c.call(ctx, http.MethodPost, AdminAccountPath(acct)+"/credits", req, &ans)
	return ans, err
}

// Account returns acct's balance, open reservations and latest ledger
// events.
func (c AdminClient) Account(ctx context.Context, acct string) (AccountView, error) {
	var v AccountView
	err := c.call(ctx, http.MethodGet, AdminAccountPath(acct), nil, &v)
	return v, err
}

// AdminAccountPath is the operator API's path of an account id or
// token:<token>; the token is escaped into one path segment.
func AdminAccountPath(acct string) string {
	return "/v1/admin/accounts/" + url.PathEscape(acct)
}

// call sends body (when not nil) as JSON and decodes a 2xx answer into out;
// any other answer is an error carrying the server's message.
func (c AdminClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultAdminCallTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			ErrMessage string `json:"errMessage"`
		}
		if json.Unmarshal(raw, &e) != nil || e.ErrMessage == "" {
			e.ErrMessage = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("admin API: %s: %s", resp.Status, e.ErrMessage)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("admin API: decode answer: %w", err)
	}
	return nil
}
