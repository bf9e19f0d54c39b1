package store

import (
	"fmt"
	"slices"
	"testing"
)

func TestSubscribeKeepsCreatedAt(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)

	if err := s.Subscribe(ctx, "p", "l"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	first, err := s.Subscribers(ctx, "p")
	if err != nil || len(first) != 1 {
		t.Fatalf("Subscribers = %+v, %v; want one", first, err)
	}
	// The clock has moved on: a second write would store another time.
	if err := s.Subscribe(ctx, "p", "l"); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	again, err := s.Subscribers(ctx, "p")
	if err != nil || !slices.Equal(again, first) {
		t.Errorf("Subscribers after a repeat = %+v, %v; want %+v", again, err, first)
	}
	if want := (Subscription{ProducerID: "p", SubscriberID: "l"}); first[0].ProducerID != want.ProducerID ||
		first[0].SubscriberID != want.SubscriberID || first[0].CreatedAt.IsZero() {
		t.Errorf("subscription %+v, want %+v with a createdAt", first[0], want)
	}
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	for _, sub := range []string{"l1", "l2"} {
		if err := s.Subscribe(ctx, "p", sub); err != nil {
			t.Fatalf("Subscribe %s: %v", sub, err)
		}
	}
	// Twice, and once for a subscription that never was: all succeed.
	for _, sub := range []string{"l1", "l1", "never"} {
		if err := s.Unsubscribe(ctx, "p", sub); err != nil {
			t.Errorf("Unsubscribe %s: %v", sub, err)
		}
	}
	got, err := s.Subscribers(ctx, "p")
	if err != nil || len(got) != 1 || got[0].SubscriberID != "l2" {
		t.Errorf("Subscribers = %+v, %v; want only l2", got, err)
	}
}

// TestSubscriptionsPaginate reads more subscriptions than one page holds,
// both ways round.
func TestSubscriptionsPaginate(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	s.pageSize = 2
	ctx := testContext(t)

	const n = 7
	var listeners, producers []string
	for i := range n {
		l, p := fmt.Sprintf("listener-%d", i), fmt.Sprintf("producer-%d", i)
		listeners, producers = append(listeners, l), append(producers, p)
		if err := s.Subscribe(ctx, "p", l); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if err := s.Subscribe(ctx, p, "l"); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	// A decoy that neither query may return.
	if err := s.Subscribe(ctx, "other", "other"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	subs, err := s.Subscribers(ctx, "p")
	if err != nil {
		t.Fatalf("Subscribers: %v", err)
	}
	if got := subscriberIDs(subs); !slices.Equal(got, listeners) {
		t.Errorf("Subscribers(p) = %v, want %v", got, listeners)
	}

	// The index is eventually consistent on AWS.
	var got []string
	poll(t, "producers of l", func() (bool, error) {
		subs, err := s.Producers(ctx, "l")
		got = producerIDs(subs)
		return slices.Equal(got, producers), err
	})
	if !slices.Equal(got, producers) {
		t.Errorf("Producers(l) = %v, want %v", got, producers)
	}
}

func subscriberIDs(subs []Subscription) []string {
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.SubscriberID)
	}
	return ids
}

func producerIDs(subs []Subscription) []string {
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.ProducerID)
	}
	return ids
}
