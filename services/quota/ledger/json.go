package ledger

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of e to b and returns the extended
// buffer: the bytes encoding/json's Marshal writes for e, except that the
// entries of the snapshot state's maps come in no particular order (a JSON
// object is unordered: json.Unmarshal reads both alike). It uses no
// reflection and sorts nothing, so that a snapshot of tens of thousands of
// open reservations, encoded while its account's decisions wait, takes a
// few milliseconds. It returns an error for a time Marshal refuses too (a
// year outside 0–9999 or a zone offset of 24 hours or more).
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = slices.Grow(b, e.sizeHint())
	b = append(b, `{"type":`...)
	b = appendString(b, string(e.Type))
	b = append(b, `,"account":`...)
	b = appendString(b, e.Account)
	b = append(b, `,"invoke_id":`...)
	b = appendString(b, e.InvokeID)
	b = append(b, `,"credits":`...)
	b = strconv.AppendInt(b, e.Credits, 10)
	b = append(b, `,"balance":`...)
	b = strconv.AppendInt(b, e.Balance, 10)
	b = append(b, `,"reserved":`...)
	b = strconv.AppendInt(b, e.Reserved, 10)
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	b = append(b, `,"at":`...)
	if b, err = appendTime(b, e.At); err != nil {
		return b, err
	}
	if e.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, e.ID)
	}
	if !e.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		if b, err = appendTime(b, e.ExpiresAt); err != nil {
			return b, err
		}
	}
	if e.Request != "" {
		b = append(b, `,"request":`...)
		b = appendString(b, e.Request)
	}
	if e.State != nil {
		b = append(b, `,"state":`...)
		if b, err = e.State.appendJSON(b); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// sizeHint is about the length of e's encoding, so that a snapshot's buffer
// grows once rather than by doubling over megabytes.
func (e *Event) sizeHint() int {
	n := 192 + len(e.Account) + len(e.InvokeID) + len(e.Reason) + len(e.ID) + len(e.Request)
	if s := e.State; s != nil {
		n += 128 + 192*len(s.Open) + 128*len(s.Finished) + 64*len(s.Grants)
	}
	return n
}

func (s *State) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, s.Seq, 10)
	b = append(b, `,"granted":`...)
	b = strconv.AppendInt(b, s.Granted, 10)
	b = append(b, `,"committed":`...)
	b = strconv.AppendInt(b, s.Committed, 10)
	if len(s.Open) > 0 {
		b = append(b, `,"open":{`...)
		first := true
		for id, r := range s.Open {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, id)
			b = append(b, ':')
			if b, err = r.appendJSON(b); err != nil {
				return b, err
			}
		}
		b = append(b, '}')
	}
	if len(s.Finished) > 0 {
		b = append(b, `,"finished":{`...)
		first := true
		for id, o := range s.Finished {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, id)
			b = append(b, `:{"type":`...)
			b = appendString(b, string(o.Type))
			b = append(b, `,"credits":`...)
			b = strconv.AppendInt(b, o.Credits, 10)
			if o.Reason != "" {
				b = append(b, `,"reason":`...)
				b = appendString(b, o.Reason)
			}
			b = append(b, `,"at":`...)
			if b, err = appendTime(b, o.At); err != nil {
				return b, err
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if len(s.Grants) > 0 {
		b = append(b, `,"grants":{`...)
		first := true
		for id, n := range s.Grants {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, id)
			b = append(b, ':')
			b = strconv.AppendInt(b, n, 10)
		}
		b = append(b, '}')
	}
	if !s.ForgottenBefore.IsZero() {
		b = append(b, `,"forgotten_before":`...)
		if b, err = appendTime(b, s.ForgottenBefore); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func (r *Reservation) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"credits":`...)
	b = strconv.AppendInt(b, r.Credits, 10)
	b = append(b, `,"reserved_at":`...)
	if b, err = appendTime(b, r.ReservedAt); err != nil {
		return b, err
	}
	b = append(b, `,"expires_at":`...)
	if b, err = appendTime(b, r.ExpiresAt); err != nil {
		return b, err
	}
	if len(r.Requests) > 0 {
		b = append(b, `,"requests":`...)
		b = appendStrings(b, r.Requests)
	}
	if len(r.Withdrawn) > 0 {
		b = append(b, `,"withdrawn":`...)
		b = appendStrings(b, r.Withdrawn)
	}
	if r.Pinned {
		b = append(b, `,"pinned":true`...)
	}
	return append(b, '}'), nil
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendTime appends t as time.Time's MarshalJSON writes it.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return b, fmt.Errorf("encode time: %w", err)
	}
	return append(b, '"'), nil
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes a JSON string holds as they are (Marshal's
// HTML-safe set): printable, and none of " \ < > &.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, rune(c))
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json's Marshal
// does: <, > and & escaped for HTML, control characters as \b \f \n \r \t
// or \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
