package pipeline

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/kcl"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// The publisher's tests of packed SubscriberEvents items: one stream
// record carrying a run of one subscriber's events of one producer.

// runEvents is events ids[i] of producer for sub, in the producer's
// order (Kinesis sequence numbers from 1000), a millisecond apart, each
// arrived in Kinesis a second before its timestamp.
func runEvents(producer, sub string, ids []string) []store.SubscriberEvent {
	out := make([]store.SubscriberEvent, len(ids))
	for i, id := range ids {
		e := subscriberEvent(producer, sub, id, 0)
		at := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
		e.Timestamp, e.Seq, e.Arrived = at.Format(event.TimeLayout), fmt.Sprint(1000+i), at.Add(-time.Second)
		out[i] = e
	}
	return out
}

// runRecord is the stream record, at seq, of the packed item holding
// events, as kcl hands it on (checked against store.DecodeEventImage).
func runRecord(t *testing.T, events []store.SubscriberEvent, seq string) types.Record {
	t.Helper()
	image, err := store.EventRunImage(events, time.Date(2025, 7, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.DecodeEventImage(image); err != nil || !reflect.DeepEqual(got, events) {
		t.Fatalf("test image of %d events decodes to %d events, %v", len(events), len(got), err)
	}
	data, err := json.Marshal(kcl.Change{EventName: "INSERT", NewImage: image})
	if err != nil {
		t.Fatal(err)
	}
	return types.Record{Data: data, PartitionKey: aws.String("{}"), SequenceNumber: aws.String(seq)}
}

// runRecords is the records of the packed items of events cut at cuts
// (the first event of each item after the first), seqs from 2000.
func runRecords(t *testing.T, events []store.SubscriberEvent, cuts ...int) []types.Record {
	t.Helper()
	var out []types.Record
	for i, from := range append([]int{0}, cuts...) {
		to := len(events)
		if i < len(cuts) {
			to = cuts[i]
		}
		out = append(out, runRecord(t, events[from:to], fmt.Sprint(2000+i)))
	}
	return out
}

// counted is a Recorder keeping the arrival times of deliveries and the
// dead letters' reason classes.
type counted struct {
	mu        sync.Mutex
	delivered []time.Time
	dead      []string
}

func (c *counted) Delivered(arrived, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delivered = append(c.delivered, arrived)
}

func (c *counted) DeadLettered(_, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = append(c.dead, reason)
}

func (c *counted) DuplicateDropped(string)  {}
func (c *counted) CacheLookup(string, bool) {}
func (c *counted) Filtered()                {}

// newCountedPublisher is newTestPublisher's Publisher counting into the
// returned Recorder.
func newCountedPublisher(t *testing.T) (*Publisher, publisherFakes, *counted) {
	t.Helper()
	_, f := newTestPublisher(t, nil)
	c := &counted{}
	p := NewPublisher(PublisherDeps{Agents: f.agents, Queues: f.sender, DeadLetters: f.dead, Metrics: c}, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)))
	return p, f, c
}

// deadEventIDs returns the event ids of the dead letters, in the order
// created, checking that each is the message of one event of sub, read at
// seq, with a reason starting with reason.
func deadEventIDs(t *testing.T, f publisherFakes, sub, seq, reason string) []string {
	t.Helper()
	var ids []string
	for _, dl := range f.dead.all() {
		var body event.Message
		if err := json.Unmarshal(dl.Data, &body); err != nil {
			t.Fatalf("dead letter %s data %.80q: %v", dl.ID, dl.Data, err)
		}
		if want := "publisher/" + sub + "/" + body.AgentID + "/" + body.EventID; dl.ID != want || dl.SubscriberID != sub || dl.Seq != seq || !strings.HasPrefix(dl.Reason, reason) {
			t.Errorf("dead letter %s (subscriber %s, seq %s): %q; want id %s, subscriber %s, seq %s, a reason starting %q", dl.ID, dl.SubscriberID, dl.Seq, dl.Reason, want, sub, seq, reason)
		}
		ids = append(ids, body.EventID)
	}
	return ids
}

