package event

import (
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
