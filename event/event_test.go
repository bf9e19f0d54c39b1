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
