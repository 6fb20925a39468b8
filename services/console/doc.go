// Package console is the operators' web console of sdevents: server-rendered
// pages under /console that read only the streams — the latest job records
// with thumbnails of their archived images (JOBS, the archive sink), account
// balances, ledgers and a grant form (QUOTA; balances and grants asked of
// the quota replicas over NATS), archive failures with a retry button
// (ARCHIVE), the messages the services' consumers gave up on (DEAD), and a
// live view of sd.> (event rates and a tail of events as server-sent
// events).
//
// Boundaries:
//   - Access: admin.token, as a bearer header or a session cookie set by the
//     login form; without a token the console is off (ErrDisabled). Forms
//     carry a per-session CSRF token (hidden field and cookie, SameSite=Strict)
//     and are small URL-encoded bodies, read only after those checks.
//     Logging out records the session as ended in the KV bucket
//     CONSOLE_SESSIONS, which every replica reads.
//   - Reads: direct gets only (Reader), no consumers: a page costs a handful
//     of requests whatever the size of the stream; every list is paged
//     backwards by stream sequence (?before=<seq>).
//   - Secrets: the user token never reaches the console decrypted; the
//     encrypted token (sd-api-token), the signature (sd-sign), URL query
//     strings and secret-looking JSON members are shown as [redacted].
//   - Writes: grants (requests to the quota replicas, whose rules decide
//     them: the Quota interface, pkg/quotaclient), archive retry requests
//     (sdevents.archiver.retry.<account>, see pkg/archiveretry) and ended
//     sessions (CONSOLE_SESSIONS). The console publishes no ledger event.
//
// docs/console.md describes the pages and the retry protocol.
package console
