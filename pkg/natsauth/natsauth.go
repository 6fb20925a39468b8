// Package natsauth says who may do what on the NATS of sdevents: one user
// per service (ingress, quota, archiver, aggregator, console), the
// downstream reader and the operator (admin), each with the subjects it may
// publish and subscribe to. The permissions are data: the embedded server
// of `sdevents run`, the compose stack's nats.conf and the Helm values of
// the NATS chart are all made from Users, and the tests of each compare
// with it.
//
// Every user lives in the server's global account, where the streams are.
// Subject permissions stop a user from publishing on another's subjects and
// from touching another's consumers; they cannot stop a user that may send
// a request from naming any subject as its reply subject, which the
// responder (JetStream's API among them) then publishes to. What that allows
// and what bounds it is in docs/security.md ("NATS permissions").
//
// The package also keeps the embedded server's generated passwords
// (LoadOrCreatePasswords) and makes connection URLs from them. It does no
// network I/O.
package natsauth

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/streams"
)

// The users. A service process connects as the user of its name.
const (
	Ingress    = "ingress"
	Quota      = "quota"
	Archiver   = "archiver"
	Aggregator = "aggregator"
	Console    = "console"
	// Downstream reads the sd.> streams and manages consumers of its own;
	// it publishes nothing under sd.>.
	Downstream = "downstream"
	// Admin may do everything: it applies the stream definitions, and the
	// operator commands (replay, the nats CLI) use it.
	Admin = "admin"
)

// Services are the users of the sdevents services, in the order `sdevents
// run` starts them.
var Services = []string{Ingress, Quota, Archiver, Aggregator, Console}

// Names are every user, services first.
func Names() []string { return append(slices.Clone(Services), Downstream, Admin) }

// Permissions are what a user may publish and subscribe to. Deny wins over
// Allow. AllowResponses lets the user answer requests it receives: one
// message to each reply subject, whatever the subject.
type Permissions struct {
	Publish        Subjects
	Subscribe      Subjects
	AllowResponses bool
}

// Subjects are the subjects a permission allows and denies (NATS wildcards:
// "*" one token, ">" the rest).
type Subjects struct {
	Allow []string
	Deny  []string
}

// User is one NATS user. Permissions nil means every subject (Admin).
// Password is empty in what Users returns: the caller fills it.
type User struct {
	Name        string
	Password    string
	Permissions *Permissions
}

// InboxPrefix is the reply-subject prefix of a user's connections
// (nats.CustomInboxPrefix): each service and the admin receive their
// replies, JetStream's included, under a prefix that no other user may
// subscribe to. Downstream, and any name that is not one of these users,
// keep the default "_INBOX", which every NATS client uses unless told
// otherwise.
func InboxPrefix(user string) string {
	if user == Downstream || !slices.Contains(Names(), user) {
		return "_INBOX"
	}
	return "_INBOX_" + user
}

// RPC subjects of the quota service (pkg/quotarpc); the subjects each
// service publishes on are pkg/contract's. A service publishes its timers
// as message schedules on its timer subjects; the server fires them onto
// its due subjects, which no user publishes to. The tests of cmd/sdevents
// run the services against these permissions.
const (
	rpcDecide  = quotarpc.SubjectDecide
	rpcAbandon = quotarpc.SubjectAbandon
	rpcGrant   = quotarpc.SubjectGrant
	rpcAccount = quotarpc.SubjectAccount
	// maxDeliveries is JetStream's advisory for a message whose last
	// delivery went unanswered, + <stream>.<consumer>.
	maxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
)

// durable is a durable consumer of streams/ and the user that consumes it.
type durable struct{ stream, name string }

// owned are the durable consumers of each service. Every durable of
// streams/ has exactly one owner: Users fails otherwise. The owner alone
// consumes it, records the messages it gives up on (sd.dead.<consumer>)
// and receives its max-deliveries advisories.
var owned = map[string][]durable{
	Quota:      {{contract.StreamQuotaTimers, "quota-expiry"}},
	Archiver:   {{contract.StreamIngress, "archiver"}, {contract.StreamArchiverTimers, "archiver-due"}, {contract.StreamArchiverRetry, "archiver-retry"}},
	Aggregator: {{contract.StreamIngress, "aggregator"}, {contract.StreamAggregatorTimers, "aggregator-due"}},
}

