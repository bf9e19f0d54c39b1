package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/fanout/fanout/store"
)

// DynamoDB's limits, which store checks before it writes an item.
const (
	maxItemBytes         = 400 * 1024
	maxPartitionKeyBytes = 2048
	maxSortKeyBytes      = 1024
)

// eventKey identifies a SubscriberEvents item, as store's key does: the
// subscriber, and the event's timestamp, producer and id.
type eventKey struct{ subscriber, timestamp, producer, eventID string }

// PutEvent keeps e as one SubscriberEvents item, unless an item with its
// key is there already: a replay keeps nothing and returns created ==
// false. The error wraps store.ErrRejected when a subscriber, producer or
// event id or the timestamp is missing, or when the item is over
// DynamoDB's limits (400 KB, keys of 2048 and 1024 bytes).
func (s *Store) PutEvent(ctx context.Context, e store.SubscriberEvent) (created bool, err error) {
	what := fmt.Sprintf("put event %s of producer %s for subscriber %s", e.EventID, e.AgentID, e.SubscriberID)
	if err := ctxErr(ctx, what); err != nil {
		return false, err
	}
	key := eventKey{subscriber: e.SubscriberID, timestamp: e.Timestamp, producer: e.AgentID, eventID: e.EventID}
	sortKeyBytes := len(e.Timestamp) + len(e.AgentID) + len(e.EventID) + 2
	itemBytes := len(e.SubscriberID) + sortKeyBytes + len(e.EventID) + len(e.AgentID) + len(e.EventType) + len(e.Timestamp) + len(e.Data) + len(e.ShardID) + len(e.Seq)
	switch {
	case e.SubscriberID == "" || e.AgentID == "" || e.EventID == "" || e.Timestamp == "":
		return false, fmt.Errorf("%s: %w: subscriber id, producer id, event id and timestamp are required", what, store.ErrRejected)
	case len(e.SubscriberID) > maxPartitionKeyBytes:
		return false, fmt.Errorf("%s: %w: subscriber id is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, len(e.SubscriberID), maxPartitionKeyBytes)
	case sortKeyBytes > maxSortKeyBytes:
		return false, fmt.Errorf("%s: %w: sort key is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, sortKeyBytes, maxSortKeyBytes)
	case itemBytes > maxItemBytes:
		return false, fmt.Errorf("%s: %w: item is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, itemBytes, maxItemBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eventKeys[key] {
		return false, nil
	}
	s.eventKeys[key] = true
	e.Data = slices.Clone(e.Data)
	s.events[e.SubscriberID] = append(s.events[e.SubscriberID], e)
	return true, nil
}

// Events returns the items PutEvent created for subscriberID, in the order
// it created them: the order the table's stream carries them in.
func (s *Store) Events(subscriberID string) []store.SubscriberEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events[subscriberID])
}
