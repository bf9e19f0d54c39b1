package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/backoff"
)

// sentRecord is one PutRecords entry a fakeKinesis saw, with its outcome.
type sentRecord struct {
	call     int
	key      string
	data     []byte
	accepted bool
	shard    string
	seq      string
}

// fakeKinesis is a recordsPutter that enforces Kinesis' per-call and
// per-record limits, refuses entries or whole calls on demand, and records
// every entry in the order it saw them. A done ctx fails the call, as the
// SDK does.
type fakeKinesis struct {
	t *testing.T
	// refuse, when set, says whether entry (key, data) of call n (0-based)
	// is refused with a throttling error code.
	refuse func(call int, key string, data []byte) bool
	// callErr, when set, returns the error of the whole call n, or nil.
	callErr func(call int) error

	mu    sync.Mutex
	calls int
	sent  []sentRecord
	seq   int
}

func (f *fakeKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := f.calls
	f.calls++
	if len(in.Records) > maxPutRecords {
		f.t.Errorf("call %d: %d records, Kinesis takes at most %d", call, len(in.Records), maxPutRecords)
	}
	size := 0
	for _, r := range in.Records {
		n := len(r.Data) + len(aws.ToString(r.PartitionKey))
		if n > 1<<20 {
			f.t.Errorf("call %d: record of %d bytes, Kinesis takes at most 1 MiB", call, n)
		}
		size += n
	}
	if size > 5<<20 {
		f.t.Errorf("call %d: %d bytes, Kinesis takes at most 5 MiB per call", call, size)
	}
	first := len(f.sent)
	for _, r := range in.Records {
		f.sent = append(f.sent, sentRecord{call: call, key: aws.ToString(r.PartitionKey), data: bytes.Clone(r.Data)})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.callErr != nil {
		if err := f.callErr(call); err != nil {
			return nil, err
		}
	}
	out := &kinesis.PutRecordsOutput{Records: make([]types.PutRecordsResultEntry, len(in.Records))}
	for i := range in.Records {
		s := &f.sent[first+i]
		if f.refuse != nil && f.refuse(call, s.key, s.data) {
			out.Records[i] = types.PutRecordsResultEntry{
				ErrorCode:    aws.String("ProvisionedThroughputExceededException"),
				ErrorMessage: aws.String("Rate exceeded for shard"),
			}
			out.FailedRecordCount = aws.Int32(aws.ToInt32(out.FailedRecordCount) + 1)
			continue
		}
		f.seq++
		s.accepted, s.shard, s.seq = true, "shardId-"+s.key, strconv.Itoa(1000+f.seq)
		out.Records[i] = types.PutRecordsResultEntry{ShardId: aws.String(s.shard), SequenceNumber: aws.String(s.seq)}
	}
	return out, nil
}

// records returns every entry seen so far.
func (f *fakeKinesis) records() []sentRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentRecord(nil), f.sent...)
}

// callCount returns how many PutRecords calls were made.
func (f *fakeKinesis) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// recordEventIDs returns the eventIds of the events a record holds.
func recordEventIDs(t *testing.T, data []byte) []string {
	t.Helper()
	var events []event.Event
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &events); err != nil {
			t.Fatalf("record %.80s: %v", data, err)
		}
	} else {
		var e event.Event
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("record %.80s: %v", data, err)
		}
		events = []event.Event{e}
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.EventID
	}
	return ids
}

// describeRecord renders a record as "key:id1,id2" for comparisons.
func describeRecord(t *testing.T, r sentRecord) string {
	t.Helper()
	return r.key + ":" + strings.Join(recordEventIDs(t, r.data), ",")
}

// testDeadline bounds one Publish or handle in a test: far above what the
// short failures the tests inject need, so a regression that retries
// forever fails the test instead of hanging it.
const testDeadline = 10 * time.Second

// boundedCtx is a context cancelled after testDeadline or with the test.
func boundedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// ingestEvent returns an event of producer with id; a positive size makes
// its data a JSON string of that many bytes.
func ingestEvent(producer, id string, size int) event.Event {
	data := json.RawMessage(`{"n":1}`)
	if size > 0 {
		data = json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
	}
	return event.Event{EventID: id, AgentID: producer, Timestamp: "2025-07-01T12:00:00.000Z", EventType: "exampleEvent", Data: data}
}