// Users returns every user with its permissions, made from the stream
// definitions of streams/: each service may read the streams it reads,
// consume its own durable consumers only, and publish on its own subjects
// only. It fails when a durable consumer of streams/ has no owner here, or
// an owned one is not defined.
func Users() ([]User, error) {
	files, err := streams.Load(streams.Files())
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	b := &builder{}
	for _, f := range files {
		if f.KV != nil {
			b.all = append(b.all, "KV_"+f.KV.Bucket)
			continue
		}
		b.all = append(b.all, f.Stream.Name)
		public := true
		for _, s := range f.Stream.Subjects {
			public = public && strings.HasPrefix(s, contract.SubjectPrefix)
		}
		if public {
			b.public = append(b.public, f.Stream.Name)
		}
		for _, c := range f.Consumers {
			b.durables = append(b.durables, durable{f.Stream.Name, c.Name})
		}
	}
	if err := b.checkOwners(); err != nil {
		return nil, err
	}
	users := []User{
		b.service(Ingress, func(p *perm) {
			// Events; the claim of each callback sign (INGRESS_CLAIMS);
			// the quota RPC.
			p.pub(contract.SubjectCallback+">", contract.SubjectSNS+">", contract.SubjectIngressClaim+">", rpcDecide, rpcAbandon)
			p.read(contract.StreamIngress, contract.StreamIngressClaims)
			p.kv(contract.BucketSNSConfirmations)
		}),
		b.service(Quota, func(p *perm) {
			p.pub(contract.SubjectQuota+">", contract.SubjectQuotaTimer+">")
			p.sub(rpcDecide, rpcAbandon, rpcGrant, rpcAccount)
			p.AllowResponses = true
			p.read(contract.StreamQuota, contract.StreamQuotaTimers)
		}),
		b.service(Archiver, func(p *perm) {
			p.pub(contract.SubjectArchive+">", contract.SubjectArchiverTimer+">")
			p.read(contract.StreamIngress, contract.StreamArchive, contract.StreamArchiverTimers, contract.StreamArchiverRetry)
			p.kv(contract.BucketArchiveKeys)
			for _, d := range owned[Archiver] {
				p.sub(maxDeliveries + d.stream + "." + d.name)
			}
		}),
		b.service(Aggregator, func(p *perm) {
			// Job records; idle timers; the facts of large jobs, purged
			// once a job is published; messages given up (pkg/deadletter).
			p.pub(contract.SubjectJobFinished+">", contract.SubjectAggregatorTimer+">", contract.SubjectAggregatorFact+">",
				"$JS.API.STREAM.PURGE."+contract.StreamAggregatorFacts, contract.SubjectDead+"aggregator")
			p.read(contract.StreamIngress, contract.StreamQuota, contract.StreamArchive, contract.StreamJobs, contract.StreamAggregatorTimers, contract.StreamAggregatorFacts)
			p.kv(contract.BucketAggregatorState)
		}),
		b.service(Console, func(p *perm) {
			// The live view; archive retry requests (pkg/archiveretry);
			// grants and account states, asked of the quota replicas
			// (only the console and the admin may ask for a grant).
			p.sub(contract.SubjectEvents)
			p.pub(contract.SubjectArchiverRetry+">", rpcGrant, rpcAccount)
			p.read(contract.StreamIngress, contract.StreamQuota, contract.StreamArchive, contract.StreamJobs, contract.StreamDead)
			p.kv(contract.BucketConsoleSessions)
		}),
		b.downstream(),
		{Name: Admin},
	}
	return users, nil
}

// builder holds what the stream definitions say.
type builder struct {
	all      []string  // every stream and KV stream (KV_<bucket>)
	public   []string  // the streams of sd.> subjects
	durables []durable // every durable consumer
}

