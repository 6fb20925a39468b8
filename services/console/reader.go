package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Msg is one stored message as the console reads it.
type Msg struct {
	Stream  string
	Subject string
	Seq     uint64
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// ErrNoMsg is returned by Reader.Get and Reader.LastBySubject when the stream
// holds no such message (deleted, expired, never stored). Callers show
// "not found".
var ErrNoMsg = errors.New("no such message")

// BatchRequest asks for up to Max messages of a stream matching Filter, in
// stream order, starting at sequence From (or at the first message stored at
// or after Since when Since is set).
type BatchRequest struct {
	Filter string
	From   uint64
	Since  time.Time
	Max    int
}

// Reader reads stored messages without consumers: every call is one direct-get
// request ($JS.API.DIRECT.GET) or one stream-info request. The streams must
// allow direct gets (allow_direct: true in streams/). Pages are built from a
// handful of calls, whatever the size of the stream.
type Reader interface {
	// Bounds returns the first and last sequence of stream (0, 0 when empty).
	Bounds(ctx context.Context, stream string) (first, last uint64, err error)
	// Get returns the message at seq, or ErrNoMsg.
	Get(ctx context.Context, stream string, seq uint64) (Msg, error)
	// LastBySubject returns the last message stored on subject, or ErrNoMsg.
	LastBySubject(ctx context.Context, stream, subject string) (Msg, error)
	// Batch returns the messages asked for (possibly none); more reports that
	// the stream holds further matching messages after the last one returned.
	Batch(ctx context.Context, stream string, req BatchRequest) (msgs []Msg, more bool, err error)
}

// natsReader is the Reader over a NATS connection.
type natsReader struct {
	nc     *nats.Conn
	prefix string // JetStream API prefix, "$JS.API"
}

// NewReader returns a Reader over nc using the default JetStream API prefix.
func NewReader(nc *nats.Conn) Reader { return &natsReader{nc: nc, prefix: "$JS.API"} }

// defaultTimeout bounds one read when ctx has no deadline.
const defaultTimeout = 5 * time.Second

func withDefault(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

func (r *natsReader) Bounds(ctx context.Context, stream string) (uint64, uint64, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	resp, err := r.nc.RequestWithContext(ctx, r.prefix+".STREAM.INFO."+stream, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	var info struct {
		State struct {
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
			Msgs     uint64 `json:"messages"`
		} `json:"state"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &info); err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	if info.Error != nil {
		return 0, 0, fmt.Errorf("stream %s info: %s", stream, info.Error.Description)
	}
	if info.State.Msgs == 0 {
		return 0, 0, nil
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

func (r *natsReader) Get(ctx context.Context, stream string, seq uint64) (Msg, error) {
	return r.single(ctx, stream, map[string]any{"seq": seq})
}

func (r *natsReader) LastBySubject(ctx context.Context, stream, subject string) (Msg, error) {
	return r.single(ctx, stream, map[string]any{"last_by_subj": subject})
}

func (r *natsReader) single(ctx context.Context, stream string, req map[string]any) (Msg, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	payload, err := json.Marshal(req)
	if err != nil {
		return Msg{}, err
	}
	resp, err := r.nc.RequestWithContext(ctx, r.prefix+".DIRECT.GET."+stream, payload)
	if err != nil {
		return Msg{}, fmt.Errorf("direct get %s: %w", stream, err)
	}
	m, end, err := decodeDirect(stream, resp)
	if err != nil {
		return Msg{}, err
	}
	if end {
		return Msg{}, ErrNoMsg
	}
	return m, nil
}

// batchChunk bounds the messages asked for in one direct-get request.
const batchChunk = 256

func (r *natsReader) Batch(ctx context.Context, stream string, req BatchRequest) ([]Msg, bool, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	if req.Max <= 0 {
		return nil, false, nil
	}
	body := map[string]any{"batch": min(req.Max, batchChunk)}
	if req.Filter != "" {
		body["next_by_subj"] = req.Filter
	}
	if !req.Since.IsZero() {
		body["start_time"] = req.Since.UTC()
	} else {
		body["seq"] = max(req.From, 1)
	}
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, false, fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer sub.Unsubscribe()
	var out []Msg
	for {
		payload, err := json.Marshal(body)
		if err != nil {
			return nil, false, err
		}
		if err := r.nc.PublishRequest(r.prefix+".DIRECT.GET."+stream, inbox, payload); err != nil {
			return nil, false, fmt.Errorf("direct get %s: %w", stream, err)
		}
		more := false
		for {
			raw, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return nil, false, fmt.Errorf("direct get %s: %w", stream, err)
			}
			m, end, err := decodeDirect(stream, raw)
			if err != nil {
				return nil, false, err
			}
			if end {
				more = raw.Header.Get("Status") == "204" && len(out) > 0 && raw.Header.Get("Nats-Num-Pending") != "0"
				break
			}
			out = append(out, m)
		}
		if !more || len(out) >= req.Max || len(out) == 0 {
			return out, more, nil
		}
		delete(body, "start_time")
		body["seq"] = out[len(out)-1].Seq + 1
		body["batch"] = min(req.Max-len(out), batchChunk)
	}
}

// decodeDirect reads one direct-get reply: a message, or the end of a batch
// (status 204) or nothing found (404), reported as end.
func decodeDirect(stream string, m *nats.Msg) (Msg, bool, error) {
	switch status := m.Header.Get("Status"); status {
	case "":
	case "204", "404":
		return Msg{}, true, nil
	default:
		return Msg{}, false, fmt.Errorf("direct get %s: status %s %s", stream, status, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return Msg{}, false, fmt.Errorf("direct get %s: bad sequence header", stream)
	}
	at, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	h := nats.Header{}
	for k, v := range m.Header {
		if strings.HasPrefix(k, "Nats-Stream") || k == "Nats-Sequence" || k == "Nats-Time-Stamp" ||
			k == "Nats-Subject" || k == "Nats-Num-Pending" || k == "Nats-Last-Sequence" {
			continue
		}
		h[k] = v
	}
	return Msg{Stream: stream, Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: at, Header: h, Data: m.Data}, false, nil
}

// backward returns up to n messages of stream matching filter ("" = all)
// with a sequence below before (0 = from the end), newest first, and next:
// the before of the following page, 0 when there is none. It reads the
// stream in windows of sequences, each with one batched direct get that the
// server filters, starting with a window of n and growing it while the
// filter is sparse; it gives up after scanning maxSpan sequences (next is
// then where it stopped). A dense stream costs one request of n messages.
func backward(ctx context.Context, r Reader, stream, filter string, before uint64, n int, maxSpan uint64) ([]Msg, uint64, error) {
	first, last, err := r.Bounds(ctx, stream)
	if err != nil || last == 0 {
		return nil, 0, err
	}
	hi := last
	if before > 0 {
		if before <= first {
			return nil, 0, nil
		}
		hi = min(before-1, last)
	}
	var out []Msg
	window := uint64(max(n, 1))
	var scanned uint64
	for len(out) < n && hi >= first && scanned < maxSpan {
		lo := first
		if hi-first+1 > window {
			lo = hi - window + 1
		}
		msgs, err := readRange(ctx, r, stream, filter, lo, hi)
		if err != nil {
			return nil, 0, err
		}
		need := n - len(out)
		if len(msgs) > need {
			msgs = msgs[len(msgs)-need:]
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			out = append(out, msgs[i])
		}
		scanned += hi - lo + 1
		if len(out) == n {
			hi = out[len(out)-1].Seq - 1
			break
		}
		hi = lo - 1
		window = min(window*4, 1<<16)
		if lo == first {
			break
		}
	}
	if hi < first {
		return out, 0, nil
	}
	return out, hi + 1, nil
}

// readRange returns the messages of stream matching filter with sequences in
// [lo, hi], in order.
func readRange(ctx context.Context, r Reader, stream, filter string, lo, hi uint64) ([]Msg, error) {
	var out []Msg
	from := lo
	for from <= hi {
		span := hi - from + 1
		msgs, more, err := r.Batch(ctx, stream, BatchRequest{Filter: filter, From: from, Max: int(min(span, batchChunk))})
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Seq > hi {
				return out, nil
			}
			out = append(out, m)
		}
		if !more || len(msgs) == 0 {
			return out, nil
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
	return out, nil
}
