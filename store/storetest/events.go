package storetest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// subscriberEvent returns event id of producer for subscriber sub.
func subscriberEvent(producer, sub, id string) store.SubscriberEvent {
	return store.SubscriberEvent{
		Event: event.Event{EventID: id, AgentID: producer, EventType: "exampleEvent",
			Timestamp: "2025-07-01T12:00:00.000Z", Data: json.RawMessage(`{"id":"` + id + `"}`)},
		SubscriberID: sub, ShardID: "shardId-000000000001", Seq: "4959",
	}
}

// testPutEventIsIdempotent: an item is created once per subscriber,
// producer and event; writing it again, whatever its data, creates nothing.
func testPutEventIsIdempotent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	e := subscriberEvent("p", "s", "e1")
	changed := e
	changed.Data, changed.Seq = json.RawMessage(`"replayed"`), "5000"
	otherProducer := subscriberEvent("q", "s", "e1")
	laterSameID := e
	laterSameID.Timestamp = "2025-07-01T12:00:00.001Z"
	for _, tc := range []struct {
		name    string
		e       store.SubscriberEvent
		created bool
	}{
		{"first", e, true},
		{"replay", e, false},
		{"replay with other data", changed, false},
		{"next event", subscriberEvent("p", "s", "e2"), true},
		{"another subscriber", subscriberEvent("p", "s2", "e1"), true},
		{"another producer's event of that id", otherProducer, true},
		{"that id at another time", laterSameID, true},
	} {
		created, err := s.PutEvent(ctx, tc.e)
		if err != nil || created != tc.created {
			t.Errorf("%s: PutEvent = %v, %v; want %v, nil", tc.name, created, err, tc.created)
		}
	}
}

// testPutEventRejects: an item that can never be written is
// store.ErrRejected.
func testPutEventRejects(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	for _, tc := range []struct {
		name   string
		change func(e *store.SubscriberEvent)
	}{
		{"no subscriber", func(e *store.SubscriberEvent) { e.SubscriberID = "" }},
		{"no producer", func(e *store.SubscriberEvent) { e.AgentID = "" }},
		{"no event id", func(e *store.SubscriberEvent) { e.EventID = "" }},
		{"no timestamp", func(e *store.SubscriberEvent) { e.Timestamp = "" }},
		{"subscriber id over 2048 bytes", func(e *store.SubscriberEvent) { e.SubscriberID = strings.Repeat("s", 2049) }},
		{"sort key over 1024 bytes", func(e *store.SubscriberEvent) { e.EventID = strings.Repeat("e", 1024) }},
		{"item over 400 KB", func(e *store.SubscriberEvent) { e.Data = json.RawMessage(`"` + strings.Repeat("x", 410*1024) + `"`) }},
	} {
		e := subscriberEvent("p", "s", "e1")
		tc.change(&e)
		if created, err := s.PutEvent(ctx, e); !errors.Is(err, store.ErrRejected) || created {
			t.Errorf("%s: PutEvent = %v, %v; want store.ErrRejected", tc.name, created, err)
		}
	}
	// None of them took the key of the valid event.
	if created, err := s.PutEvent(ctx, subscriberEvent("p", "s", "e1")); err != nil || !created {
		t.Errorf("PutEvent of the valid event = %v, %v; want created", created, err)
	}
}
