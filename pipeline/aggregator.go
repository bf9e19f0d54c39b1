package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/filter"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// SubscriptionTTL bounds how stale the aggregator's view of a producer's
// subscribers may be. With it, a subscription or unsubscription applies to
// every event accepted more than PropagationBound after its 204, on every
// task: the event is aggregated no earlier than it was accepted, and the
// cached list it is matched against was read (strongly consistent) at most
// SubscriptionTTL before that.
const (
	SubscriptionTTL  = 1 * time.Second
	PropagationBound = 2 * time.Second
)

// arrivalSlack is how much earlier than a subscription (or later than an
// unsubscription) an event may reach the stream and still be delivered to
// it: Kinesis' arrival time and the task's clock are different clocks (and
// the emulator truncates arrival times to whole seconds).
const arrivalSlack = 1 * time.Second

// Sizes of the aggregator's caches and its fan-out.
const (
	// cacheEntries bounds each cache; an evicted entry costs one Query.
	cacheEntries = 100_000
	// writeConcurrency is how many subscribers' item writes run at once
	// per shard; each subscriber's own writes stay sequential.
	writeConcurrency = 32
)

// subscriberLister is satisfied by *store.Store.
type subscriberLister interface {
	Subscribers(ctx context.Context, producerID string) ([]store.Subscription, error)
}

// agentGetter is satisfied by *store.Store.
type agentGetter interface {
	Agent(ctx context.Context, agentID string) (store.Agent, error)
}

// eventWriter is satisfied by *store.Store. PutEvent writes one-event
// items and PutEventRun packed ones, each conditionally on its key
// (writing an item that is there already writes nothing); RunSpans finds
// what items of a producer's shard begin in a range of timestamps.
type eventWriter interface {
	PutEvent(ctx context.Context, e store.SubscriberEvent) (created bool, err error)
	PutEventRun(ctx context.Context, events []store.SubscriberEvent) (existing *store.RunSpan, err error)
	RunSpans(ctx context.Context, subscriberID, producerID, shardID, from, to string) ([]store.RunSpan, error)
}

// eventIDClaimer is satisfied by *store.Store: ClaimEventID returns the
// claim that holds (producer, eventId), c itself when it was free or held
// by c's own position; one conditional write decides.
type eventIDClaimer interface {
	ClaimEventID(ctx context.Context, c store.EventClaim) (store.EventClaim, error)
}

// Aggregator fans each Kinesis record out to one SubscriberEvents item per
// subscriber of its producer. It is safe for concurrent use by the record
// processors of several shards.
type Aggregator struct {
	subs   *ttlCache[[]follower]
	known  *ttlCache[bool]
	events eventWriter
	ids    eventIDClaimer
	dead   *deadLetters
	watch  *Watchdog
	rec    Recorder
	log    *zap.Logger
	// oneEventItems: write one item per event (PutEvent), as fanout did
	// before packing, for a rolling update from such a version.
	oneEventItems bool

	mu sync.Mutex
	// resumed holds, per shard taken over (Resume) or met by another
	// writer, when that happened: until the shard's records that arrived
	// before then are durable, other writers may have written some, and
	// each batch first reads what (see writeRuns).
	resumed map[string]time.Time
}

// follower is a subscription with its filter parsed.
type follower struct {
	store.Subscription
	filter *filter.Policy // nil: every event
}

// AggregatorDeps is what an Aggregator reads and writes. *store.Store
// serves every field; tests give wrappers that fail on purpose.
type AggregatorDeps struct {
	Subscribers subscriberLister
	Agents      agentGetter
	Events      eventWriter
	EventIDs    eventIDClaimer
	DeadLetters deadLetterer
	// Metrics counts dead letters, repeats and cache lookups; nil counts
	// nothing.
	Metrics Recorder
	// OneEventItems makes the aggregator write one SubscriberEvents item
	// per event, which fanout versions before packed items read; false
	// packs each subscriber's run of a producer's events into one item.
	OneEventItems bool
}

