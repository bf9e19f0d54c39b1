// Package memstore is fanout's store held in memory: the same methods as
// *store.Store, with the same results and errors, for tests of the
// packages above store. The conformance suite in package storetest holds
// both to one behaviour.
//
// What it does not model: IAM (every principal gets a queue), receiving
// messages, DynamoDB's exact item sizes (it counts bytes of the values,
// a packed item's undeflated, so only items well over or under a limit
// behave alike), eventual consistency (Producers is current at once) and
// expiry (TTL). Nothing is ever throttled or refused per entry: tests
// inject such failures by wrapping a *Store.
package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fanout/fanout/store"
)

// Store keeps agents, subscriptions, subscriber events, dead letters and
// queues in memory. It is safe for concurrent use. Its methods return the
// error of ctx when ctx is done, as an AWS call would; otherwise they
// never fail but where *store.Store is documented to refuse.
type Store struct {
	now func() time.Time

	mu            sync.Mutex
	agents        map[string]store.Agent
	subscriptions map[string]map[string]*store.Subscription // producer -> subscriber -> subscription
	items         map[string][]item                         // subscriber -> SubscriberEvents items in the order created
	itemIndex     map[itemKey]int                           // -> its place in items
	deadLetters   []store.DeadLetter                        // in the order created
	queues        map[string]*queue                         // by URL
	eventIDs      map[[2]string]store.EventClaim            // (producer, eventId) -> its holder; made on first use
	policies      map[string][]string                       // agent -> subscribers-policy; made on first use
	replays       map[replayKey]*store.Replay               // made on first use
}

// New returns an empty Store whose clock is now (time.Now when nil). Like
// store's, the times it stores are now's readings in UTC, truncated to
// milliseconds.
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:           now,
		agents:        map[string]store.Agent{},
		subscriptions: map[string]map[string]*store.Subscription{},
		items:         map[string][]item{},
		itemIndex:     map[itemKey]int{},
		queues:        map[string]*queue{},
	}
}

// stamp is the current time as the Store keeps it; s.mu must be held.
func (s *Store) stamp() time.Time { return stored(s.now()) }

// stored is t as store keeps times: UTC, whole milliseconds.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// ctxErr wraps ctx's error, if any, with what the call was doing.
func ctxErr(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
