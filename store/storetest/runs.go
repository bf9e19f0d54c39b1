package storetest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// runBase is the time the run tests' events are relative to.
var runBase = time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)

// runTime is the event timestamp ms milliseconds after runBase.
func runTime(ms int) string {
	return runBase.Add(time.Duration(ms) * time.Millisecond).Format(event.TimeLayout)
}

// runEvent returns event id of producer for sub, read from shard at
// sequence number seq, index 0, with timestamp runTime(ms).
func runEvent(sub, producer, shard, id string, ms, seq int) store.SubscriberEvent {
	return store.SubscriberEvent{
		Event: event.Event{EventID: id, AgentID: producer, EventType: "t", Timestamp: runTime(ms),
			Data: json.RawMessage(`{"id":"` + id + `"}`)},
		SubscriberID: sub, ShardID: shard, Seq: strconv.Itoa(seq),
	}
}

// run returns events of sub and producer from shard, one per timestamp
// in ms, with ids prefix0, prefix1… and sequence numbers from seq on.
func run(sub, producer, shard, prefix string, seq int, ms ...int) []store.SubscriberEvent {
	out := make([]store.SubscriberEvent, len(ms))
	for i, m := range ms {
		out[i] = runEvent(sub, producer, shard, prefix+strconv.Itoa(i), m, seq+i)
	}
	return out
}

// spanOf is the span an item of events has.
func spanOf(events ...store.SubscriberEvent) store.RunSpan {
	return store.RunSpan{Key: events[0].Timestamp + "#" + events[0].AgentID + "#" + events[0].EventID,
		First: events[0].Position(), Last: events[len(events)-1].Position(), Count: len(events)}
}

// putRun writes events with PutEventRun and fails t unless it wrote them.
func putRun(t *testing.T, s Store, events ...store.SubscriberEvent) {
	t.Helper()
	if span, err := s.PutEventRun(testContext(t), events); err != nil || span != nil {
		t.Fatalf("PutEventRun(%d events from %s) = %+v, %v; want written", len(events), events[0].EventID, span, err)
	}
}

// putOne writes e with PutEvent and fails t unless it created it.
func putOne(t *testing.T, s Store, e store.SubscriberEvent) {
	t.Helper()
	if created, err := s.PutEvent(testContext(t), e); err != nil || !created {
		t.Fatalf("PutEvent(%s) = %v, %v; want created", e.EventID, created, err)
	}
}

// replayAll reads q's window page by page, each after the last page's
// next position, and returns every event read.
func replayAll(t *testing.T, s Store, q store.ReplayQuery) []store.LoggedEvent {
	t.Helper()
	var all []store.LoggedEvent
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("limit %d: more than 100 pages", q.Limit)
		}
		page, next, err := s.ReplayEvents(testContext(t), q)
		if err != nil {
			t.Fatalf("ReplayEvents(%+v): %v", q, err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if q.After != "" && next <= q.After {
			t.Fatalf("ReplayEvents after %q: next %q does not move on", q.After, next)
		}
		q.After = next
	}
}

// logged is events as ReplayEvents returns them from the item keyed by
// the first of events.
func logged(events ...store.SubscriberEvent) []store.LoggedEvent {
	key := spanOf(events...).Key
	out := make([]store.LoggedEvent, len(events))
	for i, e := range events {
		out[i] = store.LoggedEvent{SubscriberEvent: e, Position: key}
	}
	return out
}

// checkLogged fails t unless got is want, event by event, data byte for
// byte.
func checkLogged(t *testing.T, what string, got, want []store.LoggedEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: read %d events %v, want %d %v", what, len(got), loggedIDs(got), len(want), loggedIDs(want))
		return
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: event %d = %+v (data %s)\nwant %+v (data %s)", what, i, got[i], got[i].Data, want[i], want[i].Data)
		}
	}
}

// loggedIDs are the event ids of events.
func loggedIDs(events []store.LoggedEvent) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.EventID
	}
	return ids
}

// testPutEventRunIsIdempotent: a run is written once; a second write of
// the same first event, whatever the rest of its run, writes nothing and
// returns the span of the item written first. Events come back byte for
// byte, in order (no data as null).
func testPutEventRunIsIdempotent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	first := run("s", "p", "shard-1", "e", 100, 0, 0, 3)
	first[1].Data = json.RawMessage(`{ "spaced" : [1, 2.50, 1e3], "html": "<a&b>" }`)
	first[2].Index, first[2].Arrived, first[2].Data = 4, runBase.Add(time.Second), nil
	putRun(t, s, first...)
	first[2].Data = json.RawMessage("null") // no data is packed as null

	longer := run("s", "p", "shard-1", "e", 100, 0, 1, 2, 3, 4)
	longer[0].Data = json.RawMessage(`"changed"`)
	for _, tc := range []struct {
		name   string
		events []store.SubscriberEvent
	}{
		{"again", first},
		{"the first event alone", first[:1]},
		{"a longer run of other content", longer},
	} {
		span, err := s.PutEventRun(ctx, tc.events)
		if want := spanOf(first...); err != nil || span == nil || *span != want {
			t.Errorf("%s: PutEventRun = %+v, %v; want the first item's span %+v", tc.name, span, err, want)
		}
	}
	// Another subscriber's run of those events is an item of its own.
	theirs := slices.Clone(first)
	for i := range theirs {
		theirs[i].SubscriberID = "s2"
	}
	putRun(t, s, theirs...)

	got := replayAll(t, s, store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(time.Second)})
	checkLogged(t, "after the rewrites", got, logged(first...))
}

