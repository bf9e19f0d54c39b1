package pipeline

import (
	"encoding/json"
	"errors"
)

// ErrUnavailable means Kinesis did not take the events after retries; the
// caller should answer 503 and the producer may retry.
var ErrUnavailable = errors.New("event stream unavailable")

// Event is a producer event as carried in a Kinesis record's data. Records
// put straight into Kinesis by producers have the same JSON, usually without
// eventId.
type Event struct {
	EventID   string          `json:"eventId,omitempty"`
	AgentID   string          `json:"agentId"`
	Timestamp string          `json:"timestamp"`
	EventType string          `json:"eventType"`
	Data      json.RawMessage `json:"data"`
}

// Receipt says where an accepted event landed.
type Receipt struct {
	EventID        string `json:"eventId"`
	ShardID        string `json:"shardId"`
	SequenceNumber string `json:"sequenceNumber"`
}
