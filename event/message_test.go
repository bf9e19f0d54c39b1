package event

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDeduplicationID(t *testing.T) {
	t.Parallel()
	id := DeduplicationID("producer-1", "event-1")
	if again := DeduplicationID("producer-1", "event-1"); again != id {
		t.Errorf("DeduplicationID is not stable: %s, then %s", id, again)
	}
	if len(id) > 128 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("DeduplicationID = %q, want at most 128 characters SQS accepts", id)
	}
	for _, other := range [][2]string{{"producer-2", "event-1"}, {"producer-1", "event-2"}, {"producer-1e", "vent-1"}} {
		if DeduplicationID(other[0], other[1]) == id {
			t.Errorf("DeduplicationID(%q, %q) = DeduplicationID(producer-1, event-1)", other[0], other[1])
		}
	}
	long := DeduplicationID("p", strings.Repeat("é", 300))
	if len(long) > 128 {
		t.Errorf("DeduplicationID of a long eventId has %d characters, want at most 128", len(long))
	}
}

func TestReplayDeduplicationID(t *testing.T) {
	t.Parallel()
	id := ReplayDeduplicationID("r1", "producer-1", "event-1")
	if again := ReplayDeduplicationID("r1", "producer-1", "event-1"); again != id {
		t.Errorf("ReplayDeduplicationID is not stable: %s, then %s", id, again)
	}
	if id == DeduplicationID("producer-1", "event-1") {
		t.Error("a replayed message has the live message's deduplication id: SQS would drop it")
	}
	for _, other := range [][3]string{{"r2", "producer-1", "event-1"}, {"r1", "producer-2", "event-1"}, {"r1", "producer-1", "event-2"}, {"r1p", "roducer-1", "event-1"}} {
		if ReplayDeduplicationID(other[0], other[1], other[2]) == id {
			t.Errorf("ReplayDeduplicationID%v = ReplayDeduplicationID(r1, producer-1, event-1)", other)
		}
	}
	if len(id) > 128 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("ReplayDeduplicationID = %q, want at most 128 characters SQS accepts", id)
	}
}

// TestLiveMessageUnchanged: a live message's body has no replay fields.
func TestLiveMessageUnchanged(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(NewMessage(Event{EventID: "e", AgentID: "p", Timestamp: "2025-07-01T12:00:00.000Z", EventType: "t", Data: json.RawMessage(`{"a":1}`)}, "s"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"eventId":"e","agentId":"p","subscriberId":"s","timestamp":"2025-07-01T12:00:00.000Z","eventType":"t","data":{"a":1}}`
	if string(b) != want {
		t.Errorf("live message = %s, want %s", b, want)
	}
}
