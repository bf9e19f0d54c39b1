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
	"github.com/fanout/fanout/kcl"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

// messageEventIDs returns the eventIds of msgs' bodies.
func messageEventIDs(t *testing.T, msgs []store.QueueMessage) []string {
	t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		var body event.Message
		if err := json.Unmarshal([]byte(m.Body), &body); err != nil {
			t.Fatalf("message body %.80s: %v", m.Body, err)
		}
		ids[i] = body.EventID
	}
	return ids
}

// subscriberEvent is the SubscriberEvents item of event id of producer for
// sub; a positive size makes its data a JSON string of that many bytes.
func subscriberEvent(producer, sub, id string, size int) store.SubscriberEvent {
	data := json.RawMessage(`{"id":"` + id + `"}`)
	if size > 0 {
		data = json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
	}
	return store.SubscriberEvent{
		Event:        event.Event{EventID: id, AgentID: producer, EventType: "exampleEvent", Timestamp: "2025-07-01T12:00:00.000Z", Data: data},
		SubscriberID: sub,
		ShardID:      "shardId-000000000001", Seq: "49590338271490256608559692538361571095921575989136588898",
	}
}

// changeRecord is the Kinesis record the streams adapter returns for a
// change of SubscriberEvents: Data is a kcl.Change whose image holds e
// under the store's attribute names (checked against
// store.DecodeEventImage, so a renamed attribute fails here, not later).
func changeRecord(t *testing.T, eventName string, e store.SubscriberEvent, seq string) types.Record {
	t.Helper()
	sortKey := e.Timestamp + "#" + e.EventID
	change := kcl.Change{EventName: eventName}
	if eventName != "REMOVE" {
		image, err := json.Marshal(map[string]any{
			"subscriberId":   e.SubscriberID,
			"timestamp":      sortKey,
			"eventId":        e.EventID,
			"producerId":     e.AgentID,
			"eventType":      e.EventType,
			"eventTimestamp": e.Timestamp,
			"data":           string(e.Data),
			"shardId":        e.ShardID,
			"seq":            e.Seq,
			"expiresAt":      json.Number("1752000000"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := store.DecodeEventImage(image); err != nil || !reflect.DeepEqual(got, []store.SubscriberEvent{e}) {
			t.Fatalf("test image decodes to %+v, %v; want [%+v]", got, err, e)
		}
		change.NewImage = image
	}
	data, err := json.Marshal(change)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := json.Marshal(map[string]string{"subscriberId": e.SubscriberID, "timestamp": sortKey})
	return types.Record{
		Data:                        data,
		PartitionKey:                aws.String(string(keys)),
		SequenceNumber:              aws.String(seq),
		ApproximateArrivalTimestamp: aws.Time(time.Date(2025, 7, 1, 12, 0, 1, 0, time.UTC)),
	}
}

// publisherFakes holds a Publisher's collaborators: wrappers around one
// in-memory store.
type publisherFakes struct {
	store  *memstore.Store
	agents *flakyAgents
	sender *recordingSender
	dead   *flakyDeadLetters
}

// newTestPublisher returns a Publisher over a store in which P, Q, s1 and
// s2 are known agents with queues. log nil: errors go to t's log.
func newTestPublisher(t *testing.T, log *zap.Logger) (*Publisher, publisherFakes) {
	t.Helper()
	st := newMemStore(nil, "P", "Q", "s1", "s2")
	f := publisherFakes{
		store:  st,
		agents: &flakyAgents{Store: st},
		sender: &recordingSender{Store: st, t: t},
		dead:   &flakyDeadLetters{Store: st},
	}
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel))
	}
	return NewPublisher(PublisherDeps{Agents: f.agents, Queues: f.sender, DeadLetters: f.dead}, log), f
}

