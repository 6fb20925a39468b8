package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// ReplayReport is what Replay found.
type ReplayReport struct {
	// Events is the number of events read; Accounts the number of accounts.
	Events   uint64
	Accounts int
	// Snapshots is the number of snapshot events read, each compared with
	// the fold of the events before it (a disagreement is a problem of its
	// account, counted among Mismatches).
	Snapshots int
	// Differ lists, by account id, every account with at least one event
	// whose stored balance or reserved amount differs from the fold, or that
	// the fold found inconsistent.
	Differ []AccountProblem
	// Balances holds every account's folded state at the end.
	Balances map[string]ledger.Account
}

// AccountProblem describes what is wrong with one account's events.
type AccountProblem struct {
	Account string
	// Mismatches counts events whose stored balance or reserved differ from
	// the fold (ledger.ErrMismatch); Inconsistent counts events the fold
	// could not apply cleanly (ledger.ErrInconsistent), undecodable ones
	// included.
	Mismatches, Inconsistent int
	// First is the first problem found, readable.
	First string
}

// Replay rebuilds every account's balance from the beginning of the QUOTA
// stream, up to its last message when Replay starts, checking the balance
// and reserved amount stored in each event against the fold (ledger.Check),
// and each snapshot against the fold of the events before it: every event
// is read, snapshots are only checked.
// progress, when not nil, is called after each event with the stream
// sequences read so far and the last one. It reads through an ordered
// consumer and changes nothing.
func Replay(ctx context.Context, js jetstream.JetStream, progress func(seq, last uint64)) (ReplayReport, error) {
	st, err := js.Stream(ctx, contract.StreamQuota)
	if err != nil {
		return ReplayReport{}, fmt.Errorf("replay: stream %s: %w", contract.StreamQuota, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return ReplayReport{}, fmt.Errorf("replay: stream %s: %w", contract.StreamQuota, err)
	}
	accts := map[string]*ledger.Account{}
	problems := map[string]*AccountProblem{}
	note := func(id string, err error) {
		p := problems[id]
		if p == nil {
			p = &AccountProblem{Account: id, First: err.Error()}
			problems[id] = p
		}
		if errors.Is(err, ledger.ErrMismatch) {
			p.Mismatches++
		} else {
			p.Inconsistent++
		}
	}
	var rep ReplayReport
	last := info.State.LastSeq
	if info.State.Msgs > 0 {
		err = readRange(ctx, js, contract.StreamQuota, contract.SubjectQuota+">", info.State.FirstSeq, last, func(m jetstream.Msg) error {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			rep.Events++
			id := strings.TrimPrefix(m.Subject(), contract.SubjectQuota)
			a := accts[id]
			if a == nil {
				a = ledger.NewAccount(id)
				accts[id] = a
			}
			seq := md.Sequence.Stream
			var ev ledger.Event
			err = json.Unmarshal(m.Data(), &ev)
			if err == nil && ev.Type == ledger.TypeSnapshot {
				rep.Snapshots++
			}
			if err != nil {
				a.Seq = max(a.Seq, seq)
				note(id, fmt.Errorf("%w: seq %d undecodable: %v", ledger.ErrInconsistent, seq, err))
			} else if err := a.Apply(ev, seq); err != nil {
				note(id, err)
			} else if err := a.Check(ev); err != nil {
				note(id, err)
			}
			if progress != nil {
				progress(seq, last)
			}
			return nil
		})
		if err != nil {
			return ReplayReport{}, fmt.Errorf("replay: %w", err)
		}
	}
	rep.Accounts = len(accts)
	rep.Balances = make(map[string]ledger.Account, len(accts))
	for id, a := range accts {
		rep.Balances[id] = *a
	}
	for _, p := range problems {
		rep.Differ = append(rep.Differ, *p)
	}
	sort.Slice(rep.Differ, func(i, j int) bool { return rep.Differ[i].Account < rep.Differ[j].Account })
	return rep, nil
}
