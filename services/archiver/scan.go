package archiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errStopScan, returned by a visit function, ends scanHeaders without error.
var errStopScan = errors.New("stop scan")

// scanHeaders reads the headers of stream's messages on filters from since
// on, in order, through a short-lived consumer of its own (deleted after),
// and calls visit for each until visit returns an error (errStopScan ends
// the scan without one), the messages pending at the start are read, or ctx
// ends.
func scanHeaders(ctx context.Context, js jetstream.JetStream, stream string, filters []string, since time.Time,
	visit func(jetstream.Msg) error) error {
	c, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, c.CachedInfo().Name)
	}()
	left := c.CachedInfo().NumPending
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		batch, err := c.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := visit(m); errors.Is(err, errStopScan) {
				return nil
			} else if err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		if n == 0 {
			return fmt.Errorf("scan %s: no progress", stream)
		}
		left -= uint64(n)
	}
	return nil
}
