package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	t.Parallel()
	arrival := time.Date(2025, 7, 1, 12, 30, 45, 678_900_000, time.UTC)
	ev := func(id, producer, ts, eventType, data string) Event {
		return Event{EventID: id, AgentID: producer, Timestamp: ts, EventType: eventType, Data: json.RawMessage(data)}
	}
	generated := func(e Event) Event { e.GeneratedID = true; return e }
	const ts = "2025-07-01T12:00:00.000Z"
	for _, tc := range []struct {
		name    string
		key     string
		arrival time.Time
		data    string
		want    []Event
		wantErr string
	}{
		{
			name: "object",
			key:  "P",
			data: `{"eventId":"e1","agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":{"a":[1,2]}}`,
			want: []Event{ev("e1", "P", ts, "t", `{"a":[1,2]}`)},
		},
		{
			name: "object with surrounding space",
			key:  "P",
			data: " \n" + `{"eventId":"e1","agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":1}` + "\n",
			want: []Event{ev("e1", "P", ts, "t", `1`)},
		},
		{
			name: "array",
			key:  "P",
			data: `[{"eventId":"e1","agentId":"P","timestamp":"2025-07-01T12:00:00Z","eventType":"t","data":"x"},{"eventId":"e2","agentId":"P","timestamp":"2025-07-01T12:00:00Z","eventType":"u","data":null}]`,
			want: []Event{ev("e1", "P", ts, "t", `"x"`), ev("e2", "P", ts, "u", `null`)},
		},
		{
			name: "timestamp normalised",
			key:  "P",
			data: `{"eventId":"e1","agentId":"P","timestamp":"2025-07-01T14:00:00.123456+02:00","eventType":"t","data":{}}`,
			want: []Event{ev("e1", "P", "2025-07-01T12:00:00.123Z", "t", `{}`)},
		},
		{
			name:    "missing timestamp is the arrival time",
			key:     "P",
			arrival: arrival,
			data:    `{"eventId":"e1","agentId":"P","eventType":"t","data":{}}`,
			want:    []Event{ev("e1", "P", "2025-07-01T12:30:45.678Z", "t", `{}`)},
		},
		{
			name: "missing data is null",
			key:  "P",
			data: `{"eventId":"e1","agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t"}`,
			want: []Event{ev("e1", "P", ts, "t", `null`)},
		},
		{
			name: "missing eventId is the record's position",
			key:  "P",
			data: `{"agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":1}`,
			want: []Event{generated(ev("shardId-9:42", "P", ts, "t", `1`))},
		},
		{
			name: "missing eventIds in an array",
			key:  "P",
			data: `[{"agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":1},{"eventId":"mine","agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":2},{"agentId":"P","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":3}]`,
			want: []Event{generated(ev("shardId-9:42:0", "P", ts, "t", `1`)), ev("mine", "P", ts, "t", `2`), generated(ev("shardId-9:42:2", "P", ts, "t", `3`))},
		},
		{name: "garbage", key: "P", data: `hello`, wantErr: "record is not an event"},
		{name: "empty record", key: "P", data: ``, wantErr: "record is not an event"},
		{name: "JSON null", key: "P", data: `null`, wantErr: "agentId is required"},
		{name: "not an object", key: "P", data: `"P"`, wantErr: "record is not an event"},
		{name: "empty array", key: "P", data: `[]`, wantErr: "empty array"},
		{name: "two values", key: "P", data: `{"agentId":"P","eventType":"t"} {"agentId":"P","eventType":"t"}`, wantErr: "data after"},
		{name: "trailing brace", key: "P", data: `{"agentId":"P","eventType":"t"}}`, wantErr: "record is not an event"},
		{name: "trailing bracket", key: "P", data: `[{"agentId":"P","eventType":"t"}]]`, wantErr: "record is not an event"},
		{name: "missing agentId", key: "P", data: `{"eventType":"t"}`, wantErr: "event 0: agentId is required"},
		{name: "missing eventType", key: "P", data: `[{"agentId":"P","eventType":"t"},{"agentId":"P"}]`, wantErr: "event 1: eventType is required"},
		{name: "partition key is not agentId", key: "Q", data: `{"agentId":"P","eventType":"t"}`, wantErr: `partition key "Q" is not the event's agentId "P"`},
		{name: "mixed producers", key: "P", data: `[{"agentId":"P","eventType":"t"},{"agentId":"Q","eventType":"t"}]`, wantErr: `event 1: agentId "Q" differs`},
		{name: "bad timestamp", key: "P", data: `{"agentId":"P","eventType":"t","timestamp":"yesterday"}`, wantErr: `timestamp must be RFC 3339, e.g. 2025-07-01T12:00:00.000Z (got "yesterday")`},
		{name: "unknown field", key: "P", data: `{"agentId":"P","eventType":"t","extra":1}`, wantErr: "unknown field"},
		// The limits every event follows, posted or put straight in.
		{name: "eventId with a space", key: "P", data: `{"eventId":"a b","agentId":"P","eventType":"t"}`, wantErr: "eventId must be 1 to 128 characters"},
		{name: "eventId too long", key: "P", data: `{"eventId":"` + strings.Repeat("x", MaxIDLen+1) + `","agentId":"P","eventType":"t"}`, wantErr: "eventId must be 1 to 128 characters"},
		{name: "eventType too long", key: "P", data: `{"agentId":"P","eventType":"` + strings.Repeat("x", MaxTypeLen+1) + `"}`, wantErr: "eventType must be at most 256 characters"},
		{name: "event too large", key: "P", data: `{"agentId":"P","eventType":"t","data":"` + strings.Repeat("x", MaxBytes) + `"}`, wantErr: "event too large"},
		{name: "timestamp out of range", key: "P", data: `{"agentId":"P","eventType":"t","timestamp":"9999-12-31T23:59:59-01:00"}`, wantErr: "years 0000 to 9999"},
		{name: "wrong type", key: "P", data: `{"agentId":7,"eventType":"t"}`, wantErr: "record is not an event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRecord([]byte(tc.data), tc.key, "shardId-9", "42", tc.arrival)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseRecord(%s) = %+v, %v; want an error containing %q", tc.data, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecord(%s): %v", tc.data, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRecord(%s) =\n%+v\nwant\n%+v", tc.data, got, tc.want)
			}
		})
	}
}

