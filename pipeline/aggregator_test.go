package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

// longAgo is when the tests' subscriptions were made, unless they say.
var longAgo = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// subscribed returns producer's subscriptions by subs, all made longAgo.
func subscribed(producer string, subs ...string) []store.Subscription {
	out := make([]store.Subscription, len(subs))
	for i, s := range subs {
		out[i] = store.Subscription{ProducerID: producer, SubscriberID: s, CreatedAt: longAgo}
	}
	return out
}

// streamRecord is a Kinesis record with partition key key, sequence number
// seq and arrival time arrival (zero: none) holding data.
func streamRecord(key, seq string, arrival time.Time, data string) types.Record {
	r := types.Record{Data: []byte(data), PartitionKey: aws.String(key), SequenceNumber: aws.String(seq)}
	if !arrival.IsZero() {
		r.ApproximateArrivalTimestamp = aws.Time(arrival)
	}
	return r
}

// eventJSON is the JSON of an event of producer with id (none when empty).
func eventJSON(producer, id string) string {
	b, _ := json.Marshal(event.Event{EventID: id, AgentID: producer, Timestamp: "2025-07-01T12:00:00.000Z", EventType: "exampleEvent", Data: json.RawMessage(`{"id":"` + id + `"}`)})
	return string(b)
}

// aggregatorFakes holds an Aggregator's collaborators: wrappers around
// one in-memory store.
type aggregatorFakes struct {
	store  *memstore.Store
	subs   *flakySubscribers
	agents *flakyAgents
	events *recordingEvents
	ids    *flakyEventIDs
	dead   *flakyDeadLetters
}

// newAggregatorFakes returns the collaborators over a store holding subs
// and the agents ids.
func newAggregatorFakes(subs map[string][]store.Subscription, agents ...string) aggregatorFakes {
	st := newMemStore(subs, agents...)
	return aggregatorFakes{
		store:  st,
		subs:   &flakySubscribers{Store: st},
		agents: &flakyAgents{Store: st},
		events: &recordingEvents{Store: st},
		ids:    &flakyEventIDs{Store: st},
		dead:   &flakyDeadLetters{Store: st},
	}
}

func newTestAggregator(t *testing.T, f aggregatorFakes, log *zap.Logger) *Aggregator {
	t.Helper()
	if f.events.t == nil {
		f.events.t = t
	}
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel))
	}
	return NewAggregator(AggregatorDeps{Subscribers: f.subs, Agents: f.agents, Events: f.events, EventIDs: f.ids, DeadLetters: f.dead}, log)
}

// defaultAggregatorFakes: producer P followed by s1 and s2, Q by s2 only,
// agents P, Q, s1, s2 and the lone producer L known.
func defaultAggregatorFakes() aggregatorFakes {
	return newAggregatorFakes(map[string][]store.Subscription{
		"P": subscribed("P", "s1", "s2"),
		"Q": subscribed("Q", "s2"),
	}, "P", "Q", "L", "s1", "s2")
}