// testPutEventRunMeetsPutEvent: one-event and packed items share one key
// space. A run whose first event PutEvent wrote conflicts with that item
// (span: its one position); PutEvent of the first event of a run creates
// nothing.
func testPutEventRunMeetsPutEvent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	one := runEvent("s", "p", "shard-1", "a0", 0, 100)
	one.Index = 2
	putOne(t, s, one)
	r := run("s", "p", "shard-1", "a", 200, 0, 5) // a0 again, at another position
	if span, err := s.PutEventRun(ctx, r); err != nil || span == nil || *span != spanOf(one) {
		t.Errorf("PutEventRun keyed like a PutEvent item = %+v, %v; want its span %+v", span, err, spanOf(one))
	}

	packed := run("s", "p", "shard-1", "b", 300, 10, 11, 12)
	putRun(t, s, packed...)
	replayed := packed[0]
	replayed.Data = json.RawMessage(`"other"`)
	if created, err := s.PutEvent(ctx, replayed); err != nil || created {
		t.Errorf("PutEvent of a packed item's first event = %v, %v; want false, nil", created, err)
	}
	got := replayAll(t, s, store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(time.Second)})
	checkLogged(t, "the items", got, append(logged(one), logged(packed...)...))
}

// testPutEventRunRejects: a run that can never be one item is
// store.ErrRejected, and takes no key.
func testPutEventRunRejects(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	valid := func() []store.SubscriberEvent { return run("s", "p", "shard-1", "e", 100, 0, 1, 2) }
	with := func(i int, f func(e *store.SubscriberEvent)) []store.SubscriberEvent {
		r := valid()
		f(&r[i])
		return r
	}
	big := incompressible(3, 220<<10)
	for _, tc := range []struct {
		name   string
		events []store.SubscriberEvent
	}{
		{"no events", nil},
		{"no subscriber", with(0, func(e *store.SubscriberEvent) { e.SubscriberID = "" })},
		{"no producer", with(0, func(e *store.SubscriberEvent) { e.AgentID = "" })},
		{"an event without id", with(1, func(e *store.SubscriberEvent) { e.EventID = "" })},
		{"an event without timestamp", with(2, func(e *store.SubscriberEvent) { e.Timestamp = "" })},
		{"another producer's event", with(1, func(e *store.SubscriberEvent) { e.AgentID = "q" })},
		{"another subscriber's event", with(2, func(e *store.SubscriberEvent) { e.SubscriberID = "s2" })},
		{"another shard's event", with(1, func(e *store.SubscriberEvent) { e.ShardID = "shard-2" })},
		{"data that is not JSON", with(2, func(e *store.SubscriberEvent) { e.Data = json.RawMessage(`{"open":`) })},
		{"subscriber id over 2048 bytes", func() []store.SubscriberEvent {
			r := valid()
			for i := range r {
				r[i].SubscriberID = strings.Repeat("s", 2049)
			}
			return r
		}()},
		{"sort key over 1024 bytes", with(0, func(e *store.SubscriberEvent) { e.EventID = strings.Repeat("e", 1024) })},
		{"item over 400 KB", func() []store.SubscriberEvent {
			r := valid()
			for i := range r {
				r[i].Data = big[i]
			}
			return r
		}()},
	} {
		if span, err := s.PutEventRun(ctx, tc.events); !errors.Is(err, store.ErrRejected) || span != nil {
			t.Errorf("%s: PutEventRun = %+v, %v; want store.ErrRejected", tc.name, span, err)
		}
	}
	putRun(t, s, valid()...) // none of them took its key
}

// incompressible returns n JSON strings of size bytes each, of random
// base64 from a fixed seed: deflate saves a quarter of it at most.
func incompressible(n, size int) []json.RawMessage {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]json.RawMessage, n)
	for i := range out {
		raw := make([]byte, (size-2)*3/4)
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		out[i] = json.RawMessage(`"` + base64.StdEncoding.EncodeToString(raw) + `"`)
	}
	return out
}

