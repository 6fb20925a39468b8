package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/event"
)

// Status is the result of one check.
type Status string

// The results of a check.
const (
	Pass Status = "pass"
	Fail Status = "FAIL"
	// NotAvailable: the service the check depends on has not consumed
	// anything (not running, or not wired into this deployment yet).
	NotAvailable Status = "n/a"
)

// maxProblems bounds the problems listed per check.
const maxProblems = 20

// Check is one end-state check.
type Check struct {
	Name     string   `json:"name"`
	Status   Status   `json:"status"`
	Detail   string   `json:"detail"`
	Problems []string `json:"problems,omitempty"`
	// More counts the problems beyond those listed.
	More int `json:"more,omitempty"`
}

func (c *Check) problem(format string, args ...any) {
	c.Status = Fail
	if len(c.Problems) < maxProblems {
		c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
	} else {
		c.More++
	}
}

// Verification is the result of Verify.
type Verification struct {
	Checks []Check `json:"checks"`
	// Settled is how long Verify waited for the consumers to catch up.
	Settled time.Duration `json:"settled_ns"`
}

// Passed reports whether no check failed (checks not available do not
// fail).
func (v *Verification) Passed() bool {
	for _, c := range v.Checks {
		if c.Status == Fail {
			return false
		}
	}
	return true
}

// Check returns the check named name.
func (v *Verification) Check(name string) (Check, bool) {
	for _, c := range v.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// The streams Verify reads, and the subjects it tells apart, spelled here
// as CONTRACT §6 states them rather than taken from pkg/contract or
// streams/: the simulator is the independent check of the contract, so it
// shares neither names nor decoding with the services it checks.
const (
	streamIngress = "INGRESS"
	streamQuota   = "QUOTA"
	streamArchive = "ARCHIVE"
	streamJobs    = "JOBS"
)

// Names of the checks.
const (
	CheckIngress   = "INGRESS: every accepted request stored exactly once"
	CheckOverdraft = "QUOTA: no account ever below zero"
	CheckBalance   = "QUOTA: balance = grants − commits"
	CheckArchive   = "ARCHIVE: every image archived once, same SHA-256"
	CheckJobs      = "JOBS: exactly one record per job"
)

// WriteChecks writes the checks as a list.
func WriteChecks(w io.Writer, v *Verification) {
	for _, c := range v.Checks {
		fmt.Fprintf(w, "  %-4s  %s: %s\n", c.Status, c.Name, c.Detail)
		for _, p := range c.Problems {
			fmt.Fprintf(w, "          - %s\n", p)
		}
		if c.More > 0 {
			fmt.Fprintf(w, "          - … %d more\n", c.More)
		}
	}
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Settle is how long Verify waits for the end state: consumers catching
	// up, reservations expiring. The checks are repeated until they pass or
	// Settle has passed.
	Settle time.Duration
	// Poll is the pause between two rounds (default 1 s).
	Poll time.Duration
	// Progress receives one line per round while waiting; nil for none.
	Progress io.Writer
}

// Verify checks the end state of the deployment behind js against rec: it
// reads INGRESS, QUOTA, ARCHIVE and JOBS from shortly before the run
// started, repeating until every check passes or opt.Settle has passed,
// and returns the last round's result. It fails only when the streams
// cannot be read at the end.
func Verify(ctx context.Context, js jetstream.JetStream, rec *Record, opt VerifyOptions) (*Verification, error) {
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	start := time.Now()
	deadline := start.Add(opt.Settle)
	for round := 1; ; round++ {
		v, err := verifyOnce(ctx, js, rec)
		if err == nil && (v.Passed() || !time.Now().Before(deadline)) {
			v.Settled = time.Since(start)
			return v, nil
		}
		if err != nil && !time.Now().Before(deadline) {
			return nil, err
		}
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "settling (%s of %s): %s\n", time.Since(start).Round(time.Second), opt.Settle, pending(v, err))
		}
		if !sleep(ctx, opt.Poll) {
			return nil, ctx.Err()
		}
	}
}