func TestAggregatorFansOut(t *testing.T) {
	t.Parallel()
	// 40 subscribers: more than writeConcurrency run at once.
	var subs []string
	for i := range 40 {
		subs = append(subs, fmt.Sprintf("s%02d", i))
	}
	f := newAggregatorFakes(map[string][]store.Subscription{
		"P": subscribed("P", subs...),
		"Q": subscribed("Q", "s00"),
	}, "P", "Q")
	a := newTestAggregator(t, f, nil)
	arrival := time.Date(2025, 7, 1, 12, 0, 1, 0, time.UTC)
	records := []types.Record{
		streamRecord("P", "100", arrival, eventJSON("P", "p1")),
		streamRecord("Q", "101", arrival, eventJSON("Q", "q1")),
		streamRecord("P", "102", arrival, `[`+eventJSON("P", "p2")+`,`+eventJSON("P", "")+`]`),
		streamRecord("P", "103", arrival, `{"agentId":"P","eventType":"bare"}`),
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatalf("handle: %v", err)
	}

	item := func(sub, id, producer, eventType, ts, data, seq string) store.SubscriberEvent {
		return store.SubscriberEvent{Event: event.Event{EventID: id, AgentID: producer, EventType: eventType, Timestamp: ts, Data: json.RawMessage(data)}, SubscriberID: sub, ShardID: "shardId-1", Seq: seq, Arrived: arrival}
	}
	generated := func(e store.SubscriberEvent) store.SubscriberEvent { e.GeneratedID = true; return e }
	withIndex := func(e store.SubscriberEvent, i int) store.SubscriberEvent { e.Index = i; return e }
	const ts = "2025-07-01T12:00:00.000Z"
	got := f.events.written()
	for _, sub := range subs {
		want := []store.SubscriberEvent{item(sub, "p1", "P", "exampleEvent", ts, `{"id":"p1"}`, "100")}
		if sub == "s00" {
			want = append(want, item(sub, "q1", "Q", "exampleEvent", ts, `{"id":"q1"}`, "101"))
		}
		want = append(want,
			item(sub, "p2", "P", "exampleEvent", ts, `{"id":"p2"}`, "102"),
			generated(withIndex(item(sub, "shardId-1:102:1", "P", "exampleEvent", ts, `{"id":""}`, "102"), 1)),
			generated(item(sub, "shardId-1:103", "P", "bare", "2025-07-01T12:00:01.000Z", `null`, "103")),
		)
		// Each producer's events in order; producers' items are written
		// independently.
		byProducer := func(a, b store.SubscriberEvent) int { return strings.Compare(a.AgentID, b.AgentID) }
		slices.SortStableFunc(want, byProducer)
		slices.SortStableFunc(got[sub], byProducer)
		if !reflect.DeepEqual(got[sub], want) {
			t.Errorf("subscriber %s items =\n%+v\nwant\n%+v", sub, got[sub], want)
		}
	}
	if len(got) != len(subs) {
		t.Errorf("items written for %d subscribers, want %d", len(got), len(subs))
	}
	if dl := f.dead.all(); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}

func TestAggregatorKeepsSubscriberOrderUnderRetries(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	// s1's second event fails twice, s2's first once: each subscriber's
	// run is written again whole, and nothing of it lands before.
	f.events.fail = func(e store.SubscriberEvent, attempt int) error {
		if (e.SubscriberID == "s1" && e.EventID == "p2" && attempt < 2) || (e.SubscriberID == "s2" && e.EventID == "p1" && attempt < 1) {
			return errors.New("ProvisionedThroughputExceededException")
		}
		return nil
	}
	a := newTestAggregator(t, f, nil)
	var records []types.Record
	for i := range 4 {
		id := fmt.Sprintf("p%d", i+1)
		records = append(records, streamRecord("P", fmt.Sprint(100+i), time.Time{}, eventJSON("P", id)))
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatalf("handle: %v", err)
	}
	run := []string{"p1", "p2", "p3", "p4"}
	wantCalls := map[string][][]string{"s1": {run, run, run}, "s2": {run, run}}
	f.events.mu.Lock()
	calls := f.events.runs
	f.events.mu.Unlock()
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("PutEventRun calls per subscriber = %v, want %v", calls, wantCalls)
	}
	want := map[string][]string{"s1": {"p1", "p2", "p3", "p4"}, "s2": {"p1", "p2", "p3", "p4"}}
	if got := f.events.writtenIDs(); !reflect.DeepEqual(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
}