// inserts returns the INSERT records of events, numbered from seq 1000.
func inserts(t *testing.T, events []store.SubscriberEvent) []types.Record {
	t.Helper()
	out := make([]types.Record, len(events))
	for i, e := range events {
		out[i] = changeRecord(t, "INSERT", e, fmt.Sprint(1000+i))
	}
	return out
}

// eventIDs returns ids "<prefix>00" to "<prefix>(n-1)".
func eventIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return ids
}

// checkQueue checks that the queue of sub holds exactly the messages of
// events, each as the spec describes it, and each producer's in their
// order: FIFO order is per message group, and a subscriber's producers
// are sent concurrently.
func checkQueue(t *testing.T, f *recordingSender, sub string, events []store.SubscriberEvent) {
	t.Helper()
	got := f.queue(queueURL(sub))
	if len(got) != len(events) {
		t.Errorf("queue of %s holds %v, want %d messages", sub, messageEventIDs(t, got), len(events))
		return
	}
	perGroup := map[string][]store.SubscriberEvent{}
	for _, e := range events {
		perGroup[e.AgentID] = append(perGroup[e.AgentID], e)
	}
	for i, m := range got {
		if len(perGroup[m.GroupID]) == 0 {
			t.Errorf("%s message %d: MessageGroupId %q, want one more of a producer of %v", sub, i, m.GroupID, slices.Collect(maps.Keys(perGroup)))
			return
		}
		e := perGroup[m.GroupID][0]
		perGroup[m.GroupID] = perGroup[m.GroupID][1:]
		if want := event.DeduplicationID(e.AgentID, e.EventID); m.DedupID != want {
			t.Errorf("%s message %d: MessageDeduplicationId %q, want event.DeduplicationID(%s, %s) = %q", sub, i, m.DedupID, e.AgentID, e.EventID, want)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(m.Body), &fields); err != nil {
			t.Fatalf("%s message %d: body %.80s: %v", sub, i, m.Body, err)
		}
		want := map[string]string{
			"eventId":      mustJSON(e.EventID),
			"agentId":      mustJSON(e.AgentID),
			"subscriberId": mustJSON(sub),
			"timestamp":    mustJSON(e.Timestamp),
			"eventType":    mustJSON(e.EventType),
			"data":         string(e.Data),
		}
		gotFields := map[string]string{}
		for k, v := range fields {
			gotFields[k] = string(v)
		}
		if !reflect.DeepEqual(gotFields, want) {
			t.Errorf("%s message %d body = %.200v, want %.200v", sub, i, gotFields, want)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestPublisherDelivers(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	// s1 follows P (23 events: three batches); s2 follows P (its first 3
	// events) and Q. Updates and expiries in the stream are not events.
	var s1, s2, all []store.SubscriberEvent
	for i, id := range eventIDs("p", 23) {
		e := subscriberEvent("P", "s1", id, 0)
		s1 = append(s1, e)
		all = append(all, e)
		if i < 3 {
			e2 := subscriberEvent("P", "s2", id, 0)
			q := subscriberEvent("Q", "s2", fmt.Sprintf("q%02d", i), 0)
			s2 = append(s2, e2, q)
			all = append(all, e2, q)
		}
	}
	records := inserts(t, all)
	records = slices.Insert(records, 2,
		changeRecord(t, "MODIFY", subscriberEvent("P", "s1", "modified", 0), "999"),
		changeRecord(t, "REMOVE", subscriberEvent("P", "s2", "expired", 0), "998"))

	for i := range 2 { // the second handle is a replay
		if err := p.Handle(boundedCtx(t), "shardId-1", records); err != nil {
			t.Fatalf("handle #%d: %v", i+1, err)
		}
		checkQueue(t, f.sender, "s1", s1)
		checkQueue(t, f.sender, "s2", s2)
	}
	wantCalls := [][]string{eventIDs("p", 10), eventIDs("p", 20)[10:], eventIDs("p", 23)[20:]}
	wantCalls = append(wantCalls, wantCalls...)
	if got := f.sender.sentEventIDs(t, queueURL("s1")); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("s1 SendMessages calls = %v, want %v", got, wantCalls)
	}
	// One event has one deduplication id, whoever receives it.
	dedupOf := func(sub string) string {
		i := slices.IndexFunc(f.sender.queue(queueURL(sub)), func(m store.QueueMessage) bool { return messageEventIDs(t, []store.QueueMessage{m})[0] == "p00" })
		return f.sender.queue(queueURL(sub))[i].DedupID
	}
	if a, b := dedupOf("s1"), dedupOf("s2"); a != b {
		t.Errorf("event p00 has deduplication id %s for s1 and %s for s2, want one id", a, b)
	}
	// s2's producers go in batches of their own, at the same time.
	if a, b := f.agents.callsFor("s1"), f.agents.callsFor("s2"); a != 6 || b != 4 {
		t.Errorf("Agent calls: s1 %d, s2 %d; want 6 and 4: one per batch (the store caches agents)", a, b)
	}
	if dl := f.dead.all(); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}

func TestPublisherRetriesFailedEntries(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	f.sender.respond = func(n int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
		var failed []store.BatchFailure
		for _, m := range msgs {
			id := messageEventIDs(t, []store.QueueMessage{m})[0]
			if (n == 0 && (id == "p01" || id == "p04")) || (n == 1 && id == "p04") {
				failed = append(failed, store.BatchFailure{ID: m.ID, Code: "InternalError", Message: "try again"})
			}
		}
		return failed, nil
	}
	var events []store.SubscriberEvent
	for _, id := range eventIDs("p", 12) {
		events = append(events, subscriberEvent("P", "s1", id, 0))
	}
	if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
		t.Fatalf("handle: %v", err)
	}
	want := [][]string{eventIDs("p", 10), {"p01", "p04"}, {"p04"}, {"p10", "p11"}}
	if got := f.sender.sentEventIDs(t, queueURL("s1")); !reflect.DeepEqual(got, want) {
		t.Errorf("SendMessages calls = %v, want %v: only failed entries resent, the next batch after them", got, want)
	}
	got := messageEventIDs(t, f.sender.queue(queueURL("s1")))
	slices.Sort(got)
	if !reflect.DeepEqual(got, eventIDs("p", 12)) {
		t.Errorf("queue holds %v, want every event once", got)
	}
	if dl := f.dead.all(); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}

// TestPublisherWarnsOrderHazard: when SQS fails an entry but takes a
// later one of the same group, the resent entry lands behind it (README,
// known limits): the publisher logs that, and only that.
func TestPublisherWarnsOrderHazard(t *testing.T) {
	t.Parallel()
	const hazard = "order hazard: SQS accepted a message after failing an earlier one of its group"
	for _, tc := range []struct {
		name string
		fail string // the event whose entry fails, once
		warn bool
	}{
		{"failed ahead of an accepted entry of its group", "p01", true},
		{"failed last of its group", "p02", false},
		{"failed ahead of another group's entries only", "q00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.WarnLevel)
			p, f := newTestPublisher(t, zap.New(core))
			var failedOnce atomic.Bool // P's and Q's batches go concurrently
			f.sender.respond = func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
				var failed []store.BatchFailure
				for i, id := range messageEventIDs(t, msgs) {
					if id == tc.fail && failedOnce.CompareAndSwap(false, true) {
						failed = append(failed, store.BatchFailure{ID: msgs[i].ID, Code: "InternalError", Message: "try again"})
					}
				}
				return failed, nil
			}
			events := []store.SubscriberEvent{
				subscriberEvent("P", "s1", "p00", 0), subscriberEvent("P", "s1", "p01", 0),
				subscriberEvent("Q", "s1", "q00", 0), subscriberEvent("P", "s1", "p02", 0),
			}
			if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
				t.Fatalf("handle: %v", err)
			}
			if got := messageEventIDs(t, f.sender.queue(queueURL("s1"))); len(got) != len(events) {
				t.Errorf("queue holds %v, want all %d events", got, len(events))
			}
			warnings := logs.FilterMessage(hazard).All()
			if !tc.warn {
				if len(warnings) != 0 {
					t.Errorf("logged %q %d times, want never", hazard, len(warnings))
				}
				return
			}
			if len(warnings) != 1 || warnings[0].ContextMap()["producer_id"] != "P" || warnings[0].ContextMap()["subscriber_id"] != "s1" {
				t.Errorf("order hazard log entries = %v, want one naming producer P and subscriber s1", warnings)
			}
		})
	}
}

