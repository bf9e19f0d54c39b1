package memstore

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/fanout/fanout/store"
)

// tombstoneTTL is how long store keeps an ended subscription (README:
// 8 days); a resumed subscription keeps only the gaps that ended within it.
const tombstoneTTL = 8 * 24 * time.Hour

// Subscribe makes subscriberID follow producerID. A repeat keeps the
// subscription as it is; subscribing again after an unsubscribe makes it
// live again and records the time in between as a gap. It does not check
// that either agent exists.
func (s *Store) Subscribe(ctx context.Context, producerID, subscriberID string) error {
	if err := ctxErr(ctx, "subscribe "+subscriberID+" to producer "+producerID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stamp()
	sub := s.subscriptions[producerID][subscriberID]
	switch {
	case sub == nil:
		s.addSubscription(store.Subscription{ProducerID: producerID, SubscriberID: subscriberID, CreatedAt: now})
	case !sub.DeletedAt.IsZero():
		sub.Gaps = slices.DeleteFunc(sub.Gaps, func(g store.Gap) bool { return !g.To.After(now.Add(-tombstoneTTL)) })
		sub.Gaps = append(sub.Gaps, store.Gap{From: sub.DeletedAt, To: now})
		sub.DeletedAt = time.Time{}
	}
	return nil
}

// Unsubscribe makes subscriberID stop following producerID, keeping the
// subscription with DeletedAt set. It is idempotent, also for a
// subscription that never was.
func (s *Store) Unsubscribe(ctx context.Context, producerID, subscriberID string) error {
	if err := ctxErr(ctx, "unsubscribe "+subscriberID+" from producer "+producerID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.subscriptions[producerID][subscriberID]; sub != nil && sub.DeletedAt.IsZero() {
		sub.DeletedAt = s.stamp()
	}
	return nil
}

// Subscribers returns every subscription to producerID, ended ones
// included, ordered by subscriber id.
func (s *Store) Subscribers(ctx context.Context, producerID string) ([]store.Subscription, error) {
	if err := ctxErr(ctx, "subscribers of producer "+producerID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []store.Subscription{}
	for _, sub := range s.subscriptions[producerID] {
		out = append(out, copySubscription(sub))
	}
	slices.SortFunc(out, func(a, b store.Subscription) int { return strings.Compare(a.SubscriberID, b.SubscriberID) })
	return out, nil
}

// Producers returns the live subscriptions of subscriberID, ordered by
// producer id. Unlike store's, it shows a subscription at once.
func (s *Store) Producers(ctx context.Context, subscriberID string) ([]store.Subscription, error) {
	if err := ctxErr(ctx, "producers followed by "+subscriberID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []store.Subscription{}
	for _, subs := range s.subscriptions {
		if sub := subs[subscriberID]; sub != nil && sub.DeletedAt.IsZero() {
			out = append(out, copySubscription(sub))
		}
	}
	slices.SortFunc(out, func(a, b store.Subscription) int { return strings.Compare(a.ProducerID, b.ProducerID) })
	return out, nil
}

// AddSubscription stores sub as it is, replacing the subscription of its
// producer and subscriber: a test's fixture, for subscriptions made at
// given times.
func (s *Store) AddSubscription(sub store.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addSubscription(sub)
}

// addSubscription is AddSubscription with s.mu held.
func (s *Store) addSubscription(sub store.Subscription) {
	subs := s.subscriptions[sub.ProducerID]
	if subs == nil {
		subs = map[string]*store.Subscription{}
		s.subscriptions[sub.ProducerID] = subs
	}
	sub = copySubscription(&sub)
	subs[sub.SubscriberID] = &sub
}

// copySubscription returns *sub sharing no memory with it.
func copySubscription(sub *store.Subscription) store.Subscription {
	c := *sub
	c.Gaps = slices.Clone(sub.Gaps)
	return c
}