func TestAggregatorSubscriptionTime(t *testing.T) {
	t.Parallel()
	arrival := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	subs := []store.Subscription{
		{ProducerID: "P", SubscriberID: "before", CreatedAt: arrival.Add(-time.Hour)},
		{ProducerID: "P", SubscriberID: "within-slack", CreatedAt: arrival.Add(arrivalSlack - time.Millisecond)},
		{ProducerID: "P", SubscriberID: "after", CreatedAt: arrival.Add(arrivalSlack + time.Millisecond)},
	}
	for _, tc := range []struct {
		name    string
		arrival time.Time
		want    map[string][]string
	}{
		{"arrival known", arrival, map[string][]string{"before": {"p1"}, "within-slack": {"p1"}}},
		{"no arrival time", time.Time{}, map[string][]string{"before": {"p1"}, "within-slack": {"p1"}, "after": {"p1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newAggregatorFakes(map[string][]store.Subscription{"P": subs}, "P", "Q", "L", "s1", "s2")
			a := newTestAggregator(t, f, nil)
			if err := a.Handle(boundedCtx(t), "shardId-1", []types.Record{streamRecord("P", "1", tc.arrival, eventJSON("P", "p1"))}); err != nil {
				t.Fatalf("handle: %v", err)
			}
			if got := f.events.writtenIDs(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("items = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAggregatorSetsAside(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		key    string
		data   string
		reason string // in the dead letter's reason; empty: no dead letter
	}{
		{name: "garbage", key: "P", data: "not json at all", reason: "record is not an event"},
		{name: "trailing garbage", key: "P", data: eventJSON("P", "x") + "}", reason: "record is not an event"},
		{name: "empty array", key: "P", data: "[]", reason: "empty array"},
		{name: "no eventType", key: "P", data: `{"agentId":"P"}`, reason: "eventType is required"},
		{name: "partition key is not the producer", key: "Q", data: eventJSON("P", "x"), reason: `partition key "Q"`},
		{name: "unknown producer", key: "ghost", data: eventJSON("ghost", "x"), reason: `unknown producer agentId "ghost"`},
		{name: "known producer without subscribers", key: "L", data: eventJSON("L", "x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := defaultAggregatorFakes()
			a := newTestAggregator(t, f, nil)
			records := []types.Record{
				streamRecord(tc.key, "7", time.Time{}, tc.data),
				streamRecord("P", "8", time.Time{}, eventJSON("P", "good")),
			}
			if err := a.Handle(boundedCtx(t), "shardId-3", records); err != nil {
				t.Fatalf("handle: %v", err)
			}
			want := map[string][]string{"s1": {"good"}, "s2": {"good"}}
			if got := f.events.writtenIDs(); !reflect.DeepEqual(got, want) {
				t.Errorf("items = %v, want only the good record's %v", got, want)
			}
			dls := f.dead.all()
			if tc.reason == "" {
				if len(dls) != 0 {
					t.Errorf("dead letters = %+v, want none", dls)
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("dead letters = %+v, want exactly one", dls)
			}
			dl := dls[0]
			want1 := store.DeadLetter{ID: "aggregator/shardId-3/7", Stage: "aggregator", ProducerID: tc.key, ShardID: "shardId-3", Seq: "7", Data: []byte(tc.data), DataBytes: len(tc.data)}
			got1 := dl
			got1.Reason, got1.At = "", time.Time{}
			if !reflect.DeepEqual(got1, want1) {
				t.Errorf("dead letter = %+v, want %+v", got1, want1)
			}
			if !strings.Contains(dl.Reason, tc.reason) {
				t.Errorf("dead letter reason %q does not say %q", dl.Reason, tc.reason)
			}
			if dl.At.IsZero() {
				t.Error("dead letter has no time")
			}
		})
	}
}

func TestAggregatorRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	transient := errors.New("ThrottlingException")
	for _, tc := range []struct {
		name     string
		setup    func(f aggregatorFakes)
		producer string
		items    map[string][]string
		dead     int
	}{
		{
			name: "PutEvent",
			setup: func(f aggregatorFakes) {
				f.events.fail = func(_ store.SubscriberEvent, n int) error { return failTimes(2, transient)(n) }
			},
			producer: "P",
			items:    map[string][]string{"s1": {"e"}, "s2": {"e"}},
		},
		{
			name:     "Subscribers",
			setup:    func(f aggregatorFakes) { f.subs.err = failTimes(2, transient) },
			producer: "P",
			items:    map[string][]string{"s1": {"e"}, "s2": {"e"}},
		},
		{
			name:     "Agent",
			setup:    func(f aggregatorFakes) { f.agents.err = failTimes(2, transient) },
			producer: "ghost",
			items:    map[string][]string{},
			dead:     1,
		},
		{
			name:     "PutDeadLetter",
			setup:    func(f aggregatorFakes) { f.dead.fail = failTimes(2, transient) },
			producer: "ghost",
			items:    map[string][]string{},
			dead:     1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := defaultAggregatorFakes()
			tc.setup(f)
			a := newTestAggregator(t, f, nil)
			if err := a.Handle(boundedCtx(t), "shardId-1", []types.Record{streamRecord(tc.producer, "1", time.Time{}, eventJSON(tc.producer, "e"))}); err != nil {
				t.Fatalf("handle: %v", err)
			}
			if got := f.events.writtenIDs(); !reflect.DeepEqual(got, tc.items) {
				t.Errorf("items = %v, want %v", got, tc.items)
			}
			if got := len(f.dead.all()); got != tc.dead {
				t.Errorf("%d dead letters, want %d", got, tc.dead)
			}
		})
	}
}

func TestAggregatorCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		setup    func(f aggregatorFakes, cancel context.CancelFunc)
		producer string
	}{
		{
			name: "PutEvent failing",
			setup: func(f aggregatorFakes, cancel context.CancelFunc) {
				f.events.fail = func(store.SubscriberEvent, int) error { cancel(); return errors.New("InternalServerError") }
			},
			producer: "P",
		},
		{
			name: "PutEvent failing, one subscriber",
			setup: func(f aggregatorFakes, cancel context.CancelFunc) {
				f.events.fail = func(store.SubscriberEvent, int) error { cancel(); return errors.New("InternalServerError") }
			},
			producer: "Q",
		},
		{
			name: "Subscribers failing",
			setup: func(f aggregatorFakes, cancel context.CancelFunc) {
				f.subs.err = func(int) error { cancel(); return errors.New("InternalServerError") }
			},
			producer: "P",
		},
		{
			name: "PutDeadLetter failing",
			setup: func(f aggregatorFakes, cancel context.CancelFunc) {
				f.dead.fail = func(int) error { cancel(); return errors.New("InternalServerError") }
			},
			producer: "ghost",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(boundedCtx(t))
			defer cancel()
			f := defaultAggregatorFakes()
			tc.setup(f, cancel)
			a := newTestAggregator(t, f, nil)
			err := a.Handle(ctx, "shardId-1", []types.Record{streamRecord(tc.producer, "1", time.Time{}, eventJSON(tc.producer, "e"))})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("handle = %v, want an error wrapping context.Canceled so the batch is not checkpointed", err)
			}
		})
	}
}