// NewAggregator returns an Aggregator over deps.
func NewAggregator(deps AggregatorDeps, log *zap.Logger) *Aggregator {
	watch := NewWatchdog(log)
	followers := func(ctx context.Context, producerID string) ([]follower, error) {
		subs, err := deps.Subscribers.Subscribers(ctx, producerID)
		if err != nil {
			return nil, err
		}
		out := make([]follower, len(subs))
		for i, s := range subs {
			out[i].Subscription = s
			if len(s.Filter) == 0 {
				continue
			}
			// The API stores only filters that parse; one that does not
			// (written by hand) filters nothing rather than losing events.
			if out[i].filter, err = filter.Parse(s.Filter); err != nil {
				log.Error("stored filter does not parse; delivering every event", zap.String("producer_id", producerID),
					zap.String("subscriber_id", s.SubscriberID), zap.Error(err))
			}
		}
		return out, nil
	}
	rec := recorder(deps.Metrics)
	a := &Aggregator{
		subs: newTTLCache(SubscriptionTTL, cacheEntries, followers),
		known: newTTLCache(SubscriptionTTL, cacheEntries, func(ctx context.Context, id string) (bool, error) {
			_, err := deps.Agents.Agent(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		}),
		events: deps.Events,
		ids:    deps.EventIDs,
		dead:   &deadLetters{store: deps.DeadLetters, stage: metrics.StageAggregator, watch: watch, rec: rec, log: log},
		watch:  watch,
		rec:    rec,
		log:    log,

		oneEventItems: deps.OneEventItems,
		resumed:       map[string]time.Time{},
	}
	a.subs.counted = func(hit bool) { rec.CacheLookup(metrics.CacheSubscribers, hit) }
	a.known.counted = func(hit bool) { rec.CacheLookup(metrics.CacheProducers, hit) }
	return a
}

// Stuck returns the calls the aggregator has been retrying for longer than
// StuckAfter.
func (a *Aggregator) Stuck() []Stuck { return a.watch.Stuck() }

// Resume marks shardID as taken over (kcl.Resumer): until the records that
// reached the stream before now are durable, each batch first reads which
// of its events earlier writers made durable (see writeRuns).
func (a *Aggregator) Resume(shardID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.resumed[shardID]; !ok {
		a.resumed[shardID] = time.Now()
	}
}

// Handle makes every record of one shard batch durable in SubscriberEvents
// (or the dead letters) and returns nil; it returns an error only when ctx
// is cancelled first, and then nothing may be checkpointed (kcl.Handler).
//
// An event whose producer-chosen eventId an earlier event of its producer
// already has (within store.EventIDWindow) is dropped: delivered to no one.
func (a *Aggregator) Handle(ctx context.Context, shardID string, records []types.Record) error {
	batch := make([]fanned, 0, len(records))
	for _, r := range records {
		f, err := a.fanOut(ctx, shardID, r)
		if err != nil {
			return err
		}
		if f != nil {
			batch = append(batch, *f)
		}
	}
	if err := a.dropRepeats(ctx, shardID, batch); err != nil {
		return err
	}
	a.mu.Lock()
	since, resumed := a.resumed[shardID]
	a.mu.Unlock()
	last := records[len(records)-1]
	end := store.EventPosition{ShardID: shardID, Seq: aws.ToString(last.SequenceNumber), Index: math.MaxInt}
	var met atomic.Bool // a conflict: another writer has this shard too
	err := forEachLimit(ctx, a.runs(shardID, batch, resumed), writeConcurrency, func(ctx context.Context, r *run) error {
		conflict, err := a.writeRuns(ctx, r, end)
		if conflict {
			met.Store(true)
		}
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case met.Load():
		a.Resume(shardID)
	case resumed && last.ApproximateArrivalTimestamp != nil && last.ApproximateArrivalTimestamp.After(since.Add(arrivalSlack)):
		// Every record since the takeover arrived after it: nobody
		// else wrote them.
		a.mu.Lock()
		delete(a.resumed, shardID)
		a.mu.Unlock()
	}
	return nil
}

// run is one subscriber's events of one producer in a batch, in the
// producer's order, and what to read before writing them.
type run struct {
	sub, producer string
	events        []store.SubscriberEvent
	// from and to bound the timestamps of every event of the producer in
	// the batch, the subscriber's or not; set only when the shard was
	// taken over (see writeRuns).
	from, to string
}

// runs groups batch by subscriber and producer, in first-seen order. When
// resumed, every subscriber of a producer of the batch gets a run, with or
// without events (an earlier writer may have written some with another
// filter).
func (a *Aggregator) runs(shardID string, batch []fanned, resumed bool) []*run {
	byKey := map[[2]string]*run{}
	var order []*run
	get := func(sub, producer string) *run {
		k := [2]string{sub, producer}
		r, ok := byKey[k]
		if !ok {
			r = &run{sub: sub, producer: producer}
			byKey[k] = r
			order = append(order, r)
		}
		return r
	}
	for _, f := range batch {
		if resumed {
			lo, hi := f.events[0].Timestamp, f.events[0].Timestamp
			for _, e := range f.events[1:] {
				lo, hi = min(lo, e.Timestamp), max(hi, e.Timestamp)
			}
			for _, sub := range f.followers {
				r := get(sub.SubscriberID, f.events[0].AgentID)
				if r.from == "" || lo < r.from {
					r.from = lo
				}
				r.to = max(r.to, hi)
			}
		}
		for _, sub := range f.subs {
			for i, e := range f.events {
				if f.dropped[i] {
					continue
				}
				if sub.filter != nil && !sub.filter.Match(e.EventType, e.Data) {
					a.rec.Filtered()
					continue
				}
				r := get(sub.SubscriberID, e.AgentID)
				r.events = append(r.events, store.SubscriberEvent{Event: e, SubscriberID: sub.SubscriberID, ShardID: shardID, Seq: f.seq, Index: i, Arrived: f.arrived})
			}
		}
	}
	return order
}

// writeRuns makes r's events durable, each after the last an earlier
// writer made durable, and reports whether it met another writer's item.
// Packed, items are as long as store.NextRun allows; they go one after
// another (so the table's stream carries them in order). With
// oneEventItems each event is an item of its own (store.PutEvent).
//
// Why no event lands in two items, and none is skipped or put out of
// order, however batches are cut. Writers write each subscriber's events
// of a producer in order, and an item says which positions it covers.
// Other writers may have written a batch's events only if its records
// reached the stream before the shard was taken over (Resume): the
// earlier owner's writes, or those of one that lost the shard. For such a
// batch (r.from set) the aggregator first reads the spans of every item
// that may hold an event of the producer's in the batch, for every
// subscriber of the producer, whatever its filter (store.RunSpans: items
// that begin up to store.MaxRunSpan before the batch's first timestamp
// and up to its last), and writes only the events after the last span
// that begins within the batch or before it. What that writer left out
// before its last item it left out on purpose (its filter, a repeat, a
// dead letter), and writing such an event now would put it behind later
// ones in the stream; an item that reaches past the batch is found again
// by the next batch's read. A conflict on an item's key returns that
// item's span too (another writer has the shard at once: the shard counts
// as taken over again from then on), and writing goes on after it. An
// item whose key is taken by an event of another position (another
// shard's) gets that event skipped, as one-event items always did.
func (a *Aggregator) writeRuns(ctx context.Context, r *run, end store.EventPosition) (conflict bool, err error) {
	pending := r.events
	if r.from != "" {
		var spans []store.RunSpan
		// Retried until it works: writing without knowing may duplicate.
		err := a.watch.retryDurable(ctx, end.ShardID, func() (err error) {
			spans, err = a.events.RunSpans(ctx, r.sub, r.producer, end.ShardID, r.from, r.to)
			return err
		}, "read written runs", zap.String("subscriber_id", r.sub), zap.String("producer_id", r.producer))
		if err != nil {
			return false, err
		}
		for _, sp := range spans {
			if store.ComparePositions(sp.First, end) <= 0 { // items after the batch hold none of it
				pending = after(pending, sp.Last)
			}
		}
	}
	if a.oneEventItems {
		for _, e := range pending {
			if err := a.writeOne(ctx, e); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	for len(pending) > 0 {
		n := store.NextRun(pending)
		batch := pending[:n]
		var existing *store.RunSpan
		err := a.watch.retry(ctx, end.ShardID, func() (err error) {
			existing, err = a.events.PutEventRun(ctx, batch)
			return err
		}, "write subscriber events", zap.String("subscriber_id", r.sub), zap.String("event_id", batch[0].EventID), zap.String("seq", batch[0].Seq), zap.Int("events", n))
		switch {
		case gaveUp(err) && n > 1:
			// One event may be at fault: each goes alone, and only the
			// one refused is set aside.
			rest := batch
			for len(rest) > 0 {
				existing, err := a.writeAlone(ctx, rest[0])
				if err != nil {
					return conflict, err
				}
				rest = rest[1:]
				if existing != nil {
					conflict = true
					rest = after(rest, existing.Last)
				}
			}
			pending = pending[n:]
		case gaveUp(err):
			if err := a.setAside(ctx, batch[0], err); err != nil {
				return conflict, err
			}
			pending = pending[1:]
		case err != nil:
			return conflict, err
		case existing == nil:
			pending = pending[n:]
		default:
			conflict = true
			if !existing.Covers(pending[0].Position()) {
				a.log.Info("an item has the key of this event already; not written again", zap.String("subscriber_id", r.sub),
					zap.String("producer_id", r.producer), zap.String("event_id", pending[0].EventID), zap.String("item", existing.Key))
				pending = pending[1:]
			}
			pending = after(pending, existing.Last)
		}
	}
	return conflict, nil
}

// after returns the events of events (in order, of one shard) that
// follow last; all of them when last is of another shard.
func after(events []store.SubscriberEvent, last store.EventPosition) []store.SubscriberEvent {
	if len(events) == 0 || events[0].ShardID != last.ShardID {
		return events
	}
	i, _ := slices.BinarySearchFunc(events, last, func(e store.SubscriberEvent, p store.EventPosition) int {
		if store.ComparePositions(e.Position(), p) <= 0 {
			return -1
		}
		return 1
	})
	return events[i:]
}

// writeAlone writes e as a packed item of its own, setting it aside when
// it cannot be; when an item has its key already, it returns that item's
// span.
func (a *Aggregator) writeAlone(ctx context.Context, e store.SubscriberEvent) (*store.RunSpan, error) {
	var existing *store.RunSpan
	err := a.watch.retry(ctx, e.ShardID, func() (err error) {
		existing, err = a.events.PutEventRun(ctx, []store.SubscriberEvent{e})
		return err
	}, "write subscriber event", zap.String("subscriber_id", e.SubscriberID), zap.String("event_id", e.EventID), zap.String("seq", e.Seq))
	if gaveUp(err) {
		return nil, a.setAside(ctx, e, err)
	}
	return existing, err
}

// writeOne writes e as a one-event item, setting it aside when it cannot
// be.
func (a *Aggregator) writeOne(ctx context.Context, e store.SubscriberEvent) error {
	err := a.watch.retry(ctx, e.ShardID, func() error {
		_, err := a.events.PutEvent(ctx, e)
		return err
	}, "write subscriber event", zap.String("subscriber_id", e.SubscriberID), zap.String("event_id", e.EventID), zap.String("seq", e.Seq))
	if gaveUp(err) {
		return a.setAside(ctx, e, err)
	}
	return err
}

// setAside dead-letters e, which SubscriberEvents refused (err).
func (a *Aggregator) setAside(ctx context.Context, e store.SubscriberEvent, err error) error {
	data, _ := json.Marshal(e.Event) // cannot fail: the event was parsed from JSON
	return a.dead.putEvent(ctx, e, e.ShardID, e.Seq, data, reasonClass(err), "SubscriberEvents refused the item for subscriber "+e.SubscriberID+": "+err.Error()+reasonCannotRedrive)
}

// fanned is one record's events and the subscribers they go to.
type fanned struct {
	seq     string
	arrived time.Time // when the record reached Kinesis
	events  []event.Event
	subs    []follower // those subscribed when the record arrived
	// followers are every subscription of the producer, tombstones too.
	followers []follower
	dropped   []bool // per event: a repeat, delivered to no one
}

// fanOut parses one record and finds the subscribers of its producer that
// it goes to. It dead-letters the record (and returns nil) when it cannot
// be parsed or names no known producer.
func (a *Aggregator) fanOut(ctx context.Context, shardID string, r types.Record) (*fanned, error) {
	seq := aws.ToString(r.SequenceNumber)
	arrival := aws.ToTime(r.ApproximateArrivalTimestamp)
	events, err := event.ParseRecord(r.Data, aws.ToString(r.PartitionKey), shardID, seq, arrival)
	if err != nil {
		class := metrics.ReasonInvalid
		if errors.Is(err, event.ErrNotEvent) {
			class = metrics.ReasonUnparsable
		}
		return nil, a.dead.put(ctx, shardID, seq, aws.ToString(r.PartitionKey), r.Data, class, err.Error()+reasonFixProducer)
	}
	producer := events[0].AgentID
	lookup := func(what string, f func() error) (bool, error) {
		err := a.watch.retry(ctx, shardID, f, what, zap.String("producer_id", producer), zap.String("seq", seq))
		if gaveUp(err) {
			return false, a.dead.put(ctx, shardID, seq, producer, r.Data, reasonClass(err), what+": "+err.Error()+reasonRedrive)
		}
		return err == nil, err
	}
	var subs []follower
	if ok, err := lookup("list subscribers", func() (err error) {
		subs, err = a.subs.get(ctx, producer)
		return err
	}); !ok {
		return nil, err
	}
	if len(subs) == 0 {
		// Subscriptions need both agents, and agents are never deleted:
		// only a producer without subscribers can be unknown.
		var known bool
		if ok, err := lookup("look up producer", func() (err error) {
			known, err = a.known.get(ctx, producer)
			return err
		}); !ok {
			return nil, err
		}
		if !known {
			return nil, a.dead.put(ctx, shardID, seq, producer, r.Data, metrics.ReasonUnknownAgent, fmt.Sprintf("unknown producer agentId %q: register it with POST /agents, then redrive this letter (POST /deadletters/{id}/redrive)", producer))
		}
	}
	f := &fanned{seq: seq, arrived: arrival, events: events, followers: subs, dropped: make([]bool, len(events))}
	for _, s := range subs {
		if subscribedAt(s.Subscription, arrival) {
			f.subs = append(f.subs, s)
		}
	}
	return f, nil
}

// subscribedAt reports whether sub covers an event that reached the stream
// at arrival: a subscription applies to the events that arrived while it was
// live, whatever the backlog when they are aggregated. Without an arrival
// time only live subscriptions count.
func subscribedAt(sub store.Subscription, arrival time.Time) bool {
	if arrival.IsZero() {
		return sub.DeletedAt.IsZero()
	}
	if sub.CreatedAt.After(arrival.Add(arrivalSlack)) {
		return false
	}
	for _, g := range sub.Gaps { // unsubscribed then, subscribed again since
		if !arrival.Before(g.From.Add(arrivalSlack)) && arrival.Before(g.To.Add(-arrivalSlack)) {
			return false
		}
	}
	return sub.DeletedAt.IsZero() || arrival.Before(sub.DeletedAt.Add(arrivalSlack))
}
