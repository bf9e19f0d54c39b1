package storetest

import (
	"reflect"
	"testing"

	"github.com/fanout/fanout/store"
)

// subscribers returns the subscriptions to producerID, failing t on error.
func subscribers(t *testing.T, s Store, producerID string) []store.Subscription {
	t.Helper()
	subs, err := s.Subscribers(testContext(t), producerID)
	if err != nil {
		t.Fatalf("Subscribers(%s): %v", producerID, err)
	}
	return subs
}

// subscriberIDs returns the subscriber ids of subs, in order.
func subscriberIDs(subs []store.Subscription) []string {
	ids := []string{}
	for _, s := range subs {
		ids = append(ids, s.SubscriberID)
	}
	return ids
}

// testSubscribeIsIdempotent: a repeat keeps the subscription as it was;
// Subscribers lists a producer's subscriptions by subscriber id.
func testSubscribeIsIdempotent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	if got := subscribers(t, s, "p"); len(got) != 0 {
		t.Errorf("Subscribers before any subscribe = %+v, want none", got)
	}
	for _, sub := range []string{"b", "a", "c"} {
		if err := s.Subscribe(ctx, "p", sub); err != nil {
			t.Fatalf("Subscribe(p, %s): %v", sub, err)
		}
	}
	first := subscribers(t, s, "p")
	if got, want := subscriberIDs(first), []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Subscribers = %v, want %v", got, want)
	}
	for _, sub := range first {
		if sub.ProducerID != "p" || !isStored(sub.CreatedAt) || !sub.DeletedAt.IsZero() || len(sub.Gaps) != 0 {
			t.Errorf("subscription %+v: want producer p, a createdAt in UTC milliseconds, live, no gaps", sub)
		}
	}
	if err := s.Subscribe(ctx, "p", "a"); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	if again := subscribers(t, s, "p"); !reflect.DeepEqual(again, first) {
		t.Errorf("Subscribers after a repeat = %+v, want %+v", again, first)
	}
}

// testUnsubscribeKeepsTombstone: an unsubscribed subscription stays in
// Subscribers with DeletedAt set, once however often it is unsubscribed;
// unsubscribing what never was creates nothing.
func testUnsubscribeKeepsTombstone(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	for _, sub := range []string{"l1", "l2"} {
		if err := s.Subscribe(ctx, "p", sub); err != nil {
			t.Fatalf("Subscribe(p, %s): %v", sub, err)
		}
	}
	before := subscribers(t, s, "p")
	if err := s.Unsubscribe(ctx, "p", "l1"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	ended := subscribers(t, s, "p")
	for _, sub := range []string{"l1", "never"} {
		if err := s.Unsubscribe(ctx, "p", sub); err != nil {
			t.Errorf("Unsubscribe(p, %s) again: %v", sub, err)
		}
	}
	got := subscribers(t, s, "p")
	if !reflect.DeepEqual(got, ended) || len(got) != 2 {
		t.Fatalf("Subscribers after repeated unsubscribes = %+v, want %+v", got, ended)
	}
	if l1 := got[0]; !l1.CreatedAt.Equal(before[0].CreatedAt) || !isStored(l1.DeletedAt) || l1.DeletedAt.Before(l1.CreatedAt) {
		t.Errorf("ended subscription %+v: want its createdAt kept and a deletedAt in UTC milliseconds, not before it", l1)
	}
	if !reflect.DeepEqual(got[1], before[1]) {
		t.Errorf("live subscription %+v changed from %+v", got[1], before[1])
	}
}

// testResubscribeRecordsGap: subscribing again after an unsubscribe makes
// the subscription live again, keeps its createdAt and records the time in
// between as a gap; each round adds one.
func testResubscribeRecordsGap(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	step := func(what string, f func() error) []store.Subscription {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		subs := subscribers(t, s, "p")
		if len(subs) != 1 {
			t.Fatalf("after %s: Subscribers = %+v, want the one subscription, live or ended", what, subs)
		}
		return subs
	}
	subscribe := func() error { return s.Subscribe(ctx, "p", "l") }
	unsubscribe := func() error { return s.Unsubscribe(ctx, "p", "l") }

	created := step("Subscribe", subscribe)[0]
	ended := step("Unsubscribe", unsubscribe)[0]
	got := step("Subscribe again", subscribe)
	if l := got[0]; !l.DeletedAt.IsZero() || !l.CreatedAt.Equal(created.CreatedAt) ||
		len(l.Gaps) != 1 || !l.Gaps[0].From.Equal(ended.DeletedAt) || l.Gaps[0].To.Before(l.Gaps[0].From) || !isStored(l.Gaps[0].To) {
		t.Fatalf("resubscribed %+v: want live, createdAt %v kept, one gap from %v", got, created.CreatedAt, ended.DeletedAt)
	}
	first := got[0].Gaps[0]
	step("Unsubscribe again", unsubscribe)
	step("Subscribe a third time", subscribe)
	got = step("Subscribe a fourth time", subscribe)
	if l := got[0]; !l.DeletedAt.IsZero() || len(l.Gaps) != 2 || l.Gaps[0] != first || l.Gaps[1].From.Before(first.To) {
		t.Errorf("after a second round %+v: want live with the first gap and a later second", l)
	}
}

// testProducersAreLive: Producers lists a subscriber's live subscriptions,
// by producer id; it may lag (a GSI), so it is polled.
func testProducersAreLive(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	for _, p := range []string{"p2", "p3", "p1"} {
		if err := s.Subscribe(ctx, p, "l"); err != nil {
			t.Fatalf("Subscribe(%s, l): %v", p, err)
		}
	}
	if err := s.Subscribe(ctx, "p1", "other"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(ctx, "p3", "l"); err != nil {
		t.Fatal(err)
	}
	var got []store.Subscription
	want := []string{"p1", "p2"}
	poll(t, func() (ok bool, err error) {
		got, err = s.Producers(ctx, "l")
		ids := []string{}
		for _, sub := range got {
			ids = append(ids, sub.ProducerID)
		}
		return reflect.DeepEqual(ids, want), err
	})
	if len(got) != len(want) {
		t.Fatalf("Producers(l) = %+v, want the live subscriptions to %v", got, want)
	}
	for i, sub := range got {
		if sub.ProducerID != want[i] || sub.SubscriberID != "l" || !sub.DeletedAt.IsZero() || !isStored(sub.CreatedAt) {
			t.Errorf("Producers(l)[%d] = %+v, want a live subscription of l to %s", i, sub, want[i])
		}
	}
	if all := subscribers(t, s, "p1"); !reflect.DeepEqual(subscriberIDs(all), []string{"l", "other"}) {
		t.Errorf("Subscribers(p1) = %+v, want l and other", all)
	}
}