func TestAggregatorReplay(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	core, logs := observer.New(zapcore.WarnLevel)
	a := newTestAggregator(t, f, zap.New(core))
	// Kinesis gives every record its arrival time, which stands in for a
	// missing timestamp, the same on every replay.
	arrival := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	records := []types.Record{
		streamRecord("P", "1", arrival, `{"agentId":"P","eventType":"noId"}`),
		streamRecord("P", "2", arrival, "garbage"),
		streamRecord("P", "3", arrival, `[`+eventJSON("P", "")+`,`+eventJSON("P", "")+`]`),
	}
	for i := range 2 {
		if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
			t.Fatalf("handle #%d: %v", i+1, err)
		}
	}
	want := []string{"shardId-1:1", "shardId-1:3:0", "shardId-1:3:1"}
	got := f.events.writtenIDs()
	if !reflect.DeepEqual(got, map[string][]string{"s1": want, "s2": want}) {
		t.Errorf("items after a replay = %v, want each event once per subscriber with ids %v", got, want)
	}
	if dl := f.dead.all(); len(dl) != 1 {
		t.Errorf("dead letters after a replay = %+v, want one", dl)
	}
	if n := logs.FilterMessage("dead-lettered").Len(); n != 1 {
		t.Errorf(`logged "dead-lettered" %d times, want once: only a new dead letter is logged`, n)
	}
}

