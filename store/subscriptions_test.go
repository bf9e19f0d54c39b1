package store

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestSubscribeKeepsCreatedAt(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)

	if err := s.Subscribe(ctx, "p", "l", nil); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	first, err := s.Subscribers(ctx, "p")
	if err != nil || len(first) != 1 {
		t.Fatalf("Subscribers = %+v, %v; want one", first, err)
	}
	// The clock has moved on: a second write would store another time.
	if err := s.Subscribe(ctx, "p", "l", nil); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	again, err := s.Subscribers(ctx, "p")
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Errorf("Subscribers after a repeat = %+v, %v; want %+v", again, err, first)
	}
	if want := (Subscription{ProducerID: "p", SubscriberID: "l"}); first[0].ProducerID != want.ProducerID ||
		first[0].SubscriberID != want.SubscriberID || first[0].CreatedAt.IsZero() {
		t.Errorf("subscription %+v, want %+v with a createdAt", first[0], want)
	}
}

// TestUnsubscribe: an unsubscribed subscription is gone for the listener
// (Producers) but kept as a tombstone for the pipeline (Subscribers), so
// events that arrived while it was live can still be delivered; subscribing
// again starts a new subscription.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	for _, sub := range []string{"l1", "l2"} {
		if err := s.Subscribe(ctx, "p", sub, nil); err != nil {
			t.Fatalf("Subscribe %s: %v", sub, err)
		}
	}
	before, _ := s.Subscribers(ctx, "p")
	// Twice, and once for a subscription that never was: all succeed.
	for _, sub := range []string{"l1", "l1", "never"} {
		if err := s.Unsubscribe(ctx, "p", sub); err != nil {
			t.Errorf("Unsubscribe %s: %v", sub, err)
		}
	}
	got, err := s.Subscribers(ctx, "p")
	if err != nil || len(got) != 2 || got[0].SubscriberID != "l1" || got[1].SubscriberID != "l2" {
		t.Fatalf("Subscribers = %+v, %v; want l1 (ended) and l2", got, err)
	}
	if l1 := got[0]; l1.DeletedAt.IsZero() || !l1.DeletedAt.After(l1.CreatedAt) || l1.CreatedAt != before[0].CreatedAt {
		t.Errorf("ended subscription %+v: want its createdAt kept and a later deletedAt", l1)
	}
	if !got[1].DeletedAt.IsZero() {
		t.Errorf("live subscription %+v has a deletedAt", got[1])
	}
	producers, err := s.Producers(ctx, "l1")
	if err != nil || len(producers) != 0 {
		t.Errorf("Producers(l1) = %+v, %v; want none after the unsubscribe", producers, err)
	}
	// The tombstone expires (TTL), a live subscription never does.
	db, _ := clients(s)
	item, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.tables.Subscribers), Key: subscriptionKey("p", "l1")})
	if err != nil || item.Item[attrExpiresAt] == nil {
		t.Errorf("tombstone %v, %v: want an %s", item.Item, err, attrExpiresAt)
	}

	// Subscribing again: live again, the time in between kept as a gap.
	if err := s.Subscribe(ctx, "p", "l1", nil); err != nil {
		t.Fatal(err)
	}
	ended := got[0]
	got, _ = s.Subscribers(ctx, "p")
	if l1 := got[0]; !l1.DeletedAt.IsZero() || l1.CreatedAt != before[0].CreatedAt ||
		len(l1.Gaps) != 1 || l1.Gaps[0].From != ended.DeletedAt || !l1.Gaps[0].To.After(ended.DeletedAt) {
		t.Errorf("resubscribed %+v: want live, its createdAt kept, and one gap from %v", l1, ended.DeletedAt)
	}
	item, _ = db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.tables.Subscribers), Key: subscriptionKey("p", "l1")})
	if item.Item[attrExpiresAt] != nil {
		t.Errorf("live subscription %v carries %s: TTL would delete it", item.Item, attrExpiresAt)
	}
	// A second round adds a second gap; a repeat subscribe changes nothing.
	if err := s.Unsubscribe(ctx, "p", "l1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Subscribe(ctx, "p", "l1", nil); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = s.Subscribers(ctx, "p")
	if l1 := got[0]; !l1.DeletedAt.IsZero() || len(l1.Gaps) != 2 || !l1.Gaps[1].From.After(l1.Gaps[0].To) {
		t.Errorf("after a second unsubscribe and subscribe: %+v, want live with two gaps in order", l1)
	}
	if producers, _ := s.Producers(ctx, "l1"); len(producers) != 1 {
		t.Errorf("Producers(l1) = %+v after subscribing again, want p", producers)
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
		if err := s.Subscribe(ctx, "p", l, nil); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if err := s.Subscribe(ctx, p, "l", nil); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	// A decoy that neither query may return.
	if err := s.Subscribe(ctx, "other", "other", nil); err != nil {
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
