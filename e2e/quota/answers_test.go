package quota_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// lostAnswerConfig answers "busy" after half a second without a decision.
func lostAnswerConfig() quota.Config {
	cfg := quotatest.Config()
	cfg.DecideDeadline = 500 * time.Millisecond
	return cfg
}

// isBusy reports whether a is the ingress's refusal for an answer it
// stopped waiting for.
func isBusy(a quotatest.Answer) bool {
	return a.Code == http.StatusOK && !a.Success() && strings.Contains(a.ErrMessage(), "busy")
}

// settle waits until the replicas have finished reserves decisions of
// apiAccessPreInvoke and abandons abandonments, stored effects included.
func (d *deployment) settle(reserves, abandons int) {
	d.T.Helper()
	natstest.Eventually(d.T, 30*time.Second, "the held requests decided", func() bool {
		return d.Decisions(callback.BizAPIPreInvoke) >= reserves && d.Decisions("abandon") >= abandons
	})
}

// TestLostAnswerToARepeatReleasesNothing: a reservation answered
// success:true is not released when a repeat of the same request loses its
// answer. The first reserve is answered yes; every quota replica stops; the
// same reserve again is answered "busy" and abandoned by the ingress; the
// replicas resume and handle both the held repeat and its abandonment, in
// whatever order. The commit that follows finds the credits held.
func TestLostAnswerToARepeatReleasesNothing(t *testing.T) {
	t.Parallel()
	d := start(t, lostAnswerConfig(), 2)
	const token = "user-lost-repeat"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 10, "")
	body := []byte(`{"batch_size":5}`)
	if a := d.callback(callback.BizAPIPreInvoke, token, "ab-1", body); !a.Success() {
		t.Fatalf("first reserve: %s", a.Raw)
	}
	d.Valve.Pause()
	if a := d.callback(callback.BizAPIPreInvoke, token, "ab-1", body); !isBusy(a) {
		d.Valve.Resume()
		t.Fatalf("repeat with every replica stopped: %d %s", a.Code, a.Raw)
	}
	d.Valve.Resume()
	d.settle(2, 1)
	if a := d.callback(callback.BizAPICommit, token, "ab-1", nil); !a.Success() {
		t.Fatalf("commit after a repeat lost its answer: %s", a.Raw)
	}
	if v := d.View(acct); v.Balance != 5 || v.Reserved != 0 || v.Committed != 5 {
		t.Fatalf("after the commit: balance %d reserved %d committed %d", v.Balance, v.Reserved, v.Committed)
	}
	for _, e := range d.Events(acct) {
		if e.Type == ledger.TypeReleased {
			t.Fatalf("released by %q (%s): the first answer said it is held", e.Request, e.Reason)
		}
	}
	d.Replay()
}

// TestReplayOfABusyReserve: a reserve answered "busy" (every replica
// stopped), replayed byte for byte after the replicas resumed — at once,
// once its abandonment is through, or while they are still stopped. Each
// sequence ends with the replay refused and nothing held, or with the
// replay answered success:true and the commit accepted: never a success
// the commit then contradicts.
func TestReplayOfABusyReserve(t *testing.T) {
	t.Parallel()
	d := start(t, lostAnswerConfig(), 2)
	const token = "user-busy-replay"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 100, "")
	body := []byte(`{"batch_size":2}`)
	reserves, abandons := 0, 0
	var committed int64
	for _, tc := range []struct {
		name  string
		first func() // between resuming and the replay
	}{
		{"replayed at once", func() {}},
		{"replayed once the abandonment is through", func() { d.settle(reserves, abandons) }},
		{"replayed while stopped", nil},
	} {
		inv := "busy-" + strings.ReplaceAll(tc.name, " ", "-")
		req := d.signed(callback.BizAPIPreInvoke, token, inv, body)
		d.Valve.Pause()
		if a := d.send(req); !isBusy(a) {
			d.Valve.Resume()
			t.Fatalf("%s: reserve with every replica stopped: %d %s", tc.name, a.Code, a.Raw)
		}
		reserves, abandons = reserves+1, abandons+1
		var replay quotatest.Answer
		if tc.first == nil {
			replay = d.send(req)
			if !isBusy(replay) {
				d.Valve.Resume()
				t.Fatalf("%s: replay with every replica stopped: %d %s", tc.name, replay.Code, replay.Raw)
			}
			reserves, abandons = reserves+1, abandons+1
			d.Valve.Resume()
		} else {
			d.Valve.Resume()
			tc.first()
			replay = d.send(req)
			reserves++
		}
		if replay.Code != http.StatusOK {
			t.Fatalf("%s: replay answered %d %s", tc.name, replay.Code, replay.Raw)
		}
		d.settle(reserves, abandons)
		commit := d.callback(callback.BizAPICommit, token, inv, nil)
		switch {
		case replay.Success() && !commit.Success():
			t.Fatalf("%s: the replay was answered success, the commit is refused: %s", tc.name, commit.Raw)
		case !replay.Success() && commit.Success():
			t.Fatalf("%s: the replay was refused (%s), the commit accepted", tc.name, replay.ErrMessage())
		case commit.Success():
			committed += 2
		}
		t.Logf("%s: replay %s, commit %s", tc.name, replay.Raw, commit.Raw)
	}
	if v := d.View(acct); v.Reserved != 0 || v.Committed != committed || v.Balance != 100-committed {
		t.Fatalf("balance %d reserved %d committed %d, want %d committed and nothing held", v.Balance, v.Reserved, v.Committed, committed)
	}
	d.Replay()
}

// TestPricesWhatThePlatformReads: a body the platform's JSON reader
// (Python's json.loads of bytes) decodes — after a UTF-8 BOM, or in UTF-16
// — is priced as it reads it, through the ingress and the RPC; one that
// does not decode is refused with a readable reason and stores nothing.
func TestPricesWhatThePlatformReads(t *testing.T) {
	t.Parallel()
	d := start(t, quotatest.Config(), 1)
	const token = "user-encodings"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 200, "")
	utf16 := func(s string) []byte {
		var b []byte
		for _, c := range s {
			b = append(b, byte(c), 0)
		}
		return b
	}
	for _, tc := range []struct {
		name, body   string
		wantReserved int64
		wantIn       string
	}{
		{"UTF-8 BOM", "\xef\xbb\xbf{\"batch_size\":100}", 100, ""},
		{"UTF-16 without BOM", string(utf16(`{"batch_size":7}`)), 107, ""},
		{"UTF-16 of odd length", string(utf16(`{"batch_size":7}`)) + "\x00", 107, "not valid UTF-16 text"},
		{"Latin-1", "{\"prompt\":\"caf\xe9\",\"batch_size\":3}", 107, "not valid UTF-8 text"},
	} {
		a := d.callback(callback.BizAPIPreInvoke, token, "enc-"+tc.name, []byte(tc.body))
		if a.Code != http.StatusOK || a.Success() != (tc.wantIn == "") || !strings.Contains(a.ErrMessage(), tc.wantIn) {
			t.Errorf("%s: %d %s", tc.name, a.Code, a.Raw)
		}
		if v := d.View(acct); v.Reserved != tc.wantReserved {
			t.Errorf("%s: %d credits held, want %d", tc.name, v.Reserved, tc.wantReserved)
		}
	}
	if n := len(d.Events(acct)); n != 3 {
		t.Errorf("%d events, want the grant and two reservations", n)
	}
}
