package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/services/quota"
)

// addQuotaCommands adds to `sdevents quota` the operator commands, which
// call a running deployment's admin API.
func addQuotaCommands(g *globals, cmd *cobra.Command) {
	cmd.AddCommand(newQuotaGrantCmd(g), newQuotaBalanceCmd(g), newQuotaLedgerCmd(g))
}

func newQuotaGrantCmd(g *globals) *cobra.Command {
	c := &adminFlags{g: g}
	var id string
	cmd := &cobra.Command{
		Use:   "grant ACCOUNT CREDITS",
		Short: "Add credits to an account (negative CREDITS remove them); ACCOUNT is an id or token:<token>",
		Long: `Add credits to an account; negative CREDITS remove them (write "--" before
a negative amount: sdevents quota grant ACCOUNT -- -5). ACCOUNT is an account id
or token:<token>. With --id the grant is idempotent: repeating it changes nothing.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("credits %q: want an integer", args[1])
			}
			ac, err := c.client()
			if err != nil {
				return err
			}
			ans, err := ac.Grant(cmd.Context(), args[0], quota.GrantRequest{Credits: &n, ID: id})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if ans.Repeat {
				fmt.Fprintf(out, "grant %q was already applied to %s; nothing changed\n", ans.ID, ans.Account)
			} else {
				fmt.Fprintf(out, "granted %d credits to %s\n", ans.Credits, ans.Account)
			}
			fmt.Fprintf(out, "balance %d, reserved %d\n", ans.Balance, ans.Reserved)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "idempotency key: a grant repeated with the same id changes nothing")
	c.flags(cmd)
	return cmd
}

func newQuotaBalanceCmd(g *globals) *cobra.Command {
	c := &adminFlags{g: g}
	cmd := &cobra.Command{
		Use:   "balance ACCOUNT",
		Short: "Show an account's balance and open reservations; ACCOUNT is an id or token:<token>",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := c.account(cmd.Context(), args[0])
			if err != nil || c.printJSON(cmd.OutOrStdout(), v) {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "account   %s\nbalance   %d\nreserved  %d\ngranted   %d\ncommitted %d\n",
				v.Account, v.Balance, v.Reserved, v.Granted, v.Committed)
			if len(v.Reservations) > 0 {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "\nINVOKE ID\tCREDITS\tRESERVED AT\tEXPIRES AT")
				for _, r := range v.Reservations {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.InvokeID, r.Credits, stamp(r.ReservedAt), stamp(r.ExpiresAt))
				}
				return w.Flush()
			}
			return nil
		},
	}
	c.flags(cmd)
	return cmd
}

func newQuotaLedgerCmd(g *globals) *cobra.Command {
	c := &adminFlags{g: g}
	cmd := &cobra.Command{
		Use:   "ledger ACCOUNT",
		Short: "Show an account's latest ledger events; ACCOUNT is an id or token:<token>",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := c.account(cmd.Context(), args[0])
			if err != nil || c.printJSON(cmd.OutOrStdout(), v.Ledger) {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tAT\tTYPE\tINVOKE ID / GRANT ID\tCREDITS\tBALANCE\tRESERVED\tREASON")
			for _, e := range v.Ledger {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", e.Seq, stamp(e.At), e.Type, e.InvokeID+e.ID,
					e.Credits, e.Balance, e.Reserved, e.Reason)
			}
			return w.Flush()
		},
	}
	c.flags(cmd)
	return cmd
}

// adminFlags are the flags of the operator commands: where the admin API
// is, its token, and the output format.
type adminFlags struct {
	g      *globals
	url    string
	token  string
	asJSON bool
}

func (c *adminFlags) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.url, "url", "", "base URL of the admin API (default http://<http.addr> of the configuration)")
	cmd.Flags().StringVar(&c.token, "token", "", "admin bearer token (default admin.token of the configuration; prefer SDEVENTS_ADMIN_TOKEN)")
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "print the answer as JSON")
}

// printJSON prints v as indented JSON when --json was given and reports
// whether it did.
func (c *adminFlags) printJSON(w io.Writer, v any) bool {
	if !c.asJSON {
		return false
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return true
}

// client is the admin API client of the flags, completed from the
// configuration: http://<http.addr> and admin.token.
func (c *adminFlags) client() (quota.AdminClient, error) {
	ac := quota.AdminClient{Base: c.url, Token: c.token}
	if ac.Base == "" || ac.Token == "" {
		cfg, err := c.g.load()
		if err != nil {
			return quota.AdminClient{}, err
		}
		if ac.Base == "" {
			ac.Base = "http://" + cfg.HTTP.Addr
		}
		if ac.Token == "" {
			ac.Token = cfg.Admin.Token.Reveal()
		}
	}
	if ac.Token == "" {
		return quota.AdminClient{}, errors.New("no admin token: set admin.token (SDEVENTS_ADMIN_TOKEN) or pass --token")
	}
	return ac, nil
}

// account asks the admin API for an account's view.
func (c *adminFlags) account(ctx context.Context, acct string) (quota.AccountView, error) {
	ac, err := c.client()
	if err != nil {
		return quota.AccountView{}, err
	}
	return ac.Account(ctx, acct)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
