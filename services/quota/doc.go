// Package quota is the credit ledger service: it answers the platform's
// synchronous callbacks (over the NATS request/reply of package quotarpc)
// from per-account state folded from the QUOTA stream, appending every change
// to sd.quota.<account> with optimistic concurrency so that no replica can
// spend a credit twice. Reservations expire through JetStream message
// schedules in QUOTA_TIMERS, which survive restarts and are handled by
// whichever replica the quota-expiry consumer hands them to. A replica keeps
// the accounts it uses in a bounded cache and loads them from their latest
// snapshot event. Operators grant credits and read accounts over the HTTP
// admin API (Routes) or, as the console does, over NATS on the operator
// subjects of quotarpc (Grant, View).
//
// The rules live in the pure package ledger; this package is the adapter:
// state caching, the append/catch-up loop, timers, RPC and HTTP. See
// docs/quota.md.
package quota