func TestPublisherSetsAside(t *testing.T) {
	t.Parallel()
	s1 := []store.SubscriberEvent{}
	for _, id := range eventIDs("p", 12) {
		s1 = append(s1, subscriberEvent("P", "s1", id, 0))
	}
	for _, tc := range []struct {
		name    string
		sub     string // whose events are set aside
		respond func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error)
		// deleted says that sub's queue is deleted under it.
		deleted bool
		reason  string
		// dead lists the eventIds set aside.
		dead []string
		// agentCalls is how often the agent of sub is looked up.
		agentCalls int
	}{
		{
			name: "refused entry",
			sub:  "s1",
			respond: func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
				if n == 0 && url == queueURL("s1") {
					return []store.BatchFailure{{ID: msgs[2].ID, Code: "InvalidParameterValue", Message: "bad body", SenderFault: true}}, nil
				}
				return nil, nil
			},
			reason:     "SQS refused the message: InvalidParameterValue: bad body",
			dead:       []string{"p02"},
			agentCalls: 2, // once per batch
		},
		{
			name:       "missing queue",
			sub:        "s1",
			deleted:    true,
			reason:     "queue " + queueURL("s1") + " does not exist",
			dead:       eventIDs("p", 12),
			agentCalls: 2,
		},
		{
			name:       "unknown subscriber",
			sub:        "ghost",
			reason:     "subscriber agent ghost does not exist",
			dead:       eventIDs("p", 12),
			agentCalls: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f := newTestPublisher(t, nil)
			f.sender.respond = tc.respond
			if tc.deleted {
				f.store.DeleteQueue(queueURL(tc.sub))
			}
			// The affected subscriber's events interleaved with s2's.
			var affected, s2, all []store.SubscriberEvent
			for i, id := range eventIDs("p", 12) {
				e := subscriberEvent("P", tc.sub, id, 0)
				e2 := subscriberEvent("Q", "s2", fmt.Sprintf("q%02d", i), 0)
				affected = append(affected, e)
				s2 = append(s2, e2)
				all = append(all, e, e2)
			}
			records := inserts(t, all)
			if err := p.Handle(boundedCtx(t), "shardId-7", records); err != nil {
				t.Fatalf("handle: %v", err)
			}
			checkQueue(t, f.sender, "s2", s2)
			var delivered []store.SubscriberEvent
			for _, e := range affected {
				if !slices.Contains(tc.dead, e.EventID) {
					delivered = append(delivered, e)
				}
			}
			if tc.sub != "ghost" {
				checkQueue(t, f.sender, tc.sub, delivered)
			}
			var gotDead []string
			for _, dl := range f.dead.all() {
				var body event.Message
				if err := json.Unmarshal(dl.Data, &body); err != nil {
					t.Fatalf("dead letter %s data %q: %v", dl.ID, dl.Data, err)
				}
				gotDead = append(gotDead, body.EventID)
				i := slices.IndexFunc(affected, func(e store.SubscriberEvent) bool { return e.EventID == body.EventID })
				if i < 0 {
					t.Errorf("dead letter %s holds event %s of subscriber %s, not one of %s's", dl.ID, body.EventID, body.SubscriberID, tc.sub)
					continue
				}
				want := store.DeadLetter{
					ID: "publisher/" + tc.sub + "/" + body.AgentID + "/" + body.EventID, Stage: "publisher", Reason: tc.reason,
					ProducerID: body.AgentID, SubscriberID: tc.sub,
					ShardID: "shardId-7", Seq: aws.ToString(records[2*i].SequenceNumber),
					Data: []byte(newMessage(affected[i], 0).Body), DataBytes: len(newMessage(affected[i], 0).Body),
				}
				got := dl
				got.At = time.Time{}
				if strings.HasPrefix(got.Reason, tc.reason) { // then what an operator can do
					got.Reason = tc.reason
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("dead letter =\n%+v\nwant\n%+v", got, want)
				}
			}
			if !reflect.DeepEqual(gotDead, tc.dead) {
				t.Errorf("dead-lettered events %v, want %v", gotDead, tc.dead)
			}
			if n := f.agents.callsFor(tc.sub); n != tc.agentCalls {
				t.Errorf("Agent(%s) calls = %d, want %d", tc.sub, n, tc.agentCalls)
			}
		})
	}
}