func TestNormalizeTimestamp(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 7, 1, 14, 0, 0, 999_999_999, time.FixedZone("CEST", 2*3600))
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "2025-07-01T12:00:00.000Z", want: "2025-07-01T12:00:00.000Z"},
		{in: "2025-07-01T12:00:00Z", want: "2025-07-01T12:00:00.000Z"},
		{in: "2025-07-01T12:00:00.5Z", want: "2025-07-01T12:00:00.500Z"},
		{in: "2025-07-01T12:00:00.123456789Z", want: "2025-07-01T12:00:00.123Z"},
		{in: "2025-07-01T00:30:00.000+01:00", want: "2025-06-30T23:30:00.000Z"},
		{in: "2025-07-01T12:00:00.000-07:30", want: "2025-07-01T19:30:00.000Z"},
		{in: "", want: "2025-07-01T12:00:00.999Z"},
		{in: "2025-07-01", wantErr: true},
		{in: "2025-07-01 12:00:00Z", wantErr: true},
		{in: "1751371200", wantErr: true},
		{in: "2025-13-01T12:00:00Z", wantErr: true},
	} {
		got, err := NormalizeTimestamp(tc.in, now)
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("NormalizeTimestamp(%q) = %q, want an error", tc.in, got)
		case !tc.wantErr && (err != nil || got != tc.want):
			t.Errorf("NormalizeTimestamp(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	// The zero time means the current time.
	before := time.Now().UTC().Truncate(time.Millisecond)
	got, err := NormalizeTimestamp("", time.Time{})
	after := time.Now().UTC()
	ts, perr := time.Parse(TimeLayout, got)
	if err != nil || perr != nil || ts.Before(before) || ts.After(after) {
		t.Errorf("NormalizeTimestamp(\"\", zero) = %q, %v; want the current time (between %v and %v) in TimeLayout", got, err, before, after)
	}
}