func pending(v *Verification, err error) string {
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, c := range v.Checks {
		if c.Status == Fail {
			out = append(out, strings.SplitN(c.Name, ":", 2)[0]+" ("+c.Detail+")")
		}
	}
	return strings.Join(out, "; ")
}

// since is where the streams are read from: a minute before the run
// started (clock skew between the simulator and the server's stamps).
func (r *Record) since() time.Time { return r.Started.Add(-time.Minute) }

func verifyOnce(ctx context.Context, js jetstream.JetStream, rec *Record) (*Verification, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	deliveries, accounts, tasks := rec.snapshot()
	v := &Verification{}
	c, err := checkIngress(ctx, js, rec, deliveries)
	if err != nil {
		return nil, err
	}
	v.Checks = append(v.Checks, c)
	over, bal, err := checkQuota(ctx, js, rec, accounts)
	if err != nil {
		return nil, err
	}
	v.Checks = append(v.Checks, over, bal)
	c, err = checkArchive(ctx, js, rec, accounts)
	if err != nil {
		return nil, err
	}
	v.Checks = append(v.Checks, c)
	c, err = checkJobs(ctx, js, rec, accounts, tasks)
	if err != nil {
		return nil, err
	}
	v.Checks = append(v.Checks, c)
	return v, nil
}

// readStream calls fn for every message of stream on subjects (all when
// empty) stored at or after since, in order, through an ordered consumer.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, since time.Time, fn func(jetstream.Msg)) error {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || !info.State.LastTime.After(since) {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return fmt.Errorf("stream %s: consumer: %w", stream, err)
	}
	// FetchNoWait returns what is there at once; a short waiting Fetch
	// only when it returned nothing before the end was seen.
	for {
		batch, err := cons.FetchNoWait(512)
		if err != nil {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		n, done := drain(batch, fn, last)
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		if done {
			return nil
		}
		if n == 0 {
			batch, err := cons.Fetch(512, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return fmt.Errorf("stream %s: fetch: %w", stream, err)
			}
			n, done := drain(batch, fn, last)
			if done || n == 0 {
				return nil
			}
		}
	}
}

// drain hands every message of batch to fn and reports how many there were
// and whether the end of the stream (as it was when reading began) is
// reached.
func drain(batch jetstream.MessageBatch, fn func(jetstream.Msg), last uint64) (int, bool) {
	n, done := 0, false
	for m := range batch.Messages() {
		n++
		fn(m)
		if md, err := m.Metadata(); err == nil && (md.NumPending == 0 || md.Sequence.Stream >= last) {
			done = true
		}
	}
	return n, done
}

// consumed reports whether the durable consumer of INGRESS named name has
// delivered anything: whether the service behind it runs.
func consumed(ctx context.Context, js jetstream.JetStream, name string) bool {
	c, err := js.Consumer(ctx, streamIngress, name)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.Delivered.Stream > 0
}

func checkIngress(ctx context.Context, js jetstream.JetStream, rec *Record, deliveries map[string]Delivery) (Check, error) {
	c := Check{Name: CheckIngress, Status: Pass}
	counts := map[string]int{}
	wrongAccount := 0
	err := readStream(ctx, js, streamIngress, nil, rec.since(), func(m jetstream.Msg) {
		h := m.Headers()
		var key string
		if strings.HasPrefix(m.Subject(), "sd.sns.") {
			key = snsKey(event.Get(h, event.HeaderSDSource), event.Get(h, event.HeaderSNSMsgID))
		} else {
			key = callbackKey(event.Get(h, event.HeaderSDSource), event.Get(h, event.HeaderBizType), event.Get(h, event.HeaderInvokeID), m.Data())
		}
		if d, ok := deliveries[key]; ok {
			counts[key]++
			if acct := event.Get(h, event.HeaderSDAccount); d.Account != "" && acct != d.Account && d.Kind == "callback" {
				wrongAccount++
			}
		}
	})
	if err != nil {
		return c, err
	}
	var accepted, once, missing, dups, unanswered int
	for _, k := range slices.Sorted(maps.Keys(deliveries)) {
		d := deliveries[k]
		n := counts[k]
		if d.Accepted {
			accepted++
		} else if n == 1 {
			unanswered++
		}
		switch {
		case n > 1:
			dups++
			c.problem("%s %s stored %d times", d.Kind, d.Type, n)
		case d.Accepted && n == 0:
			missing++
			c.problem("%s %s accepted (%d attempts) but not in INGRESS", d.Kind, d.Type, d.Attempts)
		case d.Accepted:
			once++
		}
	}
	if wrongAccount > 0 {
		c.problem("%d events carry another account than the user's", wrongAccount)
	}
	c.Detail = fmt.Sprintf("%d accepted, %d stored once, %d missing, %d duplicated; %d stored without a 2xx answer (lost answers)",
		accepted, once, missing, dups, unanswered)
	return c, nil
}