func TestPublisherSetsAsideBadRecords(t *testing.T) {
	t.Parallel()
	good := subscriberEvent("P", "s1", "good", 0)
	bad := []struct {
		name   string
		data   string
		reason string
	}{
		{"not a stream change", `garbage`, "stream record: "},
		{"unconvertible image", `{"eventName":"INSERT","error":"convert stream image: boom"}`, "stream record: "},
		{"image without attributes", `{"eventName":"INSERT","newImage":{"subscriberId":"s1"}}`, "stream image: "},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f := newTestPublisher(t, nil)
			records := []types.Record{
				{Data: []byte(tc.data), SequenceNumber: aws.String("5"), PartitionKey: aws.String("{}")},
				changeRecord(t, "INSERT", good, "6"),
			}
			if err := p.Handle(boundedCtx(t), "shardId-2", records); err != nil {
				t.Fatalf("handle: %v", err)
			}
			checkQueue(t, f.sender, "s1", []store.SubscriberEvent{good})
			dls := f.dead.all()
			if len(dls) != 1 {
				t.Fatalf("dead letters = %+v, want one", dls)
			}
			dl := dls[0]
			if dl.ID != "publisher/shardId-2/5" || dl.Stage != "publisher" || dl.ShardID != "shardId-2" || dl.Seq != "5" || string(dl.Data) != tc.data || !strings.HasPrefix(dl.Reason, tc.reason) {
				t.Errorf("dead letter = %+v, want id publisher/shardId-2/5, the record's data and a reason starting %q", dl, tc.reason)
			}
		})
	}
}

func TestPublisherRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(f publisherFakes)
		calls int // SendMessages calls for s1
	}{
		{
			name: "SendMessages",
			setup: func(f publisherFakes) {
				f.sender.respond = func(n int, _ string, _ []store.QueueMessage) ([]store.BatchFailure, error) {
					if n < 2 {
						return nil, errors.New("connection reset")
					}
					return nil, nil
				}
			},
			calls: 4,
		},
		{
			name:  "Agent",
			setup: func(f publisherFakes) { f.agents.err = failTimes(2, errors.New("ThrottlingException")) },
			calls: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f := newTestPublisher(t, nil)
			tc.setup(f)
			var events []store.SubscriberEvent
			for _, id := range eventIDs("p", 12) {
				events = append(events, subscriberEvent("P", "s1", id, 0))
			}
			if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
				t.Fatalf("handle: %v", err)
			}
			checkQueue(t, f.sender, "s1", events)
			if got := f.sender.sentEventIDs(t, queueURL("s1")); len(got) != tc.calls {
				t.Errorf("SendMessages calls = %v, want %d", got, tc.calls)
			}
			if dl := f.dead.all(); len(dl) != 0 {
				t.Errorf("dead letters = %+v, want none", dl)
			}
		})
	}
}

func TestPublisherCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		subs  []string
		setup func(f publisherFakes, cancel context.CancelFunc)
	}{
		{
			name: "SendMessages failing",
			subs: []string{"s1"},
			setup: func(f publisherFakes, cancel context.CancelFunc) {
				f.sender.respond = func(int, string, []store.QueueMessage) ([]store.BatchFailure, error) {
					cancel()
					return nil, errors.New("connection reset")
				}
			},
		},
		{
			name: "SendMessages failing, two subscribers",
			subs: []string{"s1", "s2"},
			setup: func(f publisherFakes, cancel context.CancelFunc) {
				f.sender.respond = func(int, string, []store.QueueMessage) ([]store.BatchFailure, error) {
					cancel()
					return nil, errors.New("connection reset")
				}
			},
		},
		{
			name: "entries failing",
			subs: []string{"s1"},
			setup: func(f publisherFakes, cancel context.CancelFunc) {
				f.sender.respond = func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
					cancel()
					return []store.BatchFailure{{ID: msgs[0].ID, Code: "InternalError"}}, nil
				}
			},
		},
		{
			name: "Agent failing",
			subs: []string{"s1"},
			setup: func(f publisherFakes, cancel context.CancelFunc) {
				f.agents.err = func(int) error { cancel(); return errors.New("ThrottlingException") }
			},
		},
		{
			name: "PutDeadLetter failing",
			subs: []string{"s1"},
			setup: func(f publisherFakes, cancel context.CancelFunc) {
				f.sender.respond = func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
					return []store.BatchFailure{{ID: msgs[0].ID, Code: "InvalidParameterValue", SenderFault: true}}, nil
				}
				f.dead.fail = func(int) error { cancel(); return errors.New("ThrottlingException") }
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, f := newTestPublisher(t, nil)
			ctx, cancel := context.WithCancel(boundedCtx(t))
			defer cancel()
			tc.setup(f, cancel)
			var events []store.SubscriberEvent
			for _, sub := range tc.subs {
				events = append(events, subscriberEvent("P", sub, "p00", 0))
			}
			err := p.Handle(ctx, "shardId-1", inserts(t, events))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("handle = %v, want an error wrapping context.Canceled so the batch is not checkpointed", err)
			}
		})
	}
}

