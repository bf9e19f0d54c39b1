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

// Aggregator fans each Kinesis record out to one SubscriberEvents item per
// subscriber of its producer. It is safe for concurrent use by the record
// processors of several shards.
type Aggregator struct {
	subs   *ttlCache[[]store.Subscription]
	known  *ttlCache[bool]
	events eventWriter
	dead   *deadLetters
	log    *zap.Logger
}

// AggregatorDeps is what an Aggregator reads and writes. *store.Store
// serves every field; tests give wrappers that fail on purpose.
type AggregatorDeps struct {
	Subscribers subscriberLister
	Agents      agentGetter
	Events      eventWriter
	DeadLetters deadLetterer
}

// NewAggregator returns an Aggregator over deps.
func NewAggregator(deps AggregatorDeps, log *zap.Logger) *Aggregator {
	return &Aggregator{
		subs: newTTLCache(SubscriptionTTL, cacheEntries, deps.Subscribers.Subscribers),
		known: newTTLCache(SubscriptionTTL, cacheEntries, func(ctx context.Context, id string) (bool, error) {
			_, err := deps.Agents.Agent(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		}),
		events: deps.Events,
		dead:   &deadLetters{store: deps.DeadLetters, stage: "aggregator", log: log},
		log:    log,
	}
}

// Handle makes every record of one shard batch durable in SubscriberEvents
// (or the dead letters) and returns nil; it returns an error only when ctx
// is cancelled first, and then nothing may be checkpointed (kcl.Handler).
func (a *Aggregator) Handle(ctx context.Context, shardID string, records []types.Record) error {
	perSubscriber := map[string][]store.SubscriberEvent{}
	var order []string // subscribers in first-seen order, for stable logs
	for _, r := range records {
		events, err := a.fanOut(ctx, shardID, r)
		if err != nil {
			return err
		}
		for _, e := range events {
			if _, ok := perSubscriber[e.SubscriberID]; !ok {
				order = append(order, e.SubscriberID)
			}
			perSubscriber[e.SubscriberID] = append(perSubscriber[e.SubscriberID], e)
		}
	}
	return forEachLimit(ctx, order, writeConcurrency, func(ctx context.Context, sub string) error {
		for _, e := range perSubscriber[sub] {
			err := retry(ctx, func() error {
				_, err := a.events.PutEvent(ctx, e)
				return err
			}, a.log, "write subscriber event", zap.String("subscriber_id", sub), zap.String("event_id", e.EventID))
			if errors.Is(err, store.ErrRejected) {
				data, _ := json.Marshal(e.Event) // cannot fail: the event was parsed from JSON
				err = a.dead.putEvent(ctx, e, e.ShardID, e.Seq, data, "SubscriberEvents refused the item for subscriber "+sub+": "+err.Error())
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// fanOut turns one record into the items for its producer's subscribers, or
// dead-letters it when it cannot be parsed or names no known producer.
func (a *Aggregator) fanOut(ctx context.Context, shardID string, r types.Record) ([]store.SubscriberEvent, error) {
	seq := aws.ToString(r.SequenceNumber)
	arrival := aws.ToTime(r.ApproximateArrivalTimestamp)
	events, err := event.ParseRecord(r.Data, aws.ToString(r.PartitionKey), shardID, seq, arrival)
	if err != nil {
		return nil, a.dead.put(ctx, shardID, seq, r.Data, err.Error())
	}
	producer := events[0].AgentID
	var subs []store.Subscription
	if err := retry(ctx, func() (err error) {
		subs, err = a.subs.get(ctx, producer)
		return err
	}, a.log, "list subscribers", zap.String("producer_id", producer)); err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		// Subscriptions need both agents, and agents are never deleted:
		// only a producer without subscribers can be unknown.
		var known bool
		if err := retry(ctx, func() (err error) {
			known, err = a.known.get(ctx, producer)
			return err
		}, a.log, "look up producer", zap.String("producer_id", producer)); err != nil {
			return nil, err
		}
		if !known {
			return nil, a.dead.put(ctx, shardID, seq, r.Data, fmt.Sprintf("unknown producer agentId %q: register it with POST /agents", producer))
		}
		return nil, nil
	}
	var out []store.SubscriberEvent
	for _, s := range subs {
		if !subscribedAt(s, arrival) {
			continue
		}
		for _, e := range events {
			out = append(out, store.SubscriberEvent{Event: e, SubscriberID: s.SubscriberID, ShardID: shardID, Seq: seq})
		}
	}
	return out, nil
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