// quotaEvent is the data of an sd.quota.<account> event (CONTRACT §6).
type quotaEvent struct {
	Type     string `json:"type"`
	Account  string `json:"account"`
	InvokeID string `json:"invoke_id"`
	Credits  int64  `json:"credits"`
	Balance  int64  `json:"balance"`
	Reserved int64  `json:"reserved"`
}

// ledgerFold is an account's ledger folded from its events.
type ledgerFold struct {
	granted, committed int64
	open               map[string]int64
	committedIDs       map[string]int64
	events             int
}

func (f *ledgerFold) reserved() int64 {
	var n int64
	for _, c := range f.open {
		n += c
	}
	return n
}

func checkQuota(ctx context.Context, js jetstream.JetStream, rec *Record, accounts map[string]*Account) (Check, Check, error) {
	over := Check{Name: CheckOverdraft, Status: Pass}
	bal := Check{Name: CheckBalance, Status: Pass}
	folds := map[string]*ledgerFold{}
	var events int
	err := readStream(ctx, js, streamQuota, nil, rec.since(), func(m jetstream.Msg) {
		acct := strings.TrimPrefix(m.Subject(), "sd.quota.")
		if _, ok := accounts[acct]; !ok {
			return
		}
		var e quotaEvent
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			over.problem("%s: unreadable event: %v", acct, err)
			return
		}
		events++
		f := folds[acct]
		if f == nil {
			f = &ledgerFold{open: map[string]int64{}, committedIDs: map[string]int64{}}
			folds[acct] = f
		}
		f.events++
		switch e.Type {
		case "granted":
			f.granted += e.Credits
		case "reserved":
			f.open[e.InvokeID] = e.Credits
		case "committed":
			if _, dup := f.committedIDs[e.InvokeID]; dup {
				bal.problem("%s: %s committed twice", acct, e.InvokeID)
			}
			f.committed += e.Credits
			f.committedIDs[e.InvokeID] = e.Credits
			delete(f.open, e.InvokeID)
		case "released", "expired":
			delete(f.open, e.InvokeID)
		}
		avail := f.granted - f.committed - f.reserved()
		if e.Balance < 0 || e.Reserved < 0 || avail < 0 {
			over.problem("%s: %s %s leaves balance %d, reserved %d (fold: %d)", acct, e.Type, e.InvokeID, e.Balance, e.Reserved, avail)
		}
		if e.Balance != avail || e.Reserved != f.reserved() {
			bal.problem("%s: %s %s stores balance %d, reserved %d; the fold says %d, %d", acct, e.Type, e.InvokeID, e.Balance, e.Reserved, avail, f.reserved())
		}
	})
	if err != nil {
		return over, bal, err
	}
	var n, open int
	var granted, committed int64
	for _, id := range slices.Sorted(maps.Keys(accounts)) {
		a := accounts[id]
		if a.Granted == 0 && len(a.Commits) == 0 {
			continue // an SNS account: no ledger
		}
		n++
		f := folds[id]
		if f == nil {
			f = &ledgerFold{open: map[string]int64{}, committedIDs: map[string]int64{}}
		}
		granted += f.granted
		committed += f.committed
		if f.granted != a.Granted {
			bal.problem("%s: the ledger granted %d, the admin API acknowledged %d", id, f.granted, a.Granted)
		}
		for inv, credits := range f.committedIDs {
			want, sent := a.Commits[inv]
			switch {
			case !sent:
				bal.problem("%s: %s committed, but the simulator never committed it", id, inv)
			case want != credits:
				bal.problem("%s: %s committed %d credits, the request was worth %d", id, inv, credits, want)
			}
		}
		for inv := range a.CommitsAccepted {
			if _, ok := f.committedIDs[inv]; !ok {
				bal.problem("%s: commit of %s was answered success but is not in the ledger", id, inv)
			}
		}
		if r := f.reserved(); r != 0 {
			open += len(f.open)
			bal.problem("%s: %d credits still reserved by %d open reservations (reservation_ttl not passed yet?)", id, r, len(f.open))
		}
	}
	over.Detail = fmt.Sprintf("%d ledger events of %d accounts checked", events, n)
	bal.Detail = fmt.Sprintf("%d accounts: granted %d, committed %d, balance %d, %d open reservations",
		n, granted, committed, granted-committed, open)
	return over, bal, nil
}