// TestPublisherSetsAsideRejectedBatch: a batch SQS refuses as invalid
// (store.ErrRejected) is dead-lettered at once instead of being retried
// for ever; the other subscriber's messages are delivered.
func TestPublisherSetsAsideRejectedBatch(t *testing.T) {
	t.Parallel()
	p, f := newTestPublisher(t, nil)
	f.sender.respond = func(_ int, url string, _ []store.QueueMessage) ([]store.BatchFailure, error) {
		if url == queueURL("s1") {
			return nil, fmt.Errorf("send: %w: InvalidParameterValue", store.ErrRejected)
		}
		return nil, nil
	}
	events := []store.SubscriberEvent{subscriberEvent("P", "s1", "p00", 0), subscriberEvent("P", "s2", "p00", 0), subscriberEvent("P", "s1", "p01", 0)}
	if err := p.Handle(boundedCtx(t), "shardId-1", inserts(t, events)); err != nil {
		t.Fatalf("handle: %v", err)
	}
	checkQueue(t, f.sender, "s2", events[1:2])
	letters := f.dead.all()
	if len(letters) != 2 {
		t.Fatalf("dead letters = %+v, want s1's two events", letters)
	}
	for _, l := range letters {
		if !strings.HasPrefix(l.ID, "publisher/s1/P/") || !strings.Contains(l.Reason, "SQS refused the batch") {
			t.Errorf("dead letter %s: %q, want s1's, saying SQS refused it", l.ID, l.Reason)
		}
	}
	if n := len(f.sender.sentEventIDs(t, queueURL("s1"))); n != 1 {
		t.Errorf("%d calls to s1's queue, want 1: a refused batch is not retried", n)
	}
}
