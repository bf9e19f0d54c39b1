package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fanout/fanout/event"
)

// ev returns the JSON of an event of producer P with the given fields
// replaced (a nil value removes the field).
func ev(t *testing.T, fields map[string]any) string {
	t.Helper()
	m := map[string]any{"agentId": "P", "timestamp": "2025-07-01T12:00:00.000Z", "eventType": "exampleEvent", "data": map[string]any{"n": 1}}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// batch joins events into a JSON array.
func batch(events ...string) string { return "[" + strings.Join(events, ",") + "]" }

func TestPostEventsRejects(t *testing.T) {
	t.Parallel()
	ok := ev(t, nil)
	var many []string
	for range maxBatchEvents + 1 {
		many = append(many, ok)
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		wantErr     []string
	}{
		{"empty body", "application/json", "", 400, []string{"request body is empty"}},
		{"blank body", "application/json", " \r\n\t", 400, []string{"request body is empty"}},
		{"empty array", "application/json", "[]", 400, []string{"empty array", "1 to 500"}},
		{"too many events", "application/json", batch(many...), 400, []string{"501 events", "at most 500"}},
		{"top-level string", "application/json", `"hi"`, 400, []string{"JSON event object or an array"}},
		{"top-level null", "application/json", `null`, 400, []string{"JSON event object or an array"}},
		{"malformed array", "application/json", `[` + ok + `,]`, 400, []string{"malformed JSON at byte"}},
		{"malformed object", "application/json", `{"agentId":"P",}`, 400, []string{"event 0: malformed JSON at byte 16"}},
		{"truncated", "application/json", `[` + ok, 400, []string{"malformed JSON"}},
		{"trailing data after array", "application/json", batch(ok) + `[]`, 400, []string{"unexpected data after the JSON value"}},
		{"trailing data after object", "application/json", ok + ` {}`, 400, []string{"event 0: unexpected data after the JSON value"}},
		{"element not an object", "application/json", batch(ok, `1`), 400, []string{"event 1: must be a JSON object"}},
		{"element null", "application/json", batch(ok, `null`), 400, []string{"event 1: must be a JSON object"}},
		{"unknown field", "application/json", batch(ok, ok, ev(t, map[string]any{"extra": 1})), 400, []string{"event 2: unknown field \"extra\""}},
		{"agentId missing", "application/json", batch(ok, ev(t, map[string]any{"agentId": nil})), 400, []string{"event 1: agentId is required"}},
		{"agentId empty", "application/json", ev(t, map[string]any{"agentId": ""}), 400, []string{"event 0: agentId is required"}},
		{"agentId not a string", "application/json", ev(t, map[string]any{"agentId": 7}), 400, []string{"event 0: agentId must be a JSON string, got number"}},
		{"agentId too long", "application/json", ev(t, map[string]any{"agentId": strings.Repeat("a", 257)}), 400, []string{"event 0: agentId is longer than 256 bytes"}},
		{"eventType missing", "application/json", ev(t, map[string]any{"eventType": nil}), 400, []string{"event 0: eventType is required"}},
		{"eventType empty", "application/json", ev(t, map[string]any{"eventType": ""}), 400, []string{"eventType is required"}},
		{"eventType too long", "application/json", ev(t, map[string]any{"eventType": strings.Repeat("é", 257)}), 400, []string{"eventType must be at most 256 characters"}},
		{"eventType not a string", "application/json", ev(t, map[string]any{"eventType": []int{1}}), 400, []string{"eventType must be a JSON string, got array"}},
		{"data missing", "application/json", batch(ok, ok, ok, ev(t, map[string]any{"data": nil})), 400, []string{"event 3: data is required"}},
		{"timestamp not RFC 3339", "application/json", batch(ok, ok, ok, ev(t, map[string]any{"timestamp": "2025-07-01 12:00:00"})), 400, []string{"event 3: timestamp must be RFC 3339, e.g. 2025-07-01T12:00:00.000Z"}},
		{"timestamp without zone", "application/json", ev(t, map[string]any{"timestamp": "2025-07-01T12:00:00"}), 400, []string{"timestamp must be RFC 3339"}},
		{"timestamp date only", "application/json", ev(t, map[string]any{"timestamp": "2025-07-01"}), 400, []string{"timestamp must be RFC 3339"}},
		{"timestamp empty", "application/json", ev(t, map[string]any{"timestamp": ""}), 400, []string{"timestamp must be RFC 3339"}},
		{"timestamp bad month", "application/json", ev(t, map[string]any{"timestamp": "2025-13-01T12:00:00Z"}), 400, []string{"timestamp must be RFC 3339"}},
		{"timestamp number", "application/json", ev(t, map[string]any{"timestamp": 1751371200000}), 400, []string{"timestamp must be a JSON string, got number"}},
		{"timestamp before year 0 in UTC", "application/json", ev(t, map[string]any{"timestamp": "0000-01-01T00:00:00+01:00"}), 400, []string{"years 0000 to 9999"}},
		{"eventId empty", "application/json", ev(t, map[string]any{"eventId": ""}), 400, []string{"event 0: eventId must be 1 to 128 characters"}},
		{"eventId bad character", "application/json", ev(t, map[string]any{"eventId": "a/b"}), 400, []string{"eventId must be 1 to 128"}},
		{"eventId space", "application/json", ev(t, map[string]any{"eventId": "a b"}), 400, []string{"eventId must be 1 to 128"}},
		{"eventId too long", "application/json", ev(t, map[string]any{"eventId": strings.Repeat("e", 129)}), 400, []string{"eventId must be 1 to 128"}},
		{"eventId repeated", "application/json", batch(ev(t, map[string]any{"eventId": "x"}), ok, ev(t, map[string]any{"eventId": "x"})), 400, []string{`event 2: eventId "x" is also the eventId of event 0`}},
		{"first bad event is named", "application/json", batch(ok, ev(t, map[string]any{"eventType": nil}), ev(t, map[string]any{"agentId": nil})), 400, []string{"event 1: eventType is required"}},
		{"wrong content type", "text/plain", ok, 415, []string{"application/json"}},
		{"body too large", "application/json", `[` + strings.Repeat(" ", maxEventsBodyBytes) + ok + `]`, 413, []string{"larger than 5242880 bytes"}},
		{"one event too large", "application/json", batch(ok, ev(t, map[string]any{"data": strings.Repeat("x", event.MaxBytes)})), 413, []string{"event 1: too large", "make data smaller"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "P")
			rec := f.do(t, http.MethodPost, "/events", tc.contentType, strings.NewReader(tc.body))
			checkErrorContains(t, rec, tc.status, tc.wantErr...)
			if got := f.pub.published(); len(got) != 0 {
				t.Errorf("published %d batches after a %d, want none", len(got), tc.status)
			}
			if _, looked := f.agents.calls(); len(looked) != 0 {
				t.Errorf("looked up producers %q for an invalid request, want no lookups", looked)
			}
		})
	}
}