// testRunSpans: RunSpans returns the spans of the subscriber's items of
// one producer and shard whose keys' timestamps lie in [from, to], edges
// included, one-event items among them, in key order; no other
// producer's, shard's or subscriber's.
func testRunSpans(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	before := run("s", "p", "A", "before", 10, -1001)     // begins MaxRunSpan and 1 ms before from: cannot hold an event of the range
	lookBack := run("s", "p", "A", "back", 15, -1000, -1) // begins MaxRunSpan before from: may
	atFrom := run("s", "p", "A", "from", 20, 0, 0, 2)
	middle := run("s", "p", "A", "mid", 30, 500, 600)
	one := runEvent("s", "p", "A", "one", 700, 40)
	atTo := run("s", "p", "A", "to", 50, 1000, 1200)
	after := run("s", "p", "A", "after", 60, 1001)
	for _, r := range [][]store.SubscriberEvent{
		before, lookBack, atFrom, middle, atTo, after,
		run("s", "q", "A", "q", 70, 500),  // another producer
		run("s", "p", "B", "b", 80, 500),  // another shard
		run("s2", "p", "A", "x", 90, 500), // another subscriber
	} {
		putRun(t, s, r...)
	}
	putOne(t, s, one)

	spans, err := s.RunSpans(ctx, "s", "p", "A", runTime(0), runTime(1000))
	want := []store.RunSpan{spanOf(lookBack...), spanOf(atFrom...), spanOf(middle...), spanOf(one), spanOf(atTo...)}
	if err != nil || !slices.Equal(spans, want) {
		t.Errorf("RunSpans = %+v, %v\nwant %+v", spans, err, want)
	}
	if spans, err := s.RunSpans(ctx, "s", "p", "A", runTime(2300), runTime(3000)); err != nil || len(spans) != 0 {
		t.Errorf("RunSpans of an empty range = %+v, %v; want none", spans, err)
	}
}

// testReplayEventsPackedWindow: a run that begins before From (within
// store.MaxRunSpan) yields exactly its events in the window, From
// included and To excluded, each with the run's key as its Position.
func testReplayEventsPackedWindow(t *testing.T, h Harness) {
	s := h.New(t)
	early := run("s", "p", "A", "r", 100, -900, -1, 0, 3, 9, 10, 50)
	putRun(t, s, early...)
	putRun(t, s, run("s", "p", "A", "old", 10, -1000, -999)...) // at From less MaxRunSpan: nothing in the window
	for _, limit := range []int32{0, 1} {
		got := replayAll(t, s, store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(10 * time.Millisecond), Limit: limit})
		checkLogged(t, fmt.Sprintf("limit %d", limit), got, logged(early...)[2:5])
	}
}

// testReplayEventsPackedPages: paging with Limit 1 (one item a page)
// across packed and one-event items yields every event of the window
// once, in log order (by item, each item's in its order), for every
// producer or one.
func testReplayEventsPackedPages(t *testing.T, h Harness) {
	s := h.New(t)
	a := run("s", "p", "A", "a", 100, -200, 1, 2)
	b := runEvent("s", "q", "A", "b", 2, 200)
	c := run("s", "p", "A", "c", 300, 5, 5, 6)
	d := run("s", "p", "A", "d", 400, 8, 12)
	e := run("s", "q", "B", "e", 500, 9, 9)
	putRun(t, s, d...) // written out of log order
	putRun(t, s, a...)
	putOne(t, s, b)
	putRun(t, s, c...)
	putRun(t, s, e...)
	putRun(t, s, run("s2", "p", "A", "x", 600, 3, 4)...)

	la := logged(a...)
	all := slices.Concat(la[1:], logged(b), logged(c...), logged(d...)[:1], logged(e...))
	ofP := slices.Concat(la[1:], logged(c...), logged(d...)[:1])
	for _, limit := range []int32{1, 2, 0} {
		q := store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(10 * time.Millisecond), Limit: limit}
		checkLogged(t, fmt.Sprintf("limit %d", limit), replayAll(t, s, q), all)
		q.ProducerID = "p"
		checkLogged(t, fmt.Sprintf("limit %d, producer p", limit), replayAll(t, s, q), ofP)
	}
	// Resuming after a packed item's Position reads the items after it.
	q := store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(10 * time.Millisecond), After: la[0].Position, Limit: 1}
	checkLogged(t, "after the first item", replayAll(t, s, q), all[2:])
}

// testReplayEventsMixedItems: one-event and packed items in one window
// come in the order of their keys, a packed item's events together even
// where a one-event item's timestamp lies between them.
func testReplayEventsMixedItems(t *testing.T, h Harness) {
	s := h.New(t)
	packed := run("s", "p", "A", "r", 100, 0, 2, 5)
	one1 := runEvent("s", "p", "A", "o1", 1, 200)
	one4 := runEvent("s", "q", "B", "o4", 4, 300)
	later := run("s", "q", "B", "w", 400, 4, 4)
	putOne(t, s, one4)
	putRun(t, s, packed...)
	putOne(t, s, one1)
	putRun(t, s, later...)
	want := slices.Concat(logged(packed...), logged(one1), logged(one4), logged(later...))
	for _, limit := range []int32{0, 1, 3} {
		got := replayAll(t, s, store.ReplayQuery{SubscriberID: "s", From: runBase, To: runBase.Add(10 * time.Millisecond), Limit: limit})
		checkLogged(t, fmt.Sprintf("limit %d", limit), got, want)
	}
}