func TestAggregatorCachesSubscribers(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	a := newTestAggregator(t, f, nil)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a.subs.now, a.known.now = clock, clock
	batch := func(seq string) []types.Record {
		return []types.Record{
			streamRecord("P", seq+"0", time.Time{}, eventJSON("P", seq+"a")),
			streamRecord("ghost", seq+"1", time.Time{}, eventJSON("ghost", seq+"g")),
			streamRecord("P", seq+"2", time.Time{}, eventJSON("P", seq+"b")),
		}
	}
	handle := func(seq string) {
		t.Helper()
		if err := a.Handle(boundedCtx(t), "shardId-1", batch(seq)); err != nil {
			t.Fatalf("handle: %v", err)
		}
	}
	handle("1")
	mu.Lock()
	now = now.Add(SubscriptionTTL / 2)
	mu.Unlock()
	handle("2")
	if n, g, k := f.subs.callsFor("P"), f.subs.callsFor("ghost"), f.agents.callsFor("ghost"); n != 1 || g != 1 || k != 1 {
		t.Errorf("within SubscriptionTTL: Subscribers(P) %d, Subscribers(ghost) %d, Agent(ghost) %d calls; want 1 each", n, g, k)
	}
	mu.Lock()
	now = now.Add(SubscriptionTTL)
	mu.Unlock()
	handle("3")
	if n, k := f.subs.callsFor("P"), f.agents.callsFor("ghost"); n != 2 || k != 2 {
		t.Errorf("after SubscriptionTTL: Subscribers(P) %d, Agent(ghost) %d calls; want 2 each", n, k)
	}
	if got := f.events.writtenIDs()["s1"]; !reflect.DeepEqual(got, []string{"1a", "1b", "2a", "2b", "3a", "3b"}) {
		t.Errorf("s1 items = %v", got)
	}
}