func TestPostEventsUnknownProducer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "P", "Q")
	body := batch(ev(t, nil), ev(t, map[string]any{"agentId": "Q"}), ev(t, nil), ev(t, map[string]any{"agentId": "ghost"}), ev(t, map[string]any{"agentId": "ghost"}))
	rec := f.doJSON(t, http.MethodPost, "/events", body)
	checkErrorContains(t, rec, 404, `event 3: producer agent "ghost" not found`)
	if got := f.pub.published(); len(got) != 0 {
		t.Errorf("published %d batches, want none", len(got))
	}
	_, looked := f.agents.calls()
	if len(looked) != 3 {
		t.Errorf("looked up %q, want each of P, Q, ghost once", looked)
	}
}

func TestPostEventsFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		lookupErr error
		pubErr    error
		short     bool
		want      string
		published bool
	}{
		{name: "stream unavailable", pubErr: fmt.Errorf("stream s: %w", event.ErrUnavailable), want: "event stream unavailable, retry later", published: true},
		{name: "other publish failure", pubErr: errors.New("signing failed"), want: "service unavailable, retry later", published: true},
		{name: "too few receipts", short: true, want: "service unavailable, retry later", published: true},
		{name: "event too large for the stream", pubErr: fmt.Errorf("event 0: %w", event.ErrTooLarge), want: "does not fit in a Kinesis record", published: true},
		{name: "producer lookup failure", lookupErr: errors.New("dynamodb down"), want: "service unavailable, retry later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{RetryAfter: 1500 * time.Millisecond}, "P")
			f.pub.err, f.pub.short = tc.pubErr, tc.short
			if tc.lookupErr != nil {
				f.agents.errFor["P"] = tc.lookupErr
			}
			rec := f.doJSON(t, http.MethodPost, "/events", ev(t, nil))
			status := 503
			if errors.Is(tc.pubErr, event.ErrTooLarge) {
				status = 413
			}
			checkErrorContains(t, rec, status, tc.want)
			if status == 503 {
				if got := rec.Header().Get("Retry-After"); got != "2" {
					t.Errorf("Retry-After = %q, want 2 (1.5 s rounded up)", got)
				}
				if got := errorMessage(t, rec); got != tc.want {
					t.Errorf("error = %q, want exactly %q", got, tc.want)
				}
			}
			if got := len(f.pub.published()) > 0; got != tc.published {
				t.Errorf("Publish called: %v, want %v", got, tc.published)
			}
		})
	}
}