// archiveEvent is the data of an ARCHIVE event, stored or failed (CONTRACT §6).
type archiveEvent struct {
	Account   string `json:"account"`
	TaskID    string `json:"task_id"`
	ImageID   string `json:"image_id"`
	SourceURL string `json:"source_url"`
	Key       string `json:"key"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Error     string `json:"error"`
}

func checkArchive(ctx context.Context, js jetstream.JetStream, rec *Record, accounts map[string]*Account) (Check, error) {
	c := Check{Name: CheckArchive, Status: Pass}
	var expected []ExpectedImage
	for _, a := range accounts {
		expected = append(expected, a.Images...)
	}
	if !consumed(ctx, js, "archiver") {
		c.Status = NotAvailable
		c.Detail = fmt.Sprintf("%d images expected, but no archiver has consumed INGRESS (not running in this deployment?)", len(expected))
		return c, nil
	}
	type where struct{ account, task, url string }
	stored := map[where][]archiveEvent{}
	failed := map[where]archiveEvent{}
	var bytes int64
	err := readStream(ctx, js, streamArchive, nil, rec.since(), func(m jetstream.Msg) {
		var e archiveEvent
		if json.Unmarshal(m.Data(), &e) != nil {
			return
		}
		if _, ok := accounts[e.Account]; !ok {
			return
		}
		w := where{e.Account, e.TaskID, e.SourceURL}
		if strings.HasPrefix(m.Subject(), "sd.archive.stored.") {
			stored[w] = append(stored[w], e)
		} else {
			failed[w] = e
		}
	})
	if err != nil {
		return c, err
	}
	var ok, missing, dups, wrong int
	for _, img := range expected {
		w := where{img.Account, img.TaskID, img.SourceURL}
		es := stored[w]
		switch {
		case len(es) == 0:
			missing++
			if f, isFailed := failed[w]; isFailed {
				c.problem("%s of %s failed: %s", img.SourceURL, img.TaskID, f.Error)
			} else {
				c.problem("%s of %s not archived", img.SourceURL, img.TaskID)
			}
		case len(es) > 1:
			dups++
			c.problem("%s of %s archived %d times", img.SourceURL, img.TaskID, len(es))
		case es[0].SHA256 != img.SHA256:
			wrong++
			c.problem("%s of %s archived with SHA-256 %s, served %s", img.SourceURL, img.TaskID, es[0].SHA256, img.SHA256)
		default:
			ok++
			bytes += es[0].Size
		}
	}
	c.Detail = fmt.Sprintf("%d images expected: %d archived (%.1f MiB), %d missing, %d duplicated, %d with another SHA-256",
		len(expected), ok, float64(bytes)/(1<<20), missing, dups, wrong)
	return c, nil
}

// jobRecord is the data of an sd.job.finished.<account> event (CONTRACT §6).
type jobRecord struct {
	JobID    string `json:"job_id"`
	Account  string `json:"account"`
	Source   string `json:"source"`
	Status   string `json:"status"`
	ClosedBy string `json:"closed_by"`
	Tasks    []struct {
		TaskID   string `json:"task_id"`
		InvokeID string `json:"invoke_id"`
		Success  bool   `json:"success"`
	} `json:"tasks"`
}

func checkJobs(ctx context.Context, js jetstream.JetStream, rec *Record, accounts map[string]*Account, tasks map[string]SNSTask) (Check, error) {
	c := Check{Name: CheckJobs, Status: Pass}
	var jobsExpected int
	for _, a := range accounts {
		jobsExpected += len(a.Jobs)
	}
	for _, t := range tasks {
		if t.Terminal {
			jobsExpected++
		}
	}
	if !consumed(ctx, js, "aggregator") {
		c.Status = NotAvailable
		c.Detail = fmt.Sprintf("%d jobs expected, but no aggregator has consumed INGRESS (not running in this deployment?)", jobsExpected)
		return c, nil
	}
	byAccount := map[string][]jobRecord{}
	bySNSTask := map[string][]jobRecord{}
	seen := map[string]int{}
	err := readStream(ctx, js, streamJobs, nil, rec.since(), func(m jetstream.Msg) {
		var r jobRecord
		if json.Unmarshal(m.Data(), &r) != nil {
			return
		}
		if _, ok := accounts[r.Account]; !ok {
			return
		}
		seen[r.JobID]++
		switch {
		case r.Source == rec.Source && rec.Source != "":
			byAccount[r.Account] = append(byAccount[r.Account], r)
		case r.Source == rec.SNSSource && rec.SNSSource != "":
			for _, t := range r.Tasks {
				bySNSTask[t.TaskID] = append(bySNSTask[t.TaskID], r)
			}
		}
	})
	if err != nil {
		return c, err
	}
	for id, n := range seen {
		if n > 1 {
			c.problem("job %s published %d times", id, n)
		}
	}
	var matched, skipped int
	for _, id := range slices.Sorted(maps.Keys(accounts)) {
		a := accounts[id]
		if len(a.Jobs) == 0 {
			continue
		}
		if len(a.Uncertain) > 0 {
			skipped += len(a.Jobs)
			continue
		}
		got := byAccount[id]
		if len(got) != len(a.Jobs) {
			c.problem("%s: %d job records for %d jobs", id, len(got), len(a.Jobs))
		}
		for i, j := range a.Jobs {
			if i >= len(got) {
				break
			}
			r := got[i]
			var inv []string
			var succ []bool
			for _, t := range r.Tasks {
				inv = append(inv, t.InvokeID)
				succ = append(succ, t.Success)
			}
			switch {
			case !slices.Equal(inv, j.Tasks) || !slices.Equal(succ, j.Success):
				c.problem("%s: job %s has tasks %v %v, the simulator delivered %v %v", id, j.InvokeID, inv, succ, j.Tasks, j.Success)
			case r.ClosedBy != "job_event":
				c.problem("%s: job %s closed by %s, want job_event", id, j.InvokeID, r.ClosedBy)
			case r.Status != wantStatus(j.Success):
				c.problem("%s: job %s status %s, want %s", id, j.InvokeID, r.Status, wantStatus(j.Success))
			default:
				matched++
			}
		}
	}
	for id, t := range tasks {
		if !t.Terminal {
			continue
		}
		got := bySNSTask[id]
		switch {
		case len(got) != 1:
			c.problem("SNS task %s in %d job records", id, len(got))
		case got[0].ClosedBy != "terminal_result":
			c.problem("SNS task %s closed by %s, want terminal_result", id, got[0].ClosedBy)
		case len(got[0].Tasks) != 1 || got[0].Tasks[0].Success != t.Success:
			c.problem("SNS task %s: record %s does not report success=%v", id, got[0].JobID, t.Success)
		default:
			matched++
		}
	}
	c.Detail = fmt.Sprintf("%d jobs expected: %d matched one record", jobsExpected, matched)
	if skipped > 0 {
		c.Detail += fmt.Sprintf(", %d not checked (an event of their account was abandoned)", skipped)
	}
	return c, nil
}

func wantStatus(success []bool) string {
	ok := 0
	for _, s := range success {
		if s {
			ok++
		}
	}
	switch {
	case len(success) == 0:
		return "failed" // the job event of a job without tasks reports failure
	case ok == len(success):
		return "succeeded"
	case ok == 0:
		return "failed"
	}
	return "partial"
}
