package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// eventWriter is satisfied by *store.Store. PutEvent must be idempotent:
// writing an item that is already there reports created=false, no error.
type eventWriter interface {
	PutEvent(ctx context.Context, e store.SubscriberEvent) (created bool, err error)
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
	}
	a.subs.counted = func(hit bool) { rec.CacheLookup(metrics.CacheSubscribers, hit) }
	a.known.counted = func(hit bool) { rec.CacheLookup(metrics.CacheProducers, hit) }
	return a
}

// Stuck returns the calls the aggregator has been retrying for longer than
// StuckAfter.
func (a *Aggregator) Stuck() []Stuck { return a.watch.Stuck() }

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
	perSubscriber := map[string][]store.SubscriberEvent{}
	var order []string // subscribers in first-seen order, for stable logs
	for _, f := range batch {
		for _, sub := range f.subs {
			s := sub.SubscriberID
			for i, e := range f.events {
				if f.dropped[i] {
					continue
				}
				if sub.filter != nil && !sub.filter.Match(e.EventType, e.Data) {
					a.rec.Filtered()
					continue
				}
				if _, ok := perSubscriber[s]; !ok {
					order = append(order, s)
				}
				perSubscriber[s] = append(perSubscriber[s], store.SubscriberEvent{Event: e, SubscriberID: s, ShardID: shardID, Seq: f.seq, Index: i, Arrived: f.arrived})
			}
		}
	}
	return forEachLimit(ctx, order, writeConcurrency, func(ctx context.Context, sub string) error {
		for _, e := range perSubscriber[sub] {
			err := a.watch.retry(ctx, shardID, func() error {
				_, err := a.events.PutEvent(ctx, e)
				return err
			}, "write subscriber event", zap.String("subscriber_id", sub), zap.String("event_id", e.EventID), zap.String("seq", e.Seq))
			if gaveUp(err) {
				data, _ := json.Marshal(e.Event) // cannot fail: the event was parsed from JSON
				err = a.dead.putEvent(ctx, e, e.ShardID, e.Seq, data, reasonClass(err), "SubscriberEvents refused the item for subscriber "+sub+": "+err.Error()+reasonCannotRedrive)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// fanned is one record's events and the subscribers they go to.
type fanned struct {
	seq     string
	arrived time.Time // when the record reached Kinesis
	events  []event.Event
	subs    []follower
	dropped []bool // per event: a repeat, delivered to no one
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
	f := &fanned{seq: seq, arrived: arrival, events: events, dropped: make([]bool, len(events))}
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