func TestPostEventsAccepts(t *testing.T) {
	t.Parallel()
	type check func(t *testing.T, events []event.Event, receipts []event.Receipt)
	tests := []struct {
		name        string
		contentType string
		body        string
		check       check
	}{
		{name: "single object gives an array of one receipt", contentType: "application/json", body: ev(t, map[string]any{"eventId": "e-1"}),
			check: func(t *testing.T, events []event.Event, receipts []event.Receipt) {
				want := event.Event{EventID: "e-1", AgentID: "P", Timestamp: "2025-07-01T12:00:00.000Z", EventType: "exampleEvent", Data: json.RawMessage(`{"n":1}`)}
				if len(events) != 1 || !sameEvent(events[0], want) {
					t.Errorf("published %+v, want [%+v]", events, want)
				}
			}},
		{name: "no content type", body: ev(t, nil), check: func(t *testing.T, events []event.Event, _ []event.Receipt) {}},
		{name: "content type with charset", contentType: "application/json; charset=utf-8", body: ev(t, nil), check: func(t *testing.T, events []event.Event, _ []event.Receipt) {}},
		{name: "batch keeps input order", contentType: "application/json",
			body: batch(ev(t, map[string]any{"eventId": "a"}), ev(t, map[string]any{"eventId": "b", "agentId": "Q"}), ev(t, map[string]any{"eventId": "c"})),
			check: func(t *testing.T, events []event.Event, receipts []event.Receipt) {
				want := []event.Receipt{{EventID: "a", ShardID: "shardId-P", SequenceNumber: "seq-0"}, {EventID: "b", ShardID: "shardId-Q", SequenceNumber: "seq-1"}, {EventID: "c", ShardID: "shardId-P", SequenceNumber: "seq-2"}}
				if fmt.Sprint(receipts) != fmt.Sprint(want) {
					t.Errorf("receipts = %+v, want %+v", receipts, want)
				}
				if got := []string{events[0].AgentID, events[1].AgentID, events[2].AgentID}; fmt.Sprint(got) != "[P Q P]" {
					t.Errorf("published producers %v, want [P Q P]", got)
				}
			}},
		{name: "absent eventIds get distinct UUIDs", contentType: "application/json", body: batch(ev(t, nil), ev(t, map[string]any{"eventId": nil})),
			check: func(t *testing.T, events []event.Event, receipts []event.Receipt) {
				for i, e := range events {
					if _, err := uuid.Parse(e.EventID); err != nil {
						t.Errorf("event %d: eventId %q is not a UUID", i, e.EventID)
					}
					if !e.GeneratedID {
						t.Errorf("event %d: eventId %q chosen by the server is not marked generated", i, e.EventID)
					}
					if receipts[i].EventID != e.EventID {
						t.Errorf("receipt %d has eventId %q, published %q", i, receipts[i].EventID, e.EventID)
					}
				}
				if events[0].EventID == events[1].EventID {
					t.Errorf("both events got eventId %q", events[0].EventID)
				}
			}},
		{name: "null eventId is absent", contentType: "application/json", body: ev(t, map[string]any{"eventId": json.RawMessage("null")}),
			check: func(t *testing.T, events []event.Event, _ []event.Receipt) {
				if _, err := uuid.Parse(events[0].EventID); err != nil {
					t.Errorf("eventId %q is not a UUID", events[0].EventID)
				}
			}},
		{name: "eventId with every allowed character", contentType: "application/json", body: ev(t, map[string]any{"eventId": "AZaz09._:-" + strings.Repeat("x", 118)}),
			check: func(t *testing.T, events []event.Event, _ []event.Receipt) {
				if events[0].EventID != "AZaz09._:-"+strings.Repeat("x", 118) || events[0].GeneratedID {
					t.Errorf("eventId = %q (generated %v), want the producer's own", events[0].EventID, events[0].GeneratedID)
				}
			}},
		{name: "timestamps normalised to UTC milliseconds", contentType: "application/json",
			body: batch(
				ev(t, map[string]any{"timestamp": "2025-07-01T14:00:00+02:00"}),
				ev(t, map[string]any{"timestamp": "2025-07-01T12:00:00.123456789Z"}),
				ev(t, map[string]any{"timestamp": "2025-06-30T23:59:59.9-05:30"}),
				ev(t, map[string]any{"timestamp": "2025-07-01T12:00:00.5Z"}),
			),
			check: func(t *testing.T, events []event.Event, _ []event.Receipt) {
				want := []string{"2025-07-01T12:00:00.000Z", "2025-07-01T12:00:00.123Z", "2025-07-01T05:29:59.900Z", "2025-07-01T12:00:00.500Z"}
				for i, w := range want {
					if events[i].Timestamp != w {
						t.Errorf("event %d: timestamp %q, want %q", i, events[i].Timestamp, w)
					}
				}
			}},
		{name: "data may be any JSON value, null included", contentType: "application/json",
			body: batch(ev(t, map[string]any{"data": json.RawMessage("null")}), ev(t, map[string]any{"data": "s"}), ev(t, map[string]any{"data": []int{1, 2}}), ev(t, map[string]any{"data": 3.5}), ev(t, map[string]any{"data": false})),
			check: func(t *testing.T, events []event.Event, _ []event.Receipt) {
				want := []string{`null`, `"s"`, `[1,2]`, `3.5`, `false`}
				for i, w := range want {
					if string(events[i].Data) != w {
						t.Errorf("event %d: data %s, want %s", i, events[i].Data, w)
					}
				}
			}},
		{name: "eventType of 256 characters", contentType: "application/json", body: ev(t, map[string]any{"eventType": strings.Repeat("é", 256)}),
			check: func(t *testing.T, events []event.Event, _ []event.Receipt) {}},
		{name: "500 events", contentType: "application/json", body: batch(slices.Repeat([]string{ev(t, nil)}, maxBatchEvents)...),
			check: func(t *testing.T, events []event.Event, receipts []event.Receipt) {
				if len(events) != maxBatchEvents || len(receipts) != maxBatchEvents {
					t.Errorf("published %d events with %d receipts, want %d", len(events), len(receipts), maxBatchEvents)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "P", "Q")
			rec := f.do(t, http.MethodPost, "/events", tc.contentType, strings.NewReader(tc.body))
			checkStatus(t, rec, http.StatusAccepted)
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			var out struct {
				Events []event.Receipt `json:"events"`
			}
			if err := dec.Decode(&out); err != nil {
				t.Fatalf("decode 202 body: %v", err)
			}
			batches := f.pub.published()
			if len(batches) != 1 {
				t.Fatalf("Publish called %d times, want once", len(batches))
			}
			if len(out.Events) != len(batches[0]) {
				t.Fatalf("%d receipts for %d events", len(out.Events), len(batches[0]))
			}
			tc.check(t, batches[0], out.Events)
		})
	}
}

