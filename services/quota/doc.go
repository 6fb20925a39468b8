// Package quota is the credit ledger service: it answers the platform's
// synchronous callbacks from per-account state folded from the QUOTA stream,
// appending every change with optimistic concurrency so that no replica can
// spend a credit twice.
package quota
