package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// packedArrival is when the packed tests' records reached Kinesis.
var packedArrival = time.Date(2025, 7, 1, 12, 0, 1, 0, time.UTC)

// packedRecords returns records holding events of producer: record i
// holds sizes[i] events with ids "<producer>-<i>-<j>" and timestamps one
// millisecond apart, sequence numbers from 1000.
func packedRecords(producer string, sizes ...int) []types.Record {
	out := make([]types.Record, len(sizes))
	ms := 0
	for i, n := range sizes {
		var evs []string
		for j := range n {
			ts := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(ms) * time.Millisecond).Format(event.TimeLayout)
			ms++
			b, _ := json.Marshal(event.Event{EventID: fmt.Sprintf("%s-%d-%d", producer, i, j), AgentID: producer, Timestamp: ts, EventType: "t",
				Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"par":%q}`, ms, []string{"even", "odd"}[ms%2]))})
			evs = append(evs, string(b))
		}
		out[i] = streamRecord(producer, fmt.Sprint(1000+i), packedArrival, "["+strings.Join(evs, ",")+"]")
	}
	return out
}

// recordIDs returns the event ids of records, in order.
func recordIDs(t *testing.T, records []types.Record) []string {
	t.Helper()
	var ids []string
	for _, r := range records {
		events, err := event.ParseRecord(r.Data, aws.ToString(r.PartitionKey), "shardId-1", aws.ToString(r.SequenceNumber), packedArrival)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			ids = append(ids, e.EventID)
		}
	}
	return ids
}

// drive feeds records to a, as a kcl processor that has just taken the
// shard over does: Resume, then batches of the given sizes (the last
// repeated).
func drive(t *testing.T, a *Aggregator, records []types.Record, sizes ...int) {
	t.Helper()
	a.Resume("shardId-1")
	for i, next := 0, 0; next < len(records); i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(records)-next)
		if err := a.Handle(boundedCtx(t), "shardId-1", records[next:next+n]); err != nil {
			t.Fatalf("handle: %v", err)
		}
		next += n
	}
}

// itemIDs returns the event ids of sub's items, one slice per item, in the
// order the table's stream carries them.
func itemIDs(f aggregatorFakes, sub string) [][]string {
	var out [][]string
	for _, it := range f.store.Items(sub) {
		var ids []string
		for _, e := range it {
			ids = append(ids, e.EventID)
		}
		out = append(out, ids)
	}
	return out
}

// TestAggregatorPacksRuns: a batch becomes one item per subscriber and
// producer, holding the subscriber's events in the producer's order, with
// their positions; writes of one subscriber and producer are sequential
// (recordingEvents checks).
func TestAggregatorPacksRuns(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	a := newTestAggregator(t, f, nil)
	p := packedRecords("P", 3, 1, 4)
	q := packedRecords("Q", 2)
	q[0].SequenceNumber = aws.String("1001") // between P's records
	records := []types.Record{p[0], q[0], p[1], p[2]}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	pIDs := recordIDs(t, p)
	if got := itemIDs(f, "s1"); !slices.EqualFunc(got, [][]string{pIDs}, slices.Equal) {
		t.Errorf("s1 items %v, want one item of %v", got, pIDs)
	}
	got := itemIDs(f, "s2")
	if len(got) != 2 || !slices.ContainsFunc(got, func(ids []string) bool { return slices.Equal(ids, pIDs) }) ||
		!slices.ContainsFunc(got, func(ids []string) bool { return slices.Equal(ids, []string{"Q-0-0", "Q-0-1"}) }) {
		t.Errorf("s2 items %v, want one of P's events %v and one of Q's", got, pIDs)
	}
	it := f.store.Items("s1")[0]
	if e := it[5]; e.Seq != "1002" || e.Index != 1 || e.ShardID != "shardId-1" || !e.Arrived.Equal(packedArrival) {
		t.Errorf("sixth event of the item: %+v; want record 1002 index 1 of shardId-1, arrived %v", e, packedArrival)
	}
}

// TestAggregatorSplitsRunsAtTheItemLimit: a run too large for one item
// goes in several, cut where store.NextRun says, every event once.
func TestAggregatorSplitsRunsAtTheItemLimit(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	a := newTestAggregator(t, f, nil)
	big := strings.Repeat("x", 150<<10)
	var evs []string
	for i := range 5 {
		b, _ := json.Marshal(event.Event{EventID: fmt.Sprint("big", i), AgentID: "P", Timestamp: "2025-07-01T12:00:00.000Z", EventType: "t", Data: json.RawMessage(`"` + big + `"`)})
		evs = append(evs, string(b))
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", []types.Record{streamRecord("P", "1000", packedArrival, "["+strings.Join(evs, ",")+"]")}); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"big0", "big1"}, {"big2", "big3"}, {"big4"}}
	if got := itemIDs(f, "s1"); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("items %v, want %v (two 150 KB events per 400 KB item)", got, want)
	}
}

// TestAggregatorRebatching: a writer that wrote part of what follows the
// checkpoint and stopped (crash, lease lost) is followed by another that
// reads the same records in other batches, with or without the same
// filters, packing or writing one item per event. Every event ends in
// exactly one item, in the producer's order, and nothing past what the
// first writer covered is skipped.
func TestAggregatorRebatching(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		sizes := make([]int, 5+rng.IntN(20))
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(4)
		}
		records := packedRecords("P", sizes...)
		first := 1 + rng.IntN(len(records))       // the first writer's one batch
		crashAfter := rng.IntN(3)                 // 0: s1 and s2 written; 1: s1 only; 2: none
		secondBatch := 1 + rng.IntN(len(records)) // the second writer's batches
		// s2's filter changes between the writers: 1, the first takes
		// even events only (so its items start an event later than the
		// second's would); 2, the second does.
		refilter := round % 3
		name := fmt.Sprintf("round %d: %v, first batch %d, crash %d, then batches of %d, refilter %d", round, sizes, first, crashAfter, secondBatch, refilter)
		even := []byte(`{"data":{"par":["even"]}}`)

		f := defaultAggregatorFakes()
		if refilter == 1 {
			f.store.AddSubscription(store.Subscription{ProducerID: "P", SubscriberID: "s2", CreatedAt: longAgo, Filter: even})
		}
		ctx, cancel := context.WithCancel(boundedCtx(t))
		f.events.fail = func(e store.SubscriberEvent, _ int) error {
			if crashAfter == 2 || (crashAfter == 1 && e.SubscriberID == "s2") {
				cancel()
				return ctx.Err()
			}
			return nil
		}
		a := newTestAggregator(t, f, nil)
		a.Resume("shardId-1")
		err := a.Handle(ctx, "shardId-1", records[:first])
		if crashAfter == 0 && err != nil {
			t.Fatalf("%s: first writer: %v", name, err)
		}
		f.events.fail = nil
		before := map[string][]store.SubscriberEvent{"s1": f.store.Events("s1"), "s2": f.store.Events("s2")}
		var filter []byte
		if refilter == 2 {
			filter = even
		}
		f.store.AddSubscription(store.Subscription{ProducerID: "P", SubscriberID: "s2", CreatedAt: longAgo, Filter: filter})
		b := newTestAggregator(t, f, nil)
		if round%4 == 3 { // the second writer is a task with FANOUT_PACK_EVENTS=false
			b = NewAggregator(AggregatorDeps{Subscribers: f.subs, Agents: f.agents, Events: f.events, EventIDs: f.ids, DeadLetters: f.dead, OneEventItems: true}, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)))
		}
		drive(t, b, records, secondBatch)

		all := recordIDs(t, records)
		for _, sub := range []string{"s1", "s2"} {
			got := f.store.Events(sub)
			ids := make([]string, len(got))
			for i, e := range got {
				ids[i] = e.EventID
			}
			if !slices.IsSortedFunc(got, func(x, y store.SubscriberEvent) int { return store.ComparePositions(x.Position(), y.Position()) }) {
				t.Errorf("%s: %s's events out of order: %v", name, sub, ids)
			}
			if len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Errorf("%s: %s got an event twice: %v", name, sub, ids)
			}
			// What the first writer wrote stays; after its last event
			// comes every event the second writer's filter takes.
			var want []string
			for _, e := range before[sub] {
				want = append(want, e.EventID)
			}
			for i, id := range all {
				pos := store.EventPosition{ShardID: "shardId-1", Seq: fmt.Sprint(1000 + recordOf(sizes, i)), Index: indexOf(sizes, i)}
				if n := len(before[sub]); n > 0 && store.ComparePositions(pos, before[sub][n-1].Position()) <= 0 {
					continue
				}
				if sub == "s2" && refilter == 2 && (i+1)%2 == 1 {
					continue // odd: the second writer's s2 does not take it
				}
				want = append(want, id)
			}
			if !slices.Equal(ids, want) {
				t.Errorf("%s: %s got %v, want %v", name, sub, ids, want)
			}
		}
	}
}

// recordOf and indexOf give the record and the index in it of event i of
// packedRecords(sizes...).
func recordOf(sizes []int, i int) int {
	for r, n := range sizes {
		if i < n {
			return r
		}
		i -= n
	}
	return -1
}

func indexOf(sizes []int, i int) int {
	for _, n := range sizes {
		if i < n {
			return i
		}
		i -= n
	}
	return -1
}

// TestAggregatorMeetsAConcurrentWriter: two tasks run one shard at once
// for a while (a lease moved while its old owner still wrote). The one
// that did not take the shard over meets the other's items on a conflict,
// counts the shard as taken over from then on, and writes nothing twice,
// with or without a filter that makes its runs start elsewhere.
func TestAggregatorMeetsAConcurrentWriter(t *testing.T) {
	t.Parallel()
	for _, filtered := range []bool{false, true} {
		f := defaultAggregatorFakes()
		records := packedRecords("P", 2, 3, 1, 2, 2, 1)
		owner := newTestAggregator(t, f, nil)
		if err := owner.Handle(boundedCtx(t), "shardId-1", records[:4]); err != nil {
			t.Fatal(err)
		}
		zombie := newTestAggregator(t, f, nil) // never told it resumed
		if filtered {
			// Only s2 has a filter, which its first event passes: the
			// conflict comes from s2's first item; s1's second batch
			// is read first all the same.
			f.store.AddSubscription(store.Subscription{ProducerID: "P", SubscriberID: "s2", CreatedAt: longAgo, Filter: []byte(`{"data":{"par":["odd"]}}`)})
		}
		for _, b := range [][]types.Record{records[:2], records[2:5], records[5:]} {
			if err := zombie.Handle(boundedCtx(t), "shardId-1", b); err != nil {
				t.Fatal(err)
			}
		}
		all := recordIDs(t, records)
		for _, sub := range []string{"s1", "s2"} {
			var ids []string
			for _, e := range f.store.Events(sub) {
				ids = append(ids, e.EventID)
			}
			want := all
			if filtered && sub == "s2" { // the owner's four records whole, then odd ones
				want = slices.Concat(all[:8], []string{"P-4-0", "P-5-0"})
			}
			if !slices.Equal(ids, want) {
				t.Errorf("filtered %v: %s got %v, want %v", filtered, sub, ids, want)
			}
		}
	}
}

// TestAggregatorStopsReadingOnceCaughtUp: a shard taken over reads the
// spans of earlier writers until a batch holds records that reached the
// stream after the takeover; later batches write without reading.
func TestAggregatorStopsReadingOnceCaughtUp(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	a := newTestAggregator(t, f, nil)
	a.Resume("shardId-1")
	records := packedRecords("P", 1, 1, 1)
	records[1].ApproximateArrivalTimestamp = aws.Time(time.Now().Add(2 * arrivalSlack))
	records[2].ApproximateArrivalTimestamp = aws.Time(time.Now().Add(3 * arrivalSlack))
	var reads []int
	for _, r := range records {
		if err := a.Handle(boundedCtx(t), "shardId-1", []types.Record{r}); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, f.events.spanReads())
	}
	// Two subscribers of P: two reads per batch while taken over.
	if want := []int{2, 4, 4}; !slices.Equal(reads, want) {
		t.Errorf("RunSpans calls after each batch %v, want %v", reads, want)
	}
}

// TestAggregatorAfterOneEventItems: a rolling update. A task of a version
// before packing (one item per event) wrote part of a batch and stopped;
// a packing task takes the shard over with other batch sizes. Nothing is
// written twice or skipped, and the stream carries both kinds of item.
func TestAggregatorAfterOneEventItems(t *testing.T) {
	t.Parallel()
	for _, secondBatch := range []int{1, 2, 5} {
		f := defaultAggregatorFakes()
		records := packedRecords("P", 2, 1, 3, 1, 2)
		old := NewAggregator(AggregatorDeps{Subscribers: f.subs, Agents: f.agents, Events: f.events, EventIDs: f.ids, DeadLetters: f.dead, OneEventItems: true}, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)))
		f.events.t = t
		if err := old.Handle(boundedCtx(t), "shardId-1", records[:3]); err != nil {
			t.Fatal(err)
		}
		drive(t, newTestAggregator(t, f, nil), records, secondBatch)
		want := recordIDs(t, records)
		var ids []string
		for _, e := range f.store.Events("s1") {
			ids = append(ids, e.EventID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("batches of %d: s1 got %v, want %v", secondBatch, ids, want)
		}
		items := itemIDs(f, "s1")
		if len(items) < 7 || len(items[0]) != 1 || len(items[len(items)-1]) < 2 {
			t.Errorf("batches of %d: items %v, want the six one-event items first, then packed ones", secondBatch, items)
		}
	}
}

// TestAggregatorPoisonEventInARun: an event SubscriberEvents refuses is
// set aside alone; the events around it are written, in order.
func TestAggregatorPoisonEventInARun(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	f.events.fail = func(e store.SubscriberEvent, _ int) error {
		if e.EventID == "P-1-1" && e.SubscriberID == "s1" {
			return fmt.Errorf("%w: ValidationException: refused", store.ErrRejected)
		}
		return nil
	}
	a := newTestAggregator(t, f, nil)
	records := packedRecords("P", 2, 3, 2)
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	all := recordIDs(t, records)
	want := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == "P-1-1" })
	var ids []string
	for _, e := range f.store.Events("s1") {
		ids = append(ids, e.EventID)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("s1 got %v, want %v", ids, want)
	}
	if got := itemIDs(f, "s2"); len(got) != 1 || !slices.Equal(got[0], all) {
		t.Errorf("s2 items %v, want one item of every event", got)
	}
	letters, _ := f.store.DeadLetters(boundedCtx(t))
	if len(letters) != 1 || letters[0].SubscriberID != "s1" || !strings.Contains(string(letters[0].Data), `"P-1-1"`) {
		t.Errorf("dead letters %+v, want one: P-1-1 for s1", letters)
	}
}

// singlesOnly refuses every packed item of more than one event, as
// DynamoDB refuses an item too large.
type singlesOnly struct{ *recordingEvents }

func (s singlesOnly) PutEventRun(ctx context.Context, events []store.SubscriberEvent) (*store.RunSpan, error) {
	if len(events) > 1 {
		return nil, fmt.Errorf("%w: ValidationException: item too large", store.ErrRejected)
	}
	return s.recordingEvents.PutEventRun(ctx, events)
}

// TestAggregatorWritingAloneMeetsAnItem: a run refused whole is written
// one event per item; when the first of those meets another writer's
// item, the events it covers are not written again.
func TestAggregatorWritingAloneMeetsAnItem(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	f.events.t = t
	records := packedRecords("P", 5)
	other := newTestAggregator(t, f, nil)
	if err := other.Handle(boundedCtx(t), "shardId-1", packedRecords("P", 3)); err != nil { // the same first three events
		t.Fatal(err)
	}
	a := NewAggregator(AggregatorDeps{Subscribers: f.subs, Agents: f.agents, Events: singlesOnly{f.events}, EventIDs: f.ids, DeadLetters: f.dead}, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)))
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	want := recordIDs(t, records)
	for _, sub := range []string{"s1", "s2"} {
		var ids []string
		for _, e := range f.store.Events(sub) {
			ids = append(ids, e.EventID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s got %v, want %v", sub, ids, want)
		}
	}
}