func TestPublisherDeliversPackedRuns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cuts []int
	}{
		{"one item of 25", nil},
		{"items of 12 and 13", []int{12}},
		{"items of 10, 1 and 14", []int{10, 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f, c := newCountedPublisher(t)
			events := runEvents("P", "s1", eventIDs("p", 25))
			if err := p.Handle(boundedCtx(t), "shardId-1", runRecords(t, events, tc.cuts...)); err != nil {
				t.Fatalf("handle: %v", err)
			}
			checkQueue(t, f.sender, "s1", events)
			want := [][]string{eventIDs("p", 10), eventIDs("p", 20)[10:], eventIDs("p", 25)[20:]}
			if got := f.sender.sentEventIDs(t, queueURL("s1")); !reflect.DeepEqual(got, want) {
				t.Errorf("SendMessages calls = %v, want %v: batches of 10 across items", got, want)
			}
			var wantArrived []time.Time
			for _, e := range events {
				wantArrived = append(wantArrived, e.Arrived)
			}
			if !slices.EqualFunc(c.delivered, wantArrived, time.Time.Equal) {
				t.Errorf("deliveries counted with arrival times %v, want one per event: %v", c.delivered, wantArrived)
			}
			if dl := f.dead.all(); len(dl) != 0 {
				t.Errorf("dead letters = %+v, want none", dl)
			}
		})
	}
}

// TestPublisherMixesItemFormats: during a rolling update the stream
// carries one-event items and packed items of one subscriber and
// producer; each event is delivered once, in order, and handling the
// batch again (a shard retried after a crash) adds nothing.
func TestPublisherMixesItemFormats(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	events := runEvents("P", "s1", eventIDs("p", 22))
	q := runEvents("Q", "s1", eventIDs("q", 3))
	for _, i := range []int{0, 1, 14} { // changeRecord's images have no arrival time
		events[i].Arrived = time.Time{}
	}
	var records []types.Record
	records = append(records, inserts(t, events[:2])...)                     // p00, p01 as one-event items
	records = append(records, runRecord(t, events[2:14], "2000"))            // p02..p13 packed
	records = append(records, runRecord(t, q, "2001"))                       // another producer's run
	records = append(records, changeRecord(t, "INSERT", events[14], "2002")) // p14
	records = append(records, runRecord(t, events[15:], "2003"))             // p15..p21 packed
	for i := range 2 {
		if err := p.Handle(boundedCtx(t), "shardId-1", records); err != nil {
			t.Fatalf("handle #%d: %v", i+1, err)
		}
		checkQueue(t, f.sender, "s1", append(slices.Clone(events), q...))
	}
	var pCalls [][]string
	for _, ids := range f.sender.sentEventIDs(t, queueURL("s1")) {
		if strings.HasPrefix(ids[0], "p") {
			pCalls = append(pCalls, ids)
		}
	}
	want := [][]string{eventIDs("p", 10), eventIDs("p", 20)[10:], eventIDs("p", 22)[20:]}
	if want = append(want, want...); !reflect.DeepEqual(pCalls, want) {
		t.Errorf("SendMessages calls for P = %v, want %v: P's events in batches of their own, items of both formats filling them", pCalls, want)
	}
	if dl := f.dead.all(); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}

// TestPublisherSetsAsidePoisonInRun: SQS refusing one entry of a packed
// run sets that event aside alone; the run's other events, in the same
// batch and after it, are delivered in order.
func TestPublisherSetsAsidePoisonInRun(t *testing.T) {
	t.Parallel()
	p, f, c := newCountedPublisher(t)
	f.sender.respond = func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
		var failed []store.BatchFailure
		for i, id := range messageEventIDs(t, msgs) {
			if id == "p13" {
				failed = append(failed, store.BatchFailure{ID: msgs[i].ID, Code: "InvalidMessageContents", Message: "bad character", SenderFault: true})
			}
		}
		return failed, nil
	}
	events := runEvents("P", "s1", eventIDs("p", 25))
	if err := p.Handle(boundedCtx(t), "shardId-1", []types.Record{runRecord(t, events, "2000")}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	checkQueue(t, f.sender, "s1", slices.Delete(slices.Clone(events), 13, 14))
	if got := deadEventIDs(t, f, "s1", "2000", "SQS refused the message: InvalidMessageContents: bad character"); !slices.Equal(got, []string{"p13"}) {
		t.Errorf("dead-lettered events %v, want [p13] alone", got)
	}
	if len(c.delivered) != 24 || !slices.Equal(c.dead, []string{metrics.ReasonRejected}) {
		t.Errorf("counted %d deliveries and dead letters %v, want 24 and [%s]", len(c.delivered), c.dead, metrics.ReasonRejected)
	}
}

