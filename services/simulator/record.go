package simulator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
)

// Record is what a run sent and how it was answered: the expectations that
// Verify checks against the streams. It is safe for concurrent use.
type Record struct {
	RunID   string
	Started time.Time
	// Source is the callback source name, SNSSource the SNS source name.
	Source, SNSSource string
	// PricePerImage is quota.price.per_image.
	PricePerImage int64

	mu         sync.Mutex
	deliveries map[string]*Delivery
	accounts   map[string]*Account
	snsTasks   map[string]*SNSTask
	images     int
}

// NewRecord returns an empty record of run id, started now.
func NewRecord(runID string) *Record {
	return &Record{RunID: runID, Started: time.Now(), PricePerImage: 1,
		deliveries: map[string]*Delivery{}, accounts: map[string]*Account{}, snsTasks: map[string]*SNSTask{}}
}

// Delivery is one request as the receiver must store it: a callback (one per
// source, bizType, invokeId and body) or an SNS message (one per MessageId).
type Delivery struct {
	Kind    string // "callback" or "sns"
	Type    string // bizType, or the SNS Type
	Account string
	// Accepted is true once an attempt was answered 2xx: the receiver must
	// hold the request exactly once. Otherwise it may hold it at most once.
	Accepted bool
	Attempts int
}

// Account is what the run did to one account.
type Account struct {
	ID string
	// Granted is the sum of the grants the admin API acknowledged.
	Granted int64
	// Commits are the credits of every commit sent, by invokeId;
	// CommitsAccepted those answered success.
	Commits         map[string]int64
	CommitsAccepted map[string]bool
	// Jobs are the account's callback jobs, in order.
	Jobs []*Job
	// Images are the images of the account's accepted asynchronous events.
	Images []ExpectedImage
	// Uncertain explains why the job check of the account cannot be exact
	// (an asynchronous event abandoned after its last retry).
	Uncertain []string
}

// Job is one job of a simulated user, or one SNS task.
type Job struct {
	InvokeID string
	// Tasks are the invokeIds of the job's sdTaskFinished events that were
	// accepted, in order, and whether each reported success.
	Tasks   []string
	Success []bool
	// Closed is true when the job's sdJobFinished was accepted.
	Closed bool
}

// ExpectedImage is an image the archive must hold.
type ExpectedImage struct {
	Account string
	// TaskID is the invokeId of the callback or the SNS task id.
	TaskID string
	// SourceURL is the image address without query string (as the ARCHIVE
	// event records it), or the s3:// URI.
	SourceURL string
	SHA256    string
}

// SNSTask is one SD-on-EKS task reported over SNS.
type SNSTask struct {
	ID      string
	Account string
	// Terminal is true once a completed or failed (or legacy) message of the
	// task was accepted; Success is its outcome.
	Terminal bool
	Success  bool
}

// callbackKey identifies a callback as the receiver de-duplicates it.
func callbackKey(source, bizType, invokeID string, body []byte) string {
	return lpHash("cb", source, bizType, invokeID, string(body))
}

// snsKey identifies an SNS message as the receiver de-duplicates it.
func snsKey(source, messageID string) string { return lpHash("sns", source, messageID) }

func lpHash(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// attempt notes one attempt of the delivery key.
func (r *Record) attempt(key, kind, typ, account string, accepted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.deliveries[key]
	if d == nil {
		d = &Delivery{Kind: kind, Type: typ, Account: account}
		r.deliveries[key] = d
	}
	d.Attempts++
	d.Accepted = d.Accepted || accepted
}

// account returns the account id's record, creating it.
func (r *Record) account(id string) *Account {
	a := r.accounts[id]
	if a == nil {
		a = &Account{ID: id, Commits: map[string]int64{}, CommitsAccepted: map[string]bool{}}
		r.accounts[id] = a
	}
	return a
}

// update runs f on the account id's record under the record's lock.
func (r *Record) update(id string, f func(a *Account)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.account(id))
}

// updateSNSTask runs f on task id's record under the record's lock.
func (r *Record) updateSNSTask(id, account string, f func(t *SNSTask)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.account(account)
	t := r.snsTasks[id]
	if t == nil {
		t = &SNSTask{ID: id, Account: account}
		r.snsTasks[id] = t
	}
	f(t)
}

// addImages adds images the archive must hold.
func (r *Record) addImages(imgs ...ExpectedImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, img := range imgs {
		a := r.account(img.Account)
		a.Images = append(a.Images, img)
		r.images++
	}
}

// snapshot returns copies of the record's maps for reading without the lock.
func (r *Record) snapshot() (map[string]Delivery, map[string]*Account, map[string]SNSTask) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := make(map[string]Delivery, len(r.deliveries))
	for k, d := range r.deliveries {
		ds[k] = *d
	}
	as := make(map[string]*Account, len(r.accounts))
	for k, a := range r.accounts {
		cp := *a
		cp.Commits = make(map[string]int64, len(a.Commits))
		for i, c := range a.Commits {
			cp.Commits[i] = c
		}
		cp.CommitsAccepted = make(map[string]bool, len(a.CommitsAccepted))
		for i, c := range a.CommitsAccepted {
			cp.CommitsAccepted[i] = c
		}
		cp.Jobs = nil
		for _, j := range a.Jobs {
			jc := *j
			jc.Tasks = append([]string(nil), j.Tasks...)
			jc.Success = append([]bool(nil), j.Success...)
			cp.Jobs = append(cp.Jobs, &jc)
		}
		cp.Images = append([]ExpectedImage(nil), a.Images...)
		cp.Uncertain = append([]string(nil), a.Uncertain...)
		as[k] = &cp
	}
	ts := make(map[string]SNSTask, len(r.snsTasks))
	for k, t := range r.snsTasks {
		ts[k] = *t
	}
	return ds, as, ts
}

// Counts returns the number of deliveries, accepted deliveries and images.
func (r *Record) Counts() (deliveries, accepted, images int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.deliveries {
		if d.Accepted {
			accepted++
		}
	}
	return len(r.deliveries), accepted, r.images
}
