// Package event says what a fanout event is and what an agent receives
// for it: the Event a producer publishes (posted to the API or put straight
// into Kinesis) with the rules and limits every event follows, the Kinesis
// record format that carries events, and the SQS message body delivered to
// each subscriber. server, pipeline and store all use it; it uses nothing
// of theirs.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ErrUnavailable means the event stream did not take the events after
// retries; the caller should answer 503 and the producer may retry.
var ErrUnavailable = errors.New("event stream unavailable")

// ErrTooLarge means an event is larger than MaxBytes.
var ErrTooLarge = errors.New("event too large")

// Limits of one event, the same whether it is posted to the API or put
// straight into Kinesis.
const (
	// MaxBytes bounds an event's JSON encoding: it must fit, with the
	// delivery fields, in one SQS message at the 256 KiB that SQS allowed
	// before 2025 (and emulators and older queues still do; SQS now takes
	// 1 MiB) and, with its keys, in one DynamoDB item (400 KB).
	MaxBytes = 250 << 10
	// MaxAgentIDLen is the Kinesis partition key limit (agentId is it).
	MaxAgentIDLen = 256
	// MaxTypeLen bounds eventType (characters), keeping it a label.
	MaxTypeLen = 256
	// MaxIDLen bounds an eventId: it is part of the SubscriberEvents
	// sort key (1 KiB at most) and of dead-letter ids.
	MaxIDLen = 128
)

// Event is a producer event as carried in a Kinesis record's data. Records
// put straight into Kinesis by producers have the same JSON, usually without
// eventId.
//
// An event is identified by (AgentID, EventID): a producer that sends an
// event again with the same eventId (a retry) has it delivered once.
type Event struct {
	EventID   string          `json:"eventId,omitempty"`
	AgentID   string          `json:"agentId"`
	Timestamp string          `json:"timestamp"`
	EventType string          `json:"eventType"`
	Data      json.RawMessage `json:"data"`
	// GeneratedID says that fanout chose EventID (the API for an event
	// posted without one, ParseRecord for a record without one): unique by
	// construction, so no check for a repeat is needed. A producer that
	// sets it on a record of its own opts out of that check.
	GeneratedID bool `json:"generatedId,omitempty"`
}

// ContentHash identifies the event's content, its eventType and data,
// whatever its id and timestamp: two copies of an event that differ only in
// when they were sent hash alike.
func (e Event) ContentHash() string {
	h := sha256.New()
	h.Write([]byte(e.EventType))
	h.Write([]byte{0})
	h.Write(e.Data)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Receipt says where an accepted event landed.
type Receipt struct {
	EventID        string `json:"eventId"`
	ShardID        string `json:"shardId"`
	SequenceNumber string `json:"sequenceNumber"`
}

// Normalize checks e against the limits above and rewrites its timestamp
// in TimeLayout (an empty one becomes now). An empty EventID is
// allowed (the caller assigns one); a missing Data becomes null. The error
// says what to fix; it wraps ErrTooLarge when e is too large.
func (e *Event) Normalize(now time.Time) error {
	switch {
	case e.AgentID == "":
		return errors.New("agentId is required: the producer's agent id")
	case len(e.AgentID) > MaxAgentIDLen:
		return fmt.Errorf("agentId is longer than %d bytes, the Kinesis partition key limit", MaxAgentIDLen)
	case e.EventType == "":
		return errors.New("eventType is required")
	case utf8.RuneCountInString(e.EventType) > MaxTypeLen:
		return fmt.Errorf("eventType must be at most %d characters", MaxTypeLen)
	case e.EventID != "" && !ValidID(e.EventID):
		return fmt.Errorf("eventId must be 1 to %d characters of A-Z a-z 0-9 . _ : -", MaxIDLen)
	}
	ts, err := NormalizeTimestamp(e.Timestamp, now)
	if err != nil {
		return err
	}
	e.Timestamp = ts
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("null")
	}
	// Store and deliver the data compact, as it is measured.
	var data bytes.Buffer
	if err := json.Compact(&data, e.Data); err != nil {
		return fmt.Errorf("data is not valid JSON: %v", err)
	}
	e.Data = data.Bytes()
	enc, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("data cannot be encoded: %v", err)
	}
	if len(enc) > MaxBytes {
		return fmt.Errorf("%w: %d bytes encoded, at most %d: make data smaller", ErrTooLarge, len(enc), MaxBytes)
	}
	return nil
}

// TimeLayout is how fanout writes times (event timestamps, and the
// times the API shows and the store keeps): RFC 3339 in UTC with exactly
// milliseconds, so they sort as strings.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// NormalizeTimestamp parses an RFC 3339 timestamp (any offset, any
// precision) and rewrites it in TimeLayout, truncating finer
// precision; an empty one becomes now (the zero time means time.Now).
func NormalizeTimestamp(ts string, now time.Time) (string, error) {
	if ts == "" {
		if now.IsZero() {
			now = time.Now()
		}
		return now.UTC().Format(TimeLayout), nil
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "", fmt.Errorf("timestamp must be RFC 3339, e.g. 2025-07-01T12:00:00.000Z (got %q)", ts)
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return "", fmt.Errorf("timestamp must fall in the years 0000 to 9999 once in UTC (got %q)", ts)
	}
	return t.UTC().Format(TimeLayout), nil
}

// ValidID reports whether s may be an eventId.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
