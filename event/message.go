package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Message is the body of the SQS message a subscriber receives for one
// event: the event and what the agent needs to process it idempotently.
// EventID is the same for every subscriber and on every redelivery.
type Message struct {
	EventID      string          `json:"eventId"`
	AgentID      string          `json:"agentId"` // the producer
	SubscriberID string          `json:"subscriberId"`
	Timestamp    string          `json:"timestamp"`
	EventType    string          `json:"eventType"`
	Data         json.RawMessage `json:"data"`
	// Replayed and ReplayID mark a message re-delivered by a replay
	// (POST /agents/{id}/replays); a live message has neither, so its
	// body is the same as before replays existed.
	Replayed bool   `json:"replayed,omitempty"`
	ReplayID string `json:"replayId,omitempty"`
}

// NewMessage is the message subscriberID receives for e.
func NewMessage(e Event, subscriberID string) Message {
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("null")
	}
	return Message{EventID: e.EventID, AgentID: e.AgentID, SubscriberID: subscriberID, Timestamp: e.Timestamp, EventType: e.EventType, Data: e.Data}
}

// DeduplicationID is the SQS MessageDeduplicationId of an event: derived
// from the producer and eventId only, so every re-send of the event to a
// queue (replay after a crash, retry) is dropped by SQS within its
// five-minute window. The hash keeps producer-chosen ids within SQS's
// 128-character alphabet and keeps two producers' ids apart.
func DeduplicationID(producerID, eventID string) string {
	sum := sha256.Sum256([]byte(producerID + "\x00" + eventID))
	return hex.EncodeToString(sum[:])
}

// ReplayDeduplicationID is the SQS MessageDeduplicationId of an event
// re-delivered by replay replayID: not the live message's, so SQS does not
// drop the replayed copy as a repeat of it, yet the same for every re-send
// of that replay's copy (a task taking the replay over resends from its
// last recorded position), which SQS drops within its five-minute window.
func ReplayDeduplicationID(replayID, producerID, eventID string) string {
	sum := sha256.Sum256([]byte("replay\x00" + replayID + "\x00" + producerID + "\x00" + eventID))
	return hex.EncodeToString(sum[:])
}
