package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// runOf returns events e0, e1… of subscriber sub and producer-1 from one
// shard, one per timestamp, at sequence numbers 100, 101…
func runOf(sub string, timestamps ...string) []SubscriberEvent {
	out := make([]SubscriberEvent, len(timestamps))
	for i, ts := range timestamps {
		out[i] = testEvent(sub, fmt.Sprintf("e%d", i))
		out[i].Timestamp = ts
		out[i].Seq = fmt.Sprint(100 + i)
	}
	return out
}

// randomBase64 is n bytes of base64 from a fixed seed: data deflate can
// shrink by a quarter at most.
func randomBase64(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed))
	raw := make([]byte, n*3/4+3)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(raw)[:n]
}

// denseString is a JSON string of n random bytes from 0x20 to 0xff but
// '"' and '\\' (JSON does not ask for UTF-8): almost 8 bits each, which
// deflate cannot shrink by more than a few percent.
func denseString(r *rand.Rand, n int) json.RawMessage {
	b := make([]byte, 0, n+2)
	b = append(b, '"')
	for len(b) <= n {
		if c := byte(0x20 + r.IntN(0xe0)); c != '"' && c != '\\' {
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func TestNextRun(t *testing.T) {
	t.Parallel()
	const t0 = "2026-07-01T12:00:00.000Z"
	small := testEvent("s", "e0")
	fill := testEvent("s", "e1")
	fill.Data = nil
	// The data that makes [small, fill] exactly maxRunBytes as NextRun
	// counts them.
	budget := maxRunBytes - (2 + encodedRunEventBytes(small) + 1 + encodedRunEventBytes(fill) + 1)
	withData := func(e SubscriberEvent, n int) SubscriberEvent {
		e.Data = jsonString(n)
		return e
	}
	huge := withData(testEvent("s", "huge"), maxItemBytes+1)
	at := func(ts ...string) []SubscriberEvent { return runOf("s", ts...) }
	for _, tc := range []struct {
		name   string
		events []SubscriberEvent
		want   int
	}{
		{"none", nil, 0},
		{"one", at(t0), 1},
		{"all fit", at(t0, t0, "2026-07-01T12:00:00.500Z", "2026-07-01T12:00:00.999Z"), 4},
		{"exactly at the byte budget", []SubscriberEvent{small, withData(fill, budget)}, 2},
		{"one byte over the budget", []SubscriberEvent{small, withData(fill, budget+1)}, 1},
		{"an oversized event alone", []SubscriberEvent{huge, small}, 1},
		{"an oversized event after others", []SubscriberEvent{small, huge}, 1},
		{"MaxRunSpan after the first starts a new run", at(t0, "2026-07-01T12:00:00.999Z", "2026-07-01T12:00:01.000Z"), 2},
		{"an earlier timestamp starts a new run", at(t0, "2026-07-01T12:00:00.005Z", "2026-07-01T11:59:59.999Z"), 2},
		{"earlier than the last but not the first", at(t0, "2026-07-01T12:00:00.005Z", "2026-07-01T12:00:00.003Z"), 3},
		{"first timestamp unparsable", at("yesterday", t0, t0), 1},
		{"a later timestamp unparsable", at(t0, t0, "noon", t0), 2},
	} {
		if got := NextRun(tc.events); got != tc.want {
			t.Errorf("%s: NextRun = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestNextRunFitsItem: a run NextRun cuts at its byte budget, of data
// deflate can hardly shrink and keys at their longest, is within
// DynamoDB's item limit: NextRun's budget keeps PutEventRun's promise.
func TestNextRunFitsItem(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{SubscriberEvents: "unused"}, testAccount)
	r := rand.New(rand.NewPCG(3, 4))
	var events []SubscriberEvent
	for i := range 40 {
		e := testEvent(strings.Repeat("s", maxPartitionKeyBytes), fmt.Sprintf("e%d", i))
		if i == 0 {
			e.EventID = strings.Repeat("e", maxSortKeyBytes-len(e.Timestamp)-len(e.AgentID)-2)
		}
		e.Data = denseString(r, 20<<10)
		events = append(events, e)
	}
	n := NextRun(events)
	if n < 2 || n == len(events) {
		t.Fatalf("NextRun = %d of %d, want a cut by size", n, len(events))
	}
	item, err := s.runItem(events[:n])
	if err != nil {
		t.Fatalf("runItem of the %d events NextRun took: %v", n, err)
	}
	if size := itemBytes(item); size > maxItemBytes {
		t.Errorf("item of %d events is %d bytes, over %d", n, size, maxItemBytes)
	}
}

// TestPutEventRunSize writes runs whose item is one byte either side of
// DynamoDB's 400 KB: the one under is written and reads back byte for
// byte, the one over is ErrRejected and not written.
func TestPutEventRunSize(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	const ts = "2026-07-01T12:00:00.000Z"
	tail := randomBase64(9, 300<<10)
	runWith := func(n int) []SubscriberEvent {
		events := runOf("sub-1", ts, ts, ts)
		events[0].Data = json.RawMessage(`"` + randomBase64(7, 120<<10) + `"`)
		events[1].Data = json.RawMessage(`"` + randomBase64(8, 120<<10) + `"`)
		events[2].Data = json.RawMessage(`"` + tail[:n] + `"`)
		return events
	}
	size := func(n int) int {
		item, err := s.runItem(runWith(n))
		if err != nil && !errors.Is(err, ErrRejected) {
			t.Fatalf("runItem: %v", err)
		}
		if item == nil {
			return maxItemBytes + 1
		}
		return itemBytes(item)
	}
	// The longest tail whose item fits: deflate's output grows with its
	// input, a byte at a time at most for random data.
	lo, hi := 0, len(tail)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if size(mid) <= maxItemBytes {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	over := lo + 1
	for size(over) <= maxItemBytes {
		over++
	}
	if got, gotOver := size(lo), size(over); got < maxItemBytes-16 || gotOver > maxItemBytes+16 {
		t.Fatalf("the items found are %d and %d bytes, want just under and just over %d", got, gotOver, maxItemBytes)
	}

	if span, err := s.PutEventRun(ctx, runWith(over)); !errors.Is(err, ErrRejected) || span != nil {
		t.Errorf("PutEventRun of an item of %d bytes = %+v, %v; want ErrRejected", size(over), span, err)
	}
	if spans, err := s.RunSpans(ctx, "sub-1", "producer-1", "shardId-000000000000", ts, ts); err != nil || len(spans) != 0 {
		t.Errorf("after the rejected run, RunSpans = %+v, %v; want nothing written", spans, err)
	}

	under := runWith(lo)
	if span, err := s.PutEventRun(ctx, under); err != nil || span != nil {
		t.Fatalf("PutEventRun of an item of %d bytes = %+v, %v; want written", size(lo), span, err)
	}
	from, _ := time.Parse(time.RFC3339, ts)
	got, next, err := s.ReplayEvents(ctx, ReplayQuery{SubscriberID: "sub-1", From: from, To: from.Add(time.Millisecond)})
	if err != nil || next != "" || len(got) != len(under) {
		t.Fatalf("ReplayEvents = %d events, %q, %v; want the %d written", len(got), next, err, len(under))
	}
	for i, e := range got {
		if !reflect.DeepEqual(e.SubscriberEvent, under[i]) {
			t.Errorf("event %d read back differs from the one written (data %d bytes, want %d)", i, len(e.Data), len(under[i].Data))
		}
	}
}

// TestPutEventRunRejected gives PutEventRun runs that can never be an
// item: each fails as ErrRejected without a call to AWS (the Store has
// no clients).
func TestPutEventRunRejected(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{SubscriberEvents: "unused"}, testAccount)
	with := func(i int, f func(*SubscriberEvent)) []SubscriberEvent {
		events := runOf("sub-1", "2026-07-01T12:00:00.000Z", "2026-07-01T12:00:00.001Z")
		f(&events[i])
		return events
	}
	for _, tc := range []struct {
		name   string
		events []SubscriberEvent
		want   string // in the error
	}{
		{"no events", nil, "no events"},
		{"no subscriber id", with(0, func(e *SubscriberEvent) { e.SubscriberID = "" }), "another subscriber"},
		{"no producer id in any", func() []SubscriberEvent {
			events := with(0, func(e *SubscriberEvent) { e.AgentID = "" })
			events[1].AgentID = ""
			return events
		}(), "required"},
		{"an event without id", with(1, func(e *SubscriberEvent) { e.EventID = "" }), "no event id"},
		{"an event without timestamp", with(1, func(e *SubscriberEvent) { e.Timestamp = "" }), "no event id or timestamp"},
		{"another producer's event", with(1, func(e *SubscriberEvent) { e.AgentID = "producer-2" }), "another subscriber, producer or shard"},
		{"another shard's event", with(1, func(e *SubscriberEvent) { e.ShardID = "shardId-1" }), "another subscriber, producer or shard"},
		{"data not JSON", with(1, func(e *SubscriberEvent) { e.Data = json.RawMessage("{") }), "not JSON"},
		{"sort key too long", with(0, func(e *SubscriberEvent) { e.EventID = strings.Repeat("e", maxSortKeyBytes) }), "key attribute timestamp"},
		{"item over 400 KB", with(1, func(e *SubscriberEvent) { e.Data = json.RawMessage(`"` + randomBase64(1, 600<<10) + `"`) }), "item is"},
	} {
		span, err := s.PutEventRun(testContext(t), tc.events)
		if span != nil || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: PutEventRun = %+v, %v; want ErrRejected saying %q", tc.name, span, err, tc.want)
		}
	}
}

// roundTripRuns are runs whose events' data and fields exercise the
// packed encoding: data of every JSON kind, spaced, escaped, long
// numbers; arrival times or none; indexes within a record.
func roundTripRuns() [][]SubscriberEvent {
	datas := roundTripData
	a := make([]SubscriberEvent, len(datas))
	for i, d := range datas {
		e := testEvent("sub-1", fmt.Sprintf("ev-%d", i))
		e.Timestamp = fmt.Sprintf("2026-07-01T12:00:00.%03dZ", i)
		e.EventType = fmt.Sprintf("type-%d", i)
		e.Data = json.RawMessage(d)
		e.Seq, e.Index = "49590338271490256608559692538361571095921575989136588898", i
		if i%2 == 0 { // the others have no arrival time
			e.Arrived = time.Date(2026, 7, 1, 12, 0, 1, i*int(time.Millisecond), time.UTC)
		}
		a[i] = e
	}
	b := runOf("sub-1", "2026-07-01T12:00:00.100Z", "2026-07-01T12:00:00.101Z")
	for i := range b {
		b[i].AgentID = "producer-2"
	}
	return [][]SubscriberEvent{a, b}
}

// TestDecodeEventImageRunRoundTrip writes runs with PutEventRun (and one
// event with PutEvent), reads the table's stream as kcl does and decodes
// each record: one record per item, its events byte for byte. A second
// write of a run's first event adds no record.
func TestDecodeEventImageRunRoundTrip(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	want := map[string][]SubscriberEvent{} // by first event id
	for _, r := range roundTripRuns() {
		if span, err := s.PutEventRun(ctx, r); err != nil || span != nil {
			t.Fatalf("PutEventRun: %+v, %v", span, err)
		}
		want[r[0].EventID] = r
	}
	first := roundTripRuns()[0]
	if span, err := s.PutEventRun(ctx, first[:2]); err != nil || span == nil {
		t.Fatalf("PutEventRun again = %+v, %v; want the span of the first write", span, err)
	}
	one := testEvent("sub-1", "single")
	if _, err := s.PutEvent(ctx, one); err != nil {
		t.Fatalf("PutEvent: %v", err)
	}
	want[one.EventID] = []SubscriberEvent{one}

	recs := streamRecords(t, s, len(want))
	if len(recs) != len(want) {
		t.Fatalf("stream has %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		got := decodeRecord(t, r)
		if len(got) == 0 {
			t.Fatal("a record decoded to no events")
		}
		w := want[got[0].EventID]
		if len(got) != len(w) {
			t.Errorf("record of %s has %d events, want %d", got[0].EventID, len(got), len(w))
			continue
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], w[i]) {
				t.Errorf("decoded %+v (data %s)\nwant    %+v (data %s)", got[i], got[i].Data, w[i], w[i].Data)
			}
		}
	}
}

// TestEventRunImage: the image EventRunImage makes decodes to its events
// and carries the expiry given.
func TestEventRunImage(t *testing.T) {
	t.Parallel()
	events := roundTripRuns()[0]
	expires := time.Date(2026, 7, 8, 12, 0, 0, 0, time.UTC)
	image, err := EventRunImage(events, expires)
	if err != nil {
		t.Fatalf("EventRunImage: %v", err)
	}
	got, err := DecodeEventImage(image)
	if err != nil {
		t.Fatalf("DecodeEventImage: %v", err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("DecodeEventImage(EventRunImage(events)) = %+v\nwant %+v", got, events)
	}
	var attrs struct {
		ExpiresAt int64 `json:"expiresAt"`
		Format    int   `json:"v"`
		Count     int   `json:"count"`
	}
	if err := json.Unmarshal(image, &attrs); err != nil || attrs.ExpiresAt != expires.Unix() || attrs.Format != runFormat || attrs.Count != len(events) {
		t.Errorf("image attributes = %+v, %v; want expiresAt %d, v %d, count %d", attrs, err, expires.Unix(), runFormat, len(events))
	}
	if _, err := EventRunImage(nil, expires); !errors.Is(err, ErrRejected) {
		t.Errorf("EventRunImage(no events) = %v, want ErrRejected", err)
	}
}

func TestDecodeEventImageRunErrors(t *testing.T) {
	t.Parallel()
	image, err := EventRunImage(runOf("s", "2026-07-01T12:00:00.000Z"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var valid map[string]any
	if err := json.Unmarshal(image, &valid); err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range valid {
			m[key] = val
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		image map[string]any
		want  string // in the error
	}{
		{"a newer format", with("v", 3), "format 3"},
		{"format not a number", with("v", "2"), "attribute v"},
		{"no events", with("events", nil), "events"},
		{"events not base64", with("events", "%%%"), "events"},
		{"events not deflated", with("events", base64.StdEncoding.EncodeToString([]byte(`[]`))), "events"},
		{"events an empty list", with("events", mustDeflate(t, `[]`)), "no events"},
		{"no producer", with("producerId", nil), "producerId"},
	} {
		b, _ := json.Marshal(tc.image)
		if _, err := DecodeEventImage(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeEventImage error = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// mustDeflate is raw deflated, in base64, as an image holds it.
func mustDeflate(t *testing.T, raw string) string {
	t.Helper()
	var enc []runEvent
	if err := json.Unmarshal([]byte(raw), &enc); err != nil {
		t.Fatal(err)
	}
	b, err := deflateRun(enc)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestComparePositions(t *testing.T) {
	t.Parallel()
	pos := func(seq string, idx int) EventPosition { return EventPosition{ShardID: "sh", Seq: seq, Index: idx} }
	long := "49590338271490256608559692538361571095921575989136588898"
	for _, tc := range []struct {
		a, b EventPosition
		want int
	}{
		{pos("9", 0), pos("10", 0), -1},
		{pos("10", 0), pos("9", 5), 1},
		{pos("99", 3), pos("100", 0), -1},
		{pos(long, 0), pos("1"+long, 0), -1},
		{pos(long[:55], 9), pos(long, 0), -1},
		{pos("123", 0), pos("124", 0), -1},
		{pos("124", 0), pos("123", 7), 1},
		{pos(long, 2), pos(long, 2), 0},
		{pos(long, 1), pos(long, 2), -1},
		{pos(long, 3), pos(long, 2), 1},
	} {
		if got := ComparePositions(tc.a, tc.b); got != tc.want {
			t.Errorf("ComparePositions(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := ComparePositions(tc.b, tc.a); got != -tc.want {
			t.Errorf("ComparePositions(%v, %v) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestRunSpanCovers(t *testing.T) {
	t.Parallel()
	span := RunSpan{First: EventPosition{ShardID: "sh", Seq: "99", Index: 2}, Last: EventPosition{ShardID: "sh", Seq: "100", Index: 1}, Count: 3}
	for _, tc := range []struct {
		p    EventPosition
		want bool
	}{
		{EventPosition{ShardID: "sh", Seq: "99", Index: 2}, true},
		{EventPosition{ShardID: "sh", Seq: "99", Index: 7}, true},
		{EventPosition{ShardID: "sh", Seq: "100", Index: 1}, true},
		{EventPosition{ShardID: "sh", Seq: "99", Index: 1}, false},
		{EventPosition{ShardID: "sh", Seq: "100", Index: 2}, false},
		{EventPosition{ShardID: "sh", Seq: "98", Index: 9}, false},
		{EventPosition{ShardID: "other", Seq: "99", Index: 3}, false},
	} {
		if got := span.Covers(tc.p); got != tc.want {
			t.Errorf("%+v.Covers(%v) = %v, want %v", span, tc.p, got, tc.want)
		}
	}
}
