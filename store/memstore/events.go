package memstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fanout/fanout/store"
)

// DynamoDB's limits, which store checks before it writes an item.
const (
	maxItemBytes         = 400 * 1024
	maxPartitionKeyBytes = 2048
	maxSortKeyBytes      = 1024
)

// itemKey identifies a SubscriberEvents item, as store's key does: the
// subscriber, and the sort key of its first event (timestamp#producer#id).
type itemKey struct{ subscriber, sortKey string }

// item is one SubscriberEvents item: a one-event item of PutEvent, or a
// packed one of PutEventRun. Its events are one subscriber's, of one
// producer and shard.
type item struct {
	key    string // its sort key
	events []store.SubscriberEvent
}

// span is what it covers, as store.RunSpans reports it.
func (it item) span() store.RunSpan {
	return store.RunSpan{Key: it.key, First: it.events[0].Position(), Last: it.events[len(it.events)-1].Position(), Count: len(it.events)}
}

// sortKey is e's item key, as store's: timestamp, producer and event id.
func sortKey(e store.SubscriberEvent) string {
	return e.Timestamp + "#" + e.AgentID + "#" + e.EventID
}

// checkKeys returns an error wrapping store.ErrRejected, for what, when
// an item keyed by e would be refused for its keys.
func checkKeys(what string, e store.SubscriberEvent) error {
	switch k := sortKey(e); {
	case len(e.SubscriberID) > maxPartitionKeyBytes:
		return fmt.Errorf("%s: %w: subscriber id is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, len(e.SubscriberID), maxPartitionKeyBytes)
	case len(k) > maxSortKeyBytes:
		return fmt.Errorf("%s: %w: sort key is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, len(k), maxSortKeyBytes)
	}
	return nil
}

// PutEvent keeps e as one SubscriberEvents item, unless an item with its
// key is there already (one-event or packed): a replay keeps nothing and
// returns created == false. The error wraps store.ErrRejected when a
// subscriber, producer or event id or the timestamp is missing, or when
// the item is over DynamoDB's limits (400 KB, keys of 2048 and 1024
// bytes).
func (s *Store) PutEvent(ctx context.Context, e store.SubscriberEvent) (created bool, err error) {
	what := fmt.Sprintf("put event %s of producer %s for subscriber %s", e.EventID, e.AgentID, e.SubscriberID)
	if err := ctxErr(ctx, what); err != nil {
		return false, err
	}
	if e.SubscriberID == "" || e.AgentID == "" || e.EventID == "" || e.Timestamp == "" {
		return false, fmt.Errorf("%s: %w: subscriber id, producer id, event id and timestamp are required", what, store.ErrRejected)
	}
	if err := checkKeys(what, e); err != nil {
		return false, err
	}
	itemBytes := len(e.SubscriberID) + len(sortKey(e)) + eventBytes(e) + len(e.AgentID) + len(e.ShardID)
	if itemBytes > maxItemBytes {
		return false, fmt.Errorf("%s: %w: item is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, itemBytes, maxItemBytes)
	}
	e.Data = slices.Clone(e.Data)
	_, created = s.putItem(item{key: sortKey(e), events: []store.SubscriberEvent{e}})
	return created, nil
}

// eventBytes estimates what e takes in an item, beside the subscriber,
// producer and shard that the item holds once.
func eventBytes(e store.SubscriberEvent) int {
	return len(e.EventID) + len(e.EventType) + len(e.Timestamp) + len(e.Data) + len(e.Seq)
}

// PutEventRun keeps events (one subscriber's, of one producer and shard,
// in order) as one packed item keyed by the first event, unless an item
// with that key is there already: then it keeps nothing and returns that
// item's span (a one-event item's is its event's position, Count 1). See
// store.(*Store).PutEventRun. Empty data is kept as null. The error
// wraps store.ErrRejected when there are no events, ids are missing or
// mixed, an event's data is not JSON, or the item is over DynamoDB's
// limits (its size estimated from the values, as PutEvent's).
func (s *Store) PutEventRun(ctx context.Context, events []store.SubscriberEvent) (*store.RunSpan, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("put event run: %w: no events", store.ErrRejected)
	}
	first := events[0]
	what := fmt.Sprintf("put %d events of producer %s for subscriber %s from event %s", len(events), first.AgentID, first.SubscriberID, first.EventID)
	if err := ctxErr(ctx, what); err != nil {
		return nil, err
	}
	if first.SubscriberID == "" || first.AgentID == "" {
		return nil, fmt.Errorf("%s: %w: subscriber id and producer id are required", what, store.ErrRejected)
	}
	itemBytes := len(first.SubscriberID) + len(sortKey(first)) + len(first.AgentID) + len(first.ShardID)
	kept := make([]store.SubscriberEvent, len(events))
	for i, e := range events {
		switch {
		case e.EventID == "" || e.Timestamp == "":
			return nil, fmt.Errorf("%s: %w: event %d has no event id or timestamp", what, store.ErrRejected, i)
		case e.SubscriberID != first.SubscriberID || e.AgentID != first.AgentID || e.ShardID != first.ShardID:
			return nil, fmt.Errorf("%s: %w: event %s is of another subscriber, producer or shard", what, store.ErrRejected, e.EventID)
		case len(e.Data) == 0:
			e.Data = json.RawMessage("null") // as store packs it
		case !json.Valid(e.Data):
			return nil, fmt.Errorf("%s: %w: event %s: data is not JSON", what, store.ErrRejected, e.EventID)
		}
		itemBytes += eventBytes(e)
		e.Data = slices.Clone(e.Data)
		kept[i] = e
	}
	if err := checkKeys(what, first); err != nil {
		return nil, err
	}
	if itemBytes > maxItemBytes {
		return nil, fmt.Errorf("%s: %w: item is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, itemBytes, maxItemBytes)
	}
	existing, created := s.putItem(item{key: sortKey(first), events: kept})
	if created {
		return nil, nil
	}
	span := existing.span()
	return &span, nil
}

// putItem keeps it for its first event's subscriber unless an item with
// its key is there, which it then returns.
func (s *Store) putItem(it item) (existing item, created bool) {
	sub := it.events[0].SubscriberID
	k := itemKey{subscriber: sub, sortKey: it.key}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.itemIndex[k]; ok {
		return s.items[sub][i], false
	}
	s.itemIndex[k] = len(s.items[sub])
	s.items[sub] = append(s.items[sub], it)
	return item{}, true
}

// RunSpans returns the spans of subscriberID's items of producerID from
// shardID that may hold an event with a timestamp between from and to,
// in key order; see store.(*Store).RunSpans.
func (s *Store) RunSpans(ctx context.Context, subscriberID, producerID, shardID, from, to string) ([]store.RunSpan, error) {
	if err := ctxErr(ctx, fmt.Sprintf("read spans of producer %s for subscriber %s", producerID, subscriberID)); err != nil {
		return nil, err
	}
	lo, err := store.RunSpanStart(from)
	if err != nil {
		return nil, fmt.Errorf("read runs of producer %s for subscriber %s: %w: from: %w", producerID, subscriberID, store.ErrRejected, err)
	}
	hi := to + "$" // '$' sorts after '#', as in store
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []store.RunSpan{}
	for _, it := range s.sortedItems(subscriberID) {
		e := it.events[0]
		if it.key >= lo && it.key <= hi && e.AgentID == producerID && e.ShardID == shardID {
			out = append(out, it.span())
		}
	}
	return out, nil
}

// sortedItems returns subscriberID's items in key order; s.mu must be
// held. The items share their events with s.
func (s *Store) sortedItems(subscriberID string) []item {
	items := slices.Clone(s.items[subscriberID])
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	return items
}

// Events returns the events of the items PutEvent and PutEventRun
// created for subscriberID, in the order they created them (each item's
// in its order): the order the table's stream carries them in.
func (s *Store) Events(subscriberID string) []store.SubscriberEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.SubscriberEvent
	for _, it := range s.items[subscriberID] {
		out = append(out, cloneEvents(it.events)...)
	}
	return out
}

// Items returns the events of each item created for subscriberID, item by
// item in the order created: the records the table's stream carries.
func (s *Store) Items(subscriberID string) [][]store.SubscriberEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]store.SubscriberEvent
	for _, it := range s.items[subscriberID] {
		out = append(out, cloneEvents(it.events))
	}
	return out
}

// cloneEvents copies events, their data included.
func cloneEvents(events []store.SubscriberEvent) []store.SubscriberEvent {
	out := slices.Clone(events)
	for i := range out {
		out[i].Data = slices.Clone(out[i].Data)
	}
	return out
}