// TestPublisherSetsAsideRunOfMissingQueue: when a subscriber's queue is
// deleted, every event of its packed runs becomes a dead letter of its
// own, to be redriven once the queue is back; another subscriber's run
// is delivered.
func TestPublisherSetsAsideRunOfMissingQueue(t *testing.T) {
	t.Parallel()
	p, f, c := newCountedPublisher(t)
	f.store.DeleteQueue(queueURL("s1"))
	lost := runEvents("P", "s1", eventIDs("p", 12))
	kept := runEvents("P", "s2", eventIDs("p", 12))
	records := []types.Record{runRecord(t, lost, "2000"), runRecord(t, kept, "2001")}
	if err := p.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatalf("handle: %v", err)
	}
	checkQueue(t, f.sender, "s2", kept)
	if got := deadEventIDs(t, f, "s1", "2000", "queue "+queueURL("s1")+" does not exist"); !slices.Equal(got, eventIDs("p", 12)) {
		t.Errorf("dead-lettered events %v, want each of the run's: %v", got, eventIDs("p", 12))
	}
	if len(c.dead) != 12 || slices.ContainsFunc(c.dead, func(r string) bool { return r != metrics.ReasonQueueMissing }) {
		t.Errorf("dead letters counted %v, want 12 of %s", c.dead, metrics.ReasonQueueMissing)
	}
}

// TestPublisherBatchBytesEdge: a batch whose bodies total exactly
// maxBatchBytes goes as one call; one byte more, and its last message
// goes in the next.
func TestPublisherBatchBytesEdge(t *testing.T) {
	t.Parallel()
	// A body is its data plus a fixed envelope (ids of equal length).
	envelope := len(newMessage(subscriberEvent("P", "s1", "p00", 1), 0).Body) - 1
	for _, tc := range []struct {
		name  string
		extra int // bytes over maxBatchBytes
		want  [][]string
	}{
		{"at the limit", 0, [][]string{eventIDs("p", 5)}},
		{"a byte over", 1, [][]string{eventIDs("p", 4), {"p04"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f := newTestPublisher(t, nil)
			bodies := []int{200_000, 200_000, 200_000, 200_000, maxBatchBytes - 800_000 + tc.extra}
			var events []store.SubscriberEvent
			total := 0
			for i, b := range bodies {
				e := subscriberEvent("P", "s1", fmt.Sprintf("p%02d", i), b-envelope)
				total += len(newMessage(e, i).Body)
				events = append(events, e)
			}
			if total != maxBatchBytes+tc.extra {
				t.Fatalf("test bodies total %d bytes, want %d", total, maxBatchBytes+tc.extra)
			}
			if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
				t.Fatalf("handle: %v", err)
			}
			if got := f.sender.sentEventIDs(t, queueURL("s1")); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SendMessages calls = %v, want %v", got, tc.want)
			}
			checkQueue(t, f.sender, "s1", events)
		})
	}
}

// TestPublisherOverlapsProducers: one subscriber's producers are sent
// concurrently (P's first batch is answered only once Q's has come),
// while each producer's batches follow one another.
func TestPublisherOverlapsProducers(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	ctx := boundedCtx(t)
	qArrived := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	inFlight := map[string]bool{}
	f.sender.respond = func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
		group := msgs[0].GroupID
		mu.Lock()
		if inFlight[group] {
			t.Errorf("a batch of producer %s sent while another of its batches is in flight", group)
		}
		inFlight[group] = true
		mu.Unlock()
		defer func() { mu.Lock(); inFlight[group] = false; mu.Unlock() }()
		if group == "Q" {
			once.Do(func() { close(qArrived) })
		} else {
			select {
			case <-qArrived:
			case <-ctx.Done():
				t.Errorf("P's batch waited for Q's until the test's deadline: producers sent one after the other")
			}
		}
		return nil, nil
	}
	pe, qe := runEvents("P", "s1", eventIDs("p", 15)), runEvents("Q", "s1", eventIDs("q", 15))
	if err := p.Handle(ctx, "shardId-1", []types.Record{runRecord(t, pe, "2000"), runRecord(t, qe, "2001")}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	checkQueue(t, f.sender, "s1", append(pe, qe...))
}

// TestPublisherHalvesBatchesTooLong: a queue that takes less than
// maxBatchBytes in one batch (an endpoint with SQS's older 256 KiB) gets
// the batch in halves, in order, down to what it takes; nothing is set
// aside.
func TestPublisherHalvesBatchesTooLong(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	const limit = 256 << 10
	f.sender.respond = func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
		size := 0
		for _, m := range msgs {
			size += len(m.Body)
		}
		if size > limit {
			return nil, fmt.Errorf("%w: %w: BatchRequestTooLong", store.ErrBatchTooLong, store.ErrRejected)
		}
		return nil, nil
	}
	var events []store.SubscriberEvent
	for i := range 8 {
		events = append(events, subscriberEvent("P", "s1", fmt.Sprintf("p%02d", i), 60_000))
	}
	if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
		t.Fatalf("handle: %v", err)
	}
	checkQueue(t, f.sender, "s1", events)
	if dl := f.dead.all(); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
}