// checkIngestOutcome checks what every successful Publish must leave
// behind: each producer's records were sent one at a time (a record only
// after the previous one of its producer was accepted, never two in one
// call), the accepted records hold each producer's events in input order,
// one event is a plain object exactly as json.Marshal writes it and several
// a JSON array, and each receipt names the record that carried its event.
func checkIngestOutcome(t *testing.T, events []event.Event, receipts []event.Receipt, sent []sentRecord) {
	t.Helper()
	byID := map[string]event.Event{}
	wantIDs := map[string][]string{}
	for _, e := range events {
		byID[e.EventID] = e
		wantIDs[e.AgentID] = append(wantIDs[e.AgentID], e.EventID)
	}
	pending := map[string][]byte{} // producer -> record sent but not yet accepted
	inCall := map[string]int{}     // producer -> last call it had a record in
	gotIDs := map[string][]string{}
	carrier := map[string]sentRecord{}
	for _, r := range sent {
		if c, ok := inCall[r.key]; ok && c == r.call {
			t.Errorf("call %d carries two records of producer %s", r.call, r.key)
		}
		inCall[r.key] = r.call
		if p, ok := pending[r.key]; ok && !bytes.Equal(p, r.data) {
			t.Errorf("call %d sent %s before the earlier record %s was accepted", r.call, describeRecord(t, r), describeRecord(t, sentRecord{key: r.key, data: p}))
		}
		if !r.accepted {
			pending[r.key] = r.data
			continue
		}
		delete(pending, r.key)
		ids := recordEventIDs(t, r.data)
		gotIDs[r.key] = append(gotIDs[r.key], ids...)
		for _, id := range ids {
			carrier[id] = r
		}
		if len(ids) == 1 {
			want, _ := json.Marshal(byID[ids[0]])
			if !bytes.Equal(r.data, want) {
				t.Errorf("lone event record = %.120s, want exactly the event object %.120s", r.data, want)
			}
			continue
		}
		if r.data[0] != '[' {
			t.Errorf("record of %d events is not an array: %.80s", len(ids), r.data)
		}
		// What Ingest packs, the aggregator reads back unchanged.
		got, err := event.ParseRecord(r.data, r.key, "shardId-x", r.seq, time.Time{})
		if err != nil {
			t.Errorf("ParseRecord(packed record): %v", err)
		}
		for i, e := range got {
			if want := byID[ids[i]]; !reflect.DeepEqual(e, want) {
				t.Errorf("packed event %d reads back as %+v, want %+v", i, e, want)
			}
		}
	}
	if !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Errorf("accepted events per producer = %v, want %v", gotIDs, wantIDs)
	}
	if len(receipts) != len(events) {
		t.Fatalf("got %d receipts for %d events", len(receipts), len(events))
	}
	for i, rc := range receipts {
		r := carrier[events[i].EventID]
		want := event.Receipt{EventID: events[i].EventID, ShardID: r.shard, SequenceNumber: r.seq}
		if rc != want {
			t.Errorf("receipt %d = %+v, want %+v (the record that carried it)", i, rc, want)
		}
	}
}

