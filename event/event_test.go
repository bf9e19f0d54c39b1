package event

import (
	"strings"
	"testing"
	"time"
)

// TestNormalizeCompactsData: data is measured, stored and delivered in its
// compact form, so a pretty-printed event is treated like the same event
// posted through the API (whose JSON encoding compacts it).
func TestNormalizeCompactsData(t *testing.T) {
	pretty := "{\n  \"a\": [1, 2],\n  \"b\": " + `"` + strings.Repeat("x", MaxBytes-200) + `"` + strings.Repeat(" ", MaxBytes) + "\n}"
	e := Event{AgentID: "P", EventType: "t", Data: []byte(pretty)}
	if err := e.Normalize(time.Now()); err != nil {
		t.Fatalf("Normalize(pretty data that fits once compact) = %v", err)
	}
	if got := string(e.Data[:13]); got != `{"a":[1,2],"b` {
		t.Errorf("data starts %q, want it compact", got)
	}
	if len(e.Data) >= MaxBytes {
		t.Errorf("data is %d bytes, want it compact (< %d)", len(e.Data), MaxBytes)
	}
	bad := Event{AgentID: "P", EventType: "t", Data: []byte(`{"a":`)}
	if err := bad.Normalize(time.Now()); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Normalize(truncated JSON) = %v, want an error saying so", err)
	}
}

func TestContentHash(t *testing.T) {
	e := Event{EventID: "a", AgentID: "P", Timestamp: "2025-07-01T12:00:00.000Z", EventType: "t", Data: []byte(`{"n":1}`)}
	retry := e
	retry.Timestamp, retry.EventID = "2025-07-01T12:00:01.000Z", "b"
	if e.ContentHash() != retry.ContentHash() {
		t.Error("copies differing only in id and timestamp hash differently")
	}
	for _, changed := range []Event{
		{EventType: "u", Data: e.Data},
		{EventType: "t", Data: []byte(`{"n":2}`)},
		{EventType: "t\x00", Data: []byte(`"n":1}`)}, // the separator keeps fields apart
	} {
		if changed.ContentHash() == e.ContentHash() {
			t.Errorf("event %q/%s hashes like %q/%s", changed.EventType, changed.Data, e.EventType, e.Data)
		}
	}
}
