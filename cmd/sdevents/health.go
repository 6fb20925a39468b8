package main

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/jshealth"
)

// writes are the streams each service stores into (a bucket is the stream
// KV_<bucket>). A process is ready only when every stream its services
// write has a leader with a quorum (docs/operations.md, "Partitions").
var writes = map[string][]string{
	"ingress":    {contract.StreamIngress, contract.StreamIngressClaims},
	"quota":      {contract.StreamQuota, contract.StreamQuotaTimers},
	"archiver":   {contract.StreamArchive, "KV_" + contract.BucketArchiveKeys, contract.StreamArchiverTimers},
	"aggregator": {contract.StreamJobs, "KV_" + contract.BucketAggregatorState, contract.StreamAggregatorTimers, contract.StreamAggregatorFacts, contract.StreamDead},
	"console":    {"KV_" + contract.BucketConsoleSessions},
}

// writtenBy returns the streams the services write, each once, sorted.
func writtenBy(services []string) []string {
	var names []string
	for _, s := range services {
		names = append(names, writes[s]...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// newMover builds the mover of a connection to an external NATS: it probes
// other servers as the connection's user (nats.user, creds_file, nkey_file,
// TLS).
func (p *process) newMover() (*jshealth.Mover, error) {
	auth, err := clientOptions(p.cfg.NATS)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{nats.Name("sdevents-probe")}, auth...)
	moves := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sdevents", Subsystem: "nats", Name: "moves_total",
		Help: "Times the NATS connection was moved off a server through which the streams could not be written.",
	})
	p.reg.MustRegister(moves)
	return jshealth.NewMover(jshealth.Dial(opts...), jshealth.MoverOptions{
		OnMove: func(from, to string) {
			moves.Inc()
			p.log.Warn().Str("from", from).Str("to", to).Msg("nats: moved the connection off a server without a writable JetStream")
		},
	}), nil
}

// watchJetStream adds the readiness check "jetstream": every stream the
// services write has a leader with a quorum, checked through the process's
// connection (pkg/jshealth). With a mover (external NATS) it also runs the
// mover, which takes the connection to another server when that one can
// write them and this one cannot.
func (p *process) watchJetStream(services []string, mv *jshealth.Mover) {
	h := jshealth.New(p.js, jshealth.Options{Streams: writtenBy(services), OnChange: p.writableChanged()})
	p.http.AddReadyCheck("jetstream", h.Ready)
	if mv != nil {
		p.add("nats mover", func(ctx context.Context) error { return mv.Run(ctx, h) })
	}
}

// writableChanged returns the OnChange of the process's Health: it logs
// when the streams stop being writable, and when they are again.
func (p *process) writableChanged() func(error) {
	down := false
	return func(err error) {
		switch {
		case err != nil:
			down = true
			p.log.Error().Err(err).Msg("JetStream not writable through this connection: not ready until it is")
		case down:
			down = false
			p.log.Warn().Msg("JetStream writable again")
		}
	}
}
