// Package ledger is the quota domain: the credit ledger of one end-user account
// as a fold of its QUOTA stream events, and the pure decision functions that
// answer the platform's synchronous callbacks (CONTRACT §4) and the operator's
// grants (§7).
//
// It does no I/O and keeps no clock: every decision takes the current Account,
// a command and now, and returns a Decision holding at most one Event to append
// and the Answer the platform (or operator) is told. Decisions never modify the
// Account; the adapter appends the event to sd.quota.<account> with optimistic
// concurrency (expected last subject sequence) and, once it is stored, folds it
// with Account.Apply. On a conflict it catches up with the stream and decides
// again, so two replicas can never both spend the last credit.
//
// State is per account: the adapter keys accounts by the account id (CONTRACT
// §4), so a reservation of another account is simply unknown here and answered
// as such.
//
// Rules that hold on every path:
//
//   - balance = granted − committed − open reservations, and no decision lets it
//     go below zero;
//   - a reserve is answered success only while its credits are held: open,
//     unexpired and of the price asked, or committed at that price; a repeat
//     is answered from the first decision (a denial word for word) and
//     appends nothing, except a confirmed event the first time another
//     request is told an open reservation is held;
//   - an abandonment names the request whose answer was lost and releases a
//     reservation only when every request told it is held was abandoned:
//     nothing another request was told is taken back;
//   - a commit or rollback repeated after it succeeded succeeds again and
//     appends nothing; one that does not match the reservation's state
//     (unknown, expired, abandoned, or finished by the other transition) is a
//     refusal that appends nothing; a grant repeated with the same id appends
//     nothing;
//   - a reservation is expired from its expires_at on, whether or not its
//     expired event has been appended yet;
//   - a snapshot event carries the fold of the events before it and changes
//     nothing; FromSnapshot and the events after it give the same account as
//     every event from the first (up to what Forget dropped).
package ledger