// TestSubscribedAt: a subscription covers the events that reached the
// stream while it was live (with arrivalSlack on both ends), however late
// they are aggregated.
func TestSubscribedAt(t *testing.T) {
	t0 := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	live := store.Subscription{CreatedAt: t0}
	ended := store.Subscription{CreatedAt: t0, DeletedAt: t0.Add(time.Minute)}
	resumed := store.Subscription{CreatedAt: t0, Gaps: []store.Gap{{From: t0.Add(time.Minute), To: t0.Add(2 * time.Minute)}}}
	for _, tc := range []struct {
		name    string
		sub     store.Subscription
		arrival time.Time
		want    bool
	}{
		{"live, event after it", live, t0.Add(time.Second), true},
		{"live, event within the slack before it", live, t0.Add(-arrivalSlack / 2), true},
		{"live, event well before it", live, t0.Add(-2 * arrivalSlack), false},
		{"ended, event while it was live", ended, t0.Add(30 * time.Second), true},
		{"ended, event within the slack after the end", ended, t0.Add(time.Minute + arrivalSlack/2), true},
		{"ended, event after it", ended, t0.Add(time.Minute + 2*arrivalSlack), false},
		{"resumed, event before the gap", resumed, t0.Add(30 * time.Second), true},
		{"resumed, event in the gap", resumed, t0.Add(90 * time.Second), false},
		{"resumed, event within the slack of the gap's start", resumed, t0.Add(time.Minute + arrivalSlack/2), true},
		{"resumed, event within the slack before the gap's end", resumed, t0.Add(2*time.Minute - arrivalSlack/2), true},
		{"resumed, event after the gap", resumed, t0.Add(3 * time.Minute), true},
		{"unknown arrival, live", live, time.Time{}, true},
		{"unknown arrival, ended", ended, time.Time{}, false},
	} {
		if got := subscribedAt(tc.sub, tc.arrival); got != tc.want {
			t.Errorf("%s: subscribedAt = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAggregatorSetsAsideRejectedItem: an item SubscriberEvents refuses
// as invalid (store.ErrRejected) is dead-lettered at once, and the
// subscriber's later events and the other subscribers' are still written.
func TestAggregatorSetsAsideRejectedItem(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	f.events.fail = func(e store.SubscriberEvent, _ int) error {
		if e.SubscriberID == "s1" && e.EventID == "e1" {
			return fmt.Errorf("put: %w: ValidationException", store.ErrRejected)
		}
		return nil
	}
	a := newTestAggregator(t, f, nil)
	now := time.Now()
	recs := []types.Record{streamRecord("P", "1", now, eventJSON("P", "e1")), streamRecord("P", "2", now, eventJSON("P", "e2"))}
	if err := a.Handle(boundedCtx(t), "shardId-1", recs); err != nil {
		t.Fatalf("handle: %v", err)
	}
	got := f.events.writtenIDs()
	if !slices.Equal(got["s1"], []string{"e2"}) || !slices.Equal(got["s2"], []string{"e1", "e2"}) {
		t.Errorf("written = %v, want s1: [e2], s2: [e1 e2]", got)
	}
	letters := f.dead.all()
	if len(letters) != 1 || letters[0].ID != "aggregator/s1/P/e1" || letters[0].Seq != "1" || !strings.Contains(letters[0].Reason, "refused") {
		t.Fatalf("dead letters = %+v, want one for s1's e1 at seq 1", letters)
	}
	var ev event.Event
	if err := json.Unmarshal(letters[0].Data, &ev); err != nil || ev.EventID != "e1" || ev.AgentID != "P" {
		t.Errorf("dead letter data %s: want the event", letters[0].Data)
	}
}

// TestAggregatorFilters: an event a subscription's filter turns away costs
// that subscriber no write (not even an attempt) and is counted; others
// subscribers of the same record still get it.
func TestAggregatorFilters(t *testing.T) {
	t.Parallel()
	subs := subscribed("P", "all", "orders", "big")
	subs[1].Filter = []byte(`{"eventType": [{"prefix": "order."}]}`)
	subs[2].Filter = []byte(`{"data.total": [{"numeric": [">", 100]}]}`)
	f := newAggregatorFakes(map[string][]store.Subscription{"P": subs}, "P")
	rec := &filterCounter{}
	a := newTestAggregator(t, f, nil)
	a.rec = rec
	arrival := time.Date(2025, 7, 1, 12, 0, 1, 0, time.UTC)
	ev := func(id, typ, data string) string {
		b, _ := json.Marshal(event.Event{EventID: id, AgentID: "P", Timestamp: "2025-07-01T12:00:00.000Z", EventType: typ, Data: json.RawMessage(data)})
		return string(b)
	}
	records := []types.Record{
		streamRecord("P", "1", arrival, ev("e1", "order.created", `{"total": 150}`)),
		streamRecord("P", "2", arrival, `[`+ev("e2", "order.paid", `{"total": 5}`)+`,`+ev("e3", "refund", `{"total": 500}`)+`]`),
		streamRecord("P", "3", arrival, ev("e4", "ping", `{}`)),
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"all": {"e1", "e2", "e3", "e4"}, "orders": {"e1", "e2"}, "big": {"e1", "e3"}}
	if got := f.events.writtenIDs(); !reflect.DeepEqual(got, want) {
		t.Errorf("items written = %v, want %v", got, want)
	}
	f.events.mu.Lock()
	calls := map[string][]string{}
	maps.Copy(calls, f.events.calls)
	f.events.mu.Unlock()
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("PutEvent calls = %v, want only the events that pass: %v", calls, want)
	}
	if got := rec.n.Load(); got != 4 {
		t.Errorf("filtered deliveries counted = %d, want 4 (2 for orders, 2 for big)", got)
	}
}

// filterCounter is a Recorder that counts filtered deliveries only (a nil
// *metrics.Metrics records nothing).
type filterCounter struct {
	*metrics.Metrics
	n atomic.Int64
}

func (c *filterCounter) Filtered() { c.n.Add(1) }
