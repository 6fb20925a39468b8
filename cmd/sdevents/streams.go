package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/streams"
)

// applyTimeout bounds the apply of the definitions, at start and by
// `sdevents streams apply`.
const applyTimeout = 30 * time.Second

// errRestrictedUser: the NATS user may not manage streams (a service's
// own user); apply the definitions as the admin user.
var errRestrictedUser = errors.New("this NATS user may not manage streams: connect as the admin user")

// streamsMode is the ownership mode of a process running services:
// streams.apply when set, else update for `sdevents run` (it owns its
// embedded JetStream) and create for a single service against an external
// NATS, where an operator or NACK may own the streams.
func streamsMode(cfg config.Streams, services []string) (streams.Mode, error) {
	if cfg.Apply != "" {
		return streams.ParseMode(cfg.Apply)
	}
	if slices.Equal(services, runAll()) {
		return streams.ModeUpdate, nil
	}
	return streams.ModeCreate, nil
}

// streamLimits maps the configured retention to the streams' limits.
func streamLimits(cfg config.Streams) map[string]streams.Limits {
	l := func(s config.StreamLimits) streams.Limits {
		return streams.Limits{MaxAge: s.MaxAge.D(), MaxBytes: s.MaxBytes}
	}
	return map[string]streams.Limits{contract.StreamJobs: l(cfg.Jobs), contract.StreamArchive: l(cfg.Archive), contract.StreamQuota: l(cfg.Quota)}
}

// applyStreams brings the stream definitions, with the configured limits,
// to JetStream under the process's ownership mode — unless the process's
// NATS user may not manage streams (a service's own user), which only uses
// them — logs what it created,
// reset or found different, and adds the "streams" readiness check, which
// verifies them from then on. It fails when something the services need
// is missing under streams.apply: off, or when the QUOTA ledger could lose
// events.
func (p *process) applyStreams(ctx context.Context, services []string) error {
	mode, err := streamsMode(p.cfg.Streams, services)
	if err != nil {
		return err
	}
	if restricted, err := restrictedUser(ctx, p.nc); err != nil {
		p.log.Warn().Err(err).Msg("NATS did not say what this user may do: the definitions are handled as streams.apply says")
	} else if restricted {
		// A service's own user may neither manage nor inspect every
		// stream: the definitions belong to an operator (`sdevents
		// streams apply`, NACK), and a missing stream stops the service
		// that needs it when it starts.
		p.log.Info().Str("streams_apply", string(mode)).
			Msg("stream definitions neither applied nor verified: this NATS user may not manage streams")
		return nil
	}
	files, err := streams.Definitions(streamLimits(p.cfg.Streams))
	if err != nil {
		return err
	}
	o := newStreamOwner(p.js, files, p.cfg.NATS.Replicas, mode, p.log)
	p.reg.MustRegister(o.drift)
	actx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	r, err := streams.Apply(actx, p.js, files, mode, p.cfg.NATS.Replicas)
	o.observe(r)
	switch {
	case errors.Is(err, streams.ErrMissing):
		return fmt.Errorf("streams.apply is %s: %w: create them first (with NACK: kubectl apply -k deploy/base/nack) or run a process with streams.apply create", mode, err)
	case errors.Is(err, streams.ErrLossy):
		return fmt.Errorf("streams.apply is %s: %w: remove the setting (nats stream edit), or start once with streams.apply update", mode, err)
	case err != nil:
		return fmt.Errorf("streams.apply is %s: %w", mode, err)
	}
	p.http.AddReadyCheck("streams", o.check)
	return nil
}

// streamOwner reports the state of the definitions on the server: the
// sdevents_stream_config_drift gauge, and one log line per stream whenever
// how it differs from its definition changes.
type streamOwner struct {
	js       jetstream.JetStream
	files    []streams.File
	replicas int
	mode     streams.Mode
	log      zerolog.Logger
	drift    *prometheus.GaugeVec

	mu     sync.Mutex
	logged map[string]string // stream → its differences as last logged
}