func TestIngestPublishPacking(t *testing.T) {
	t.Parallel()
	// A record limit of 100 kB keeps the test events under event.MaxBytes.
	const limit, big = 100_000, 40_000 // two fit in a record, three do not
	for _, tc := range []struct {
		name   string
		events []event.Event
		// calls lists each PutRecords call's records as "producer:eventIds".
		calls [][]string
	}{
		{
			name:   "lone event",
			events: []event.Event{ingestEvent("A", "a1", 0)},
			calls:  [][]string{{"A:a1"}},
		},
		{
			name:   "one producer's events in one record",
			events: []event.Event{ingestEvent("A", "a1", 0), ingestEvent("A", "a2", 0), ingestEvent("A", "a3", 0)},
			calls:  [][]string{{"A:a1,a2,a3"}},
		},
		{
			name:   "interleaved producers",
			events: []event.Event{ingestEvent("A", "a1", 0), ingestEvent("B", "b1", 0), ingestEvent("A", "a2", 0)},
			calls:  [][]string{{"A:a1,a2", "B:b1"}},
		},
		{
			name: "producer over the record limit",
			events: []event.Event{
				ingestEvent("A", "a1", big), ingestEvent("B", "b1", 0),
				ingestEvent("A", "a2", big), ingestEvent("A", "a3", big),
			},
			calls: [][]string{{"A:a1,a2", "B:b1"}, {"A:a3"}},
		},
		{
			name: "producer over several record limits",
			events: []event.Event{
				ingestEvent("A", "a1", big), ingestEvent("A", "a2", big), ingestEvent("A", "a3", big),
				ingestEvent("A", "a4", big), ingestEvent("A", "a5", big),
			},
			calls: [][]string{{"A:a1,a2"}, {"A:a3,a4"}, {"A:a5"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc := &fakeKinesis{t: t}
			in := NewIngest(kc, "events")
			in.recordLimit = limit
			receipts, err := in.Publish(boundedCtx(t), tc.events)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			sent := kc.records()
			var calls [][]string
			for _, r := range sent {
				for len(calls) <= r.call {
					calls = append(calls, nil)
				}
				calls[r.call] = append(calls[r.call], describeRecord(t, r))
			}
			if !reflect.DeepEqual(calls, tc.calls) {
				t.Errorf("PutRecords calls = %v, want %v", calls, tc.calls)
			}
			checkIngestOutcome(t, tc.events, receipts, sent)
		})
	}
}

func TestIngestPublishNothing(t *testing.T) {
	t.Parallel()
	kc := &fakeKinesis{t: t}
	receipts, err := NewIngest(kc, "events").Publish(boundedCtx(t), nil)
	if err != nil || len(receipts) != 0 {
		t.Errorf("Publish(nil) = %v, %v; want no receipts, nil", receipts, err)
	}
	if n := kc.callCount(); n != 0 {
		t.Errorf("Publish(nil) made %d PutRecords calls, want 0", n)
	}
}

func TestIngestPublishSplitsCalls(t *testing.T) {
	t.Parallel()
	many := make([]event.Event, maxPutRecords+1)
	for i := range many {
		many[i] = ingestEvent(fmt.Sprintf("p%03d", i), fmt.Sprintf("e%03d", i), 0)
	}
	huge := make([]event.Event, 6) // six records of ~1 MB: five fit in 5 MiB
	for i := range huge {
		huge[i] = ingestEvent(fmt.Sprintf("p%d", i), fmt.Sprintf("e%d", i), 1_000_000)
	}
	for _, tc := range []struct {
		name   string
		events []event.Event
		want   []int // records per call
	}{
		{"more than 500 records", many, []int{maxPutRecords, 1}},
		{"more than 5 MiB", huge, []int{5, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc := &fakeKinesis{t: t}
			receipts, err := NewIngest(kc, "events").Publish(boundedCtx(t), tc.events)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			sent := kc.records()
			var got []int
			for _, r := range sent {
				for len(got) <= r.call {
					got = append(got, 0)
				}
				got[r.call]++
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("records per PutRecords call = %v, want %v", got, tc.want)
			}
			checkIngestOutcome(t, tc.events, receipts, sent)
		})
	}
}

func TestIngestPublishRetriesOnlyRefusedRecords(t *testing.T) {
	t.Parallel()
	const limit, big = 100_000, 60_000 // one per record
	events := []event.Event{
		ingestEvent("A", "a1", big), ingestEvent("B", "b1", 0), ingestEvent("C", "c1", 0),
		ingestEvent("A", "a2", big), ingestEvent("C", "c2", big), ingestEvent("C", "c3", big),
	}
	kc := &fakeKinesis{t: t}
	kc.refuse = func(call int, key string, data []byte) bool {
		// A's first record and C's first record are throttled once;
		// C's second record once more when it is first sent.
		ids := recordEventIDs(t, data)
		switch {
		case call == 0 && (key == "A" || key == "C"):
			return true
		case call == 2 && ids[0] == "c3":
			return true
		}
		return false
	}
	in := NewIngest(kc, "events")
	in.recordLimit = limit
	receipts, err := in.Publish(boundedCtx(t), events)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	sent := kc.records()
	var got []string
	for _, r := range sent {
		got = append(got, fmt.Sprintf("%d %s %v", r.call, describeRecord(t, r), r.accepted))
	}
	want := []string{
		"0 A:a1 false", "0 B:b1 true", "0 C:c1,c2 false",
		"1 A:a1 true", "1 C:c1,c2 true",
		"2 A:a2 true", "2 C:c3 false",
		"3 C:c3 true",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries sent =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkIngestOutcome(t, events, receipts, sent)
}

func TestIngestPublishRetriesFailedCall(t *testing.T) {
	t.Parallel()
	events := []event.Event{ingestEvent("A", "a1", 0), ingestEvent("B", "b1", 0), ingestEvent("A", "a2", 0)}
	kc := &fakeKinesis{t: t}
	kc.callErr = func(call int) error {
		if call == 0 {
			return errors.New("connection reset")
		}
		return nil
	}
	receipts, err := NewIngest(kc, "events").Publish(boundedCtx(t), events)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if n := kc.callCount(); n != 2 {
		t.Errorf("PutRecords calls = %d, want 2 (the failed one, then its retry)", n)
	}
	checkIngestOutcome(t, events, receipts, kc.records())
}

// TestIngestPublishGivesUp runs on synctest's clock: Publish must keep
// retrying for retryFor, then answer event.ErrUnavailable.
func TestIngestPublishGivesUp(t *testing.T) {
	t.Parallel()
	const retryFor = 3 * time.Second
	for _, tc := range []struct {
		name    string
		refuse  func(int, string, []byte) bool
		callErr func(int) error
	}{
		{name: "records refused", refuse: func(int, string, []byte) bool { return true }},
		{name: "calls fail", callErr: func(int) error { return errors.New("service unavailable") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				kc := &fakeKinesis{t: t, refuse: tc.refuse, callErr: tc.callErr}
				in := NewIngest(kc, "events")
				in.retryFor = retryFor
				// A Publish that ignored retryFor would stop only here.
				ctx, cancel := context.WithTimeout(context.Background(), 2*(retryFor+backoff.Max))
				defer cancel()
				start := time.Now()
				receipts, err := in.Publish(ctx, []event.Event{ingestEvent("A", "a1", 0)})
				elapsed := time.Since(start)
				if !errors.Is(err, event.ErrUnavailable) || receipts != nil {
					t.Fatalf("Publish = %v, %v; want nil, event.ErrUnavailable", receipts, err)
				}
				if elapsed < retryFor || elapsed > retryFor+backoff.Max+time.Millisecond {
					t.Errorf("Publish gave up after %v, want between %v and %v", elapsed, retryFor, retryFor+backoff.Max)
				}
				if n := kc.callCount(); n < 3 {
					t.Errorf("PutRecords calls = %d, want retries until the deadline", n)
				}
			})
		})
	}
}

func TestIngestPublishCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup configures kc to cancel at the right moment; cancelled
		// says whether ctx is cancelled before Publish.
		setup     func(kc *fakeKinesis, cancel context.CancelFunc)
		cancelled bool
		calls     int
	}{
		{
			name:      "before the call",
			setup:     func(*fakeKinesis, context.CancelFunc) {},
			cancelled: true,
			calls:     1,
		},
		{
			name: "during the call",
			setup: func(kc *fakeKinesis, cancel context.CancelFunc) {
				kc.callErr = func(int) error { cancel(); return context.Canceled }
			},
			calls: 1,
		},
		{
			name: "while backing off",
			setup: func(kc *fakeKinesis, cancel context.CancelFunc) {
				kc.refuse = func(int, string, []byte) bool { cancel(); return true }
			},
			calls: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(boundedCtx(t))
			defer cancel()
			kc := &fakeKinesis{t: t}
			tc.setup(kc, cancel)
			if tc.cancelled {
				cancel()
			}
			receipts, err := NewIngest(kc, "events").Publish(ctx, []event.Event{ingestEvent("A", "a1", 0)})
			if !errors.Is(err, event.ErrUnavailable) || receipts != nil {
				t.Errorf("Publish = %v, %v; want nil, event.ErrUnavailable", receipts, err)
			}
			if n := kc.callCount(); n > tc.calls {
				t.Errorf("PutRecords calls = %d, want at most %d: a cancelled Publish stops", n, tc.calls)
			}
		})
	}
}

func TestIngestPublishEventTooLarge(t *testing.T) {
	t.Parallel()
	kc := &fakeKinesis{t: t}
	events := []event.Event{ingestEvent("A", "a1", 0), ingestEvent("A", "a2", 1<<20)}
	receipts, err := NewIngest(kc, "events").Publish(boundedCtx(t), events)
	if !errors.Is(err, event.ErrTooLarge) || receipts != nil {
		t.Fatalf("Publish = %v, %v; want nil, event.ErrTooLarge", receipts, err)
	}
	if !strings.Contains(err.Error(), "event 1") {
		t.Errorf("error %q does not name the event's index 1", err)
	}
	if n := kc.callCount(); n != 0 {
		t.Errorf("PutRecords calls = %d, want 0: nothing is written when an event cannot be", n)
	}

	// The largest event that fits goes alone in its record.
	largest := ingestEvent("A", "a1", 0)
	fixed, _ := json.Marshal(ingestEvent("A", "a1", 1))
	largest.Data = json.RawMessage(`"` + strings.Repeat("x", maxRecordBytes-2-len(fixed)+1) + `"`)
	if enc, _ := json.Marshal(largest); len(enc) != maxRecordBytes-2 {
		t.Fatalf("test event is %d bytes, want %d", len(enc), maxRecordBytes-2)
	}
	receipts, err = NewIngest(kc, "events").Publish(boundedCtx(t), []event.Event{largest})
	if err != nil {
		t.Fatalf("Publish(largest event): %v", err)
	}
	checkIngestOutcome(t, []event.Event{largest}, receipts, kc.records())
}