func TestPostEventsFillsInTimestamp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "P")
	before := time.Now().UTC().Truncate(time.Millisecond)
	rec := f.doJSON(t, http.MethodPost, "/events", batch(ev(t, map[string]any{"timestamp": nil}), ev(t, map[string]any{"timestamp": json.RawMessage("null")})))
	after := time.Now().UTC()
	checkStatus(t, rec, http.StatusAccepted)
	for i, e := range f.pub.published()[0] {
		ts, err := time.Parse(event.TimeLayout, e.Timestamp)
		if err != nil {
			t.Fatalf("event %d: timestamp %q is not in layout %s", i, e.Timestamp, event.TimeLayout)
		}
		if ts.Before(before) || ts.After(after) {
			t.Errorf("event %d: timestamp %s, want between %s and %s", i, ts, before, after)
		}
	}
}

// TestPostEventsPublishOutlivesClient checks that a caller hanging up does
// not cut a publish short (it would leave a half-published batch).
func TestPostEventsPublishOutlivesClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "P")
	ctx, hangUp := context.WithCancel(context.Background())
	var pubErr error
	f.pub.onCall = func(pctx context.Context) {
		hangUp()
		pubErr = pctx.Err()
		if _, ok := pctx.Deadline(); !ok {
			pubErr = errors.New("publish context has no deadline")
		}
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/events", strings.NewReader(ev(t, nil)))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if pubErr != nil {
		t.Errorf("publish context after the client hung up: %v, want live with a deadline", pubErr)
	}
	checkStatus(t, rec, http.StatusAccepted)
}

func TestPostEventsLooksUpEachProducerOnce(t *testing.T) {
	t.Parallel()
	var ids []string
	var events []string
	for i := range 40 {
		id := fmt.Sprintf("p%02d", i)
		ids = append(ids, id)
		events = append(events, ev(t, map[string]any{"agentId": id}), ev(t, map[string]any{"agentId": id}))
	}
	f := newFixture(t, Config{}, ids...)
	checkStatus(t, f.doJSON(t, http.MethodPost, "/events", batch(events...)), http.StatusAccepted)
	_, looked := f.agents.calls()
	seen := map[string]int{}
	for _, id := range looked {
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("producer %s looked up %d times, want once", id, seen[id])
		}
	}
}

func sameEvent(a, b event.Event) bool {
	return a.EventID == b.EventID && a.AgentID == b.AgentID && a.Timestamp == b.Timestamp &&
		a.EventType == b.EventType && string(a.Data) == string(b.Data) && a.GeneratedID == b.GeneratedID
}