func newStreamOwner(js jetstream.JetStream, files []streams.File, replicas int, mode streams.Mode, log zerolog.Logger) *streamOwner {
	return &streamOwner{
		js: js, files: files, replicas: replicas, mode: mode, log: log, logged: map[string]string{},
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdevents_stream_config_drift",
			Help: "Settings in which a live stream, its consumers or a bucket (KV_<bucket>) differ from the definition this process applies; 0 when they agree.",
		}, []string{"stream"}),
	}
}

// check is the "streams" readiness check: every stream, consumer and
// bucket exists and the ledger cannot lose events. It updates the drift
// gauge and log as it goes.
func (o *streamOwner) check(ctx context.Context) error {
	r, err := streams.Verify(ctx, o.js, o.files, o.replicas)
	o.observe(r)
	return err
}

// observe logs r and sets the drift gauge of every stream r checked.
func (o *streamOwner) observe(r streams.Report) {
	o.mu.Lock()
	defer o.mu.Unlock()
	log := o.log.With().Str("streams_apply", string(o.mode)).Logger()
	if len(r.Created) > 0 {
		log.Info().Strs("created", r.Created).Msg("stream definitions created")
	}
	reset := byStream(r.Reset)
	for _, name := range slices.Sorted(maps.Keys(reset)) {
		log.Warn().Str("stream", name).Strs("changes", reset[name]).
			Msg("stream settings differed from the definition and were reset (streams.apply: update)")
	}
	drift := byStream(r.Drift)
	for _, name := range r.Checked {
		d := drift[name]
		o.drift.WithLabelValues(name).Set(float64(len(d)))
		now := strings.Join(d, "; ")
		if now == o.logged[name] {
			continue
		}
		if now == "" {
			log.Info().Str("stream", name).Msg("stream settings agree with the definition again")
		} else {
			log.Warn().Str("stream", name).Strs("drift", d).
				Msg("stream settings differ from the definition; left as they are")
		}
		o.logged[name] = now
	}
	for _, l := range r.Lossy {
		log.Error().Str("problem", l).Msg("the QUOTA ledger can lose events: not ready")
	}
}

// byStream groups differences by stream, its consumers included, each as
// "consumer INGRESS/archiver max_ack_pending: 64, defined 512".
func byStream(ds []streams.Diff) map[string][]string {
	out := map[string][]string{}
	for _, d := range ds {
		out[d.Stream] = append(out[d.Stream], fmt.Sprintf("%s %s: %s, defined %s", d.Object, d.Field, d.Got, d.Want))
	}
	return out
}

// newStreamsCmd is `sdevents streams apply`: the stream definitions, with
// the configured limits, created or updated by an operator (streams.apply
// update), for deployments whose services connect as their own restricted
// users and only use them (compose.yaml runs it once before the services
// start).
func newStreamsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "The JetStream streams, consumers and buckets of sdevents",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "apply",
		Short: "Create or update every stream, consumer and bucket (nats.replicas replicas), as a NATS user that may manage streams",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withJetStream(func(cfg config.Config, nc *nats.Conn, js jetstream.JetStream) error {
				return applyStreams(cmd, cfg, nc, js)
			})
		},
	})
	return cmd
}

// applyStreams runs `sdevents streams apply` over nc and js.
func applyStreams(cmd *cobra.Command, cfg config.Config, nc *nats.Conn, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), applyTimeout)
	defer cancel()
	if restricted, err := restrictedUser(ctx, nc); err == nil && restricted {
		return errRestrictedUser
	}
	files, err := streams.Definitions(streamLimits(cfg.Streams))
	if err != nil {
		return err
	}
	r, err := streams.Apply(ctx, js, files, streams.ModeUpdate, cfg.NATS.Replicas)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	for _, d := range r.Reset {
		fmt.Fprintf(out, "reset %s %s: %s, defined %s\n", d.Object, d.Field, d.Got, d.Want)
	}
	fmt.Fprintf(out, "stream definitions applied with %d replicas (%d created)\n", cfg.NATS.Replicas, len(r.Created))
	return nil
}
