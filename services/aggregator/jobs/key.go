package jobs

import (
	"crypto/sha256"
	"encoding/base32"
	"hash"
	"strconv"
	"strings"
)

// Key identifies the State an observation belongs to. Keys are comparable.
type Key struct {
	// SNS is true for SNS sources, false for callback sources (the two kinds
	// of source may share a name).
	SNS     bool   `json:"sns,omitempty"`
	Source  string `json:"source"`
	Account string `json:"account"`
	// InvokeID is set with KeyInvokeID keying only; it may legitimately be
	// empty then too (a callback without invokeId).
	InvokeID string `json:"invoke_id,omitempty"`
	// ByInvoke records KeyInvokeID keying, so that an empty InvokeID under it
	// differs from account keying.
	ByInvoke bool `json:"by_invoke,omitempty"`
}

// KeyOf returns the Key of obs under cfg: (source, account) for SNS results
// and, by default, for callbacks; (source, account, invokeId) for callbacks
// when cfg.Key is KeyInvokeID. The account stays part of the invokeId key so
// that one user's events can never join another user's job.
func KeyOf(obs Observation, cfg Config) Key {
	k := Key{Source: obs.Source, Account: obs.Account}
	switch {
	case obs.Kind == KindSNSResult:
		k.SNS = true
	case cfg.Key == KeyInvokeID:
		k.ByInvoke, k.InvokeID = true, obs.InvokeID
	}
	return k
}

// String returns k for logs, e.g. "callback/default/a_xyz" or
// "sns/eks/_"; an invokeId is quoted.
func (k Key) String() string {
	kind := "callback"
	if k.SNS {
		kind = "sns"
	}
	s := kind + "/" + k.Source + "/" + k.Account
	if k.ByInvoke {
		s += "/invoke=" + strconv.Quote(k.InvokeID)
	}
	return s
}

// Token returns k as a JetStream KV key (characters [-/_=.a-zA-Z0-9], no
// leading or trailing dot), distinct for distinct keys: "cb." or "sns.", the
// source, ".", the account, and with invokeId keying "." and a hash of the
// invokeId. A source or account outside [a-z0-9_-] (never produced by the
// ingress) is replaced by "=" and a hash of it.
func (k Key) Token() string {
	kind := "cb"
	if k.SNS {
		kind = "sns"
	}
	s := kind + "." + tokenPart(k.Source) + "." + tokenPart(k.Account)
	if k.ByInvoke {
		s += ".=" + digest("invoke", k.InvokeID)
	}
	return s
}

// tokenPart returns s when it is a safe, short KV key token, else "=" and its
// digest ("=" never occurs in a safe token, so the two cannot collide).
func tokenPart(s string) string {
	if s == "" || len(s) > 64 {
		return "=" + digest("part", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "=" + digest("part", s)
		}
	}
	return s
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// idLen is the number of base32 characters kept from a digest (130 bits).
const idLen = 26

// digest returns lowercase unpadded base32(SHA-256(parts, length-prefixed))[:26].
func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		writePart(h, p)
	}
	return strings.ToLower(b32.EncodeToString(h.Sum(nil)))[:idLen]
}

func writePart(h hash.Hash, p string) {
	h.Write(strconv.AppendInt(nil, int64(len(p)), 10))
	h.Write([]byte{':'})
	h.Write([]byte(p))
}

// JobID returns the id of the job of key k and group (empty for callback
// jobs; "task:<id>" or "job:<context.job_id>" for SNS jobs) opened by the
// observation at INGRESS sequence openSeq:
//
//	"j_" + lowercase unpadded base32(SHA-256(v1, kind, source, account,
//	       invoke key, group, openSeq))[:26]
//
// with every part length-prefixed. INGRESS sequences are unique and an
// observation opens at most one job, so ids are unique for a given INGRESS
// stream; they are the same on every replica and every replay, and serve as
// the Nats-Msg-Id of the JOBS event.
func JobID(k Key, group string, openSeq uint64) string {
	kind := "callback"
	if k.SNS {
		kind = "sns"
	}
	inv := ""
	if k.ByInvoke {
		inv = "invoke:" + k.InvokeID
	}
	return "j_" + digest("sdevents.job.v1", kind, k.Source, k.Account, inv, group, strconv.FormatUint(openSeq, 10))
}
