package contract

// The public streams: downstream teams read them (CONTRACT §6).
const (
	StreamIngress = "INGRESS"
	StreamQuota   = "QUOTA"
	StreamArchive = "ARCHIVE"
	StreamJobs    = "JOBS"
	StreamDead    = "DEAD"
)

// The internal streams and key-value buckets, each written by one service.
const (
	StreamIngressClaims    = "INGRESS_CLAIMS"
	StreamQuotaTimers      = "QUOTA_TIMERS"
	StreamArchiverTimers   = "ARCHIVER_TIMERS"
	StreamArchiverRetry    = "ARCHIVER_RETRY"
	StreamAggregatorTimers = "AGGREGATOR_TIMERS"
	StreamAggregatorFacts  = "AGGREGATOR_FACTS"

	BucketSNSConfirmations = "SNS_CONFIRMATIONS"
	BucketArchiveKeys      = "ARCHIVE_KEYS"
	BucketAggregatorState  = "AGGREGATOR_STATE"
	BucketConsoleSessions  = "CONSOLE_SESSIONS"
)

// Subjects of the public streams. Each constant is a prefix; what follows it
// is in its comment. Every token has a bound (CONTRACT §6).
const (
	// SubjectPrefix starts every public subject; SubjectEvents matches
	// them all.
	SubjectPrefix = "sd."
	SubjectEvents = SubjectPrefix + ">"
	// SubjectCallback + source + "." + bizType (callback.SubjectToken).
	SubjectCallback = SubjectPrefix + "callback."
	// SubjectSNS + source + "." + the SNS message type.
	SubjectSNS = SubjectPrefix + "sns."
	// SubjectQuota + account id: the account's ledger.
	SubjectQuota = SubjectPrefix + "quota."
	// SubjectArchive starts every ARCHIVE subject, the three below.
	SubjectArchive = SubjectPrefix + "archive."
	// SubjectArchiveStored + account id: one per archived image.
	SubjectArchiveStored = SubjectArchive + "stored."
	// SubjectArchiveFailed + account id: one per image that could not be
	// archived.
	SubjectArchiveFailed = SubjectArchive + "failed."
	// SubjectArchiveDropped + account id: one per task result with more
	// images than the archiver takes.
	SubjectArchiveDropped = SubjectArchive + "dropped."
	// SubjectJobFinished + account id: one record per finished job.
	SubjectJobFinished = SubjectPrefix + "job.finished."
	// SubjectDead + consumer: one record per message a consumer gave up on.
	SubjectDead = SubjectPrefix + "dead."
)

// Subjects of the internal streams, in the sdevents.* namespace, which is
// not part of the sd.> contract. Prefixes, like the public ones.
const (
	// SubjectIngressClaim + the claim key of a callback sign: INGRESS_CLAIMS.
	SubjectIngressClaim = "sdevents.ingress.claim."
	// SubjectQuotaTimer + account + "." + invoke token: the expiry
	// schedules of reservations (QUOTA_TIMERS); they fire on SubjectQuotaDue
	// + account.
	SubjectQuotaTimer = "sdevents.quota.timer."
	SubjectQuotaDue   = "sdevents.quota.due."
	// SubjectArchiverTimer + event id: the archiver's retry schedules
	// (ARCHIVER_TIMERS); they fire on SubjectArchiverDue.
	SubjectArchiverTimer = "sdevents.archiver.timer."
	SubjectArchiverDue   = "sdevents.archiver.due."
	// SubjectArchiverRetry + account id: operators' archive retry requests
	// (ARCHIVER_RETRY, pkg/archiveretry).
	SubjectArchiverRetry = "sdevents.archiver.retry."
	// SubjectAggregatorTimer + key token: the aggregator's idle timers
	// (AGGREGATOR_TIMERS); they fire on SubjectAggregatorDue.
	SubjectAggregatorTimer = "sdevents.aggregator.timer."
	SubjectAggregatorDue   = "sdevents.aggregator.due."
	// SubjectAggregatorFact + job id: the facts of large open jobs (AGGREGATOR_FACTS).
	SubjectAggregatorFact = "sdevents.aggregator.fact."
)

// CloudEvents sources (ce-source) of the events.
const (
	// SourcePrefix starts every source; a dead letter's source is
	// SourcePrefix + its consumer.
	SourcePrefix = "/sdevents/"
	// SourceCallbacks + source name: INGRESS callbacks.
	SourceCallbacks = SourcePrefix + "callbacks/"
	// SourceSNS + source name: INGRESS SNS messages.
	SourceSNS        = SourcePrefix + "sns/"
	SourceQuota      = SourcePrefix + "quota"
	SourceArchiver   = SourcePrefix + "archiver"
	SourceAggregator = SourcePrefix + "aggregator"
	SourceConsole    = SourcePrefix + "console"
)

// CloudEvents types (ce-type) of the events.
const (
	// TypeCallback + bizType.
	TypeCallback = "sd.callback."
	// TypeSNS + the SNS message type.
	TypeSNS = "sd.sns."
	// TypeQuota + a QuotaType.
	TypeQuota          = "sd.quota."
	TypeArchiveStored  = "sd.archive.stored"
	TypeArchiveFailed  = "sd.archive.failed"
	TypeArchiveDropped = "sd.archive.dropped"
	TypeJobFinished    = "sd.job.finished"
	TypeDead           = "sd.dead"
	// TypeArchiverRetry is an operator's archive retry request.
	TypeArchiverRetry = "sdevents.archiver.retry"
)