func (b *builder) checkOwners() error {
	owner := map[durable]string{}
	var errs []error
	for user, ds := range owned {
		for _, d := range ds {
			owner[d] = user
			if !slices.Contains(b.durables, d) {
				errs = append(errs, fmt.Errorf("natsauth: %s owns %s/%s, which streams/ does not define", user, d.stream, d.name))
			}
		}
	}
	for _, d := range b.durables {
		if owner[d] == "" {
			errs = append(errs, fmt.Errorf("natsauth: durable consumer %s/%s of streams/ has no owner", d.stream, d.name))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// perm collects one user's permissions.
type perm struct {
	Permissions
	b    *builder
	user string
	// reads are the streams the user may read and create consumers on.
	reads []string
}

func (p *perm) pub(s ...string) { p.Publish.Allow = append(p.Publish.Allow, s...) }
func (p *perm) sub(s ...string) { p.Subscribe.Allow = append(p.Subscribe.Allow, s...) }

// read lets the user read streams: message gets, and consumers of its own
// (ordered and ephemeral ones, whose names nats.go makes up) — never the
// durable consumers of another user (finish denies them).
func (p *perm) read(names ...string) {
	for _, s := range names {
		api := "$JS.API."
		p.pub(api+"STREAM.MSG.GET."+s, api+"DIRECT.GET."+s, api+"DIRECT.GET."+s+".>",
			api+"CONSUMER.CREATE."+s+".>", api+"CONSUMER.DELETE."+s+".*",
			api+"CONSUMER.INFO."+s+".*", api+"CONSUMER.MSG.NEXT."+s+".*")
		p.reads = append(p.reads, s)
	}
}

// kv lets the user read and write a key-value bucket.
func (p *perm) kv(bucket string) {
	p.pub("$KV." + bucket + ".>")
	p.read("KV_" + bucket)
}

// finish adds what every user of a service needs, the consumers it owns
// (with their dead-letter subjects and max-deliveries advisories), and the
// denials of everyone else's durable consumers.
func (p *perm) finish() User {
	api := "$JS.API."
	for _, s := range p.b.all {
		// The readiness check looks at every stream of streams/.
		p.pub(api + "STREAM.INFO." + s)
	}
	// What the user may do, asked before the stream definitions are
	// applied (a restricted user only checks them).
	p.pub("$SYS.REQ.USER.INFO")
	for _, d := range owned[p.user] {
		p.pub(api+"CONSUMER.INFO."+d.stream+"."+d.name, api+"CONSUMER.MSG.NEXT."+d.stream+"."+d.name,
			"$JS.ACK."+d.stream+"."+d.name+".>", contract.SubjectDead+d.name)
		p.sub(maxDeliveries + d.stream + "." + d.name)
	}
	p.denyOthers()
	p.Publish.Allow = unique(p.Publish.Allow)
	p.Subscribe.Allow = unique(p.Subscribe.Allow)
	perms := p.Permissions
	return User{Name: p.user, Permissions: &perms}
}

// denyOthers denies the user every durable consumer it does not own on the
// streams it reads: creating or updating it, deleting it, pulling from it
// (which would take messages from its owner) and acknowledging for it.
func (p *perm) denyOthers() {
	mine := owned[p.user]
	for _, d := range p.b.durables {
		if !slices.Contains(p.reads, d.stream) || slices.Contains(mine, d) {
			continue
		}
		c := d.stream + "." + d.name
		api := "$JS.API.CONSUMER."
		p.Publish.Deny = append(p.Publish.Deny, api+"CREATE."+c, api+"CREATE."+c+".>", api+"DURABLE.CREATE."+c,
			api+"DELETE."+c, api+"MSG.NEXT."+c, "$JS.ACK."+c+".>")
	}
	p.Publish.Deny = unique(p.Publish.Deny)
}

func (b *builder) service(user string, fill func(*perm)) User {
	p := &perm{b: b, user: user}
	p.sub(InboxPrefix(user) + ".>")
	fill(p)
	return p.finish()
}

// downstream reads the public streams (the sd.> subjects): stream info,
// message gets, consumers of its own, durable or not, pulled and
// acknowledged; core subscriptions to sd.>. It publishes nothing else.
func (b *builder) downstream() User {
	p := &perm{b: b, user: Downstream}
	api := "$JS.API."
	p.pub(api+"INFO", api+"STREAM.NAMES")
	p.sub("_INBOX.>", contract.SubjectEvents)
	for _, s := range b.public {
		p.read(s)
		p.pub(api+"STREAM.INFO."+s, api+"CONSUMER.DURABLE.CREATE."+s+".*", api+"CONSUMER.NAMES."+s, api+"CONSUMER.LIST."+s,
			"$JS.ACK."+s+".>", "$JS.FC."+s+".>")
	}
	p.pub("$SYS.REQ.USER.INFO")
	p.denyOthers()
	p.Publish.Allow = unique(p.Publish.Allow)
	p.Subscribe.Allow = unique(p.Subscribe.Allow)
	perms := p.Permissions
	return User{Name: Downstream, Permissions: &perms}
}

// unique returns s without repeats, in first-seen order.
func unique(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
