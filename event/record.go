package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// A Kinesis record carries one event as a JSON object (what producers put
// straight into the stream) or a JSON array of one producer's events, in
// order (what the API packs). EncodeRecord writes that format and
// ParseRecord reads it; nothing else spells it.

// EncodeRecord returns the data of one Kinesis record holding the given
// events, each already encoded as JSON, in order: a lone event as itself,
// several as an array.
func EncodeRecord(encoded [][]byte) []byte {
	if len(encoded) == 1 {
		return encoded[0]
	}
	size := 1 + len(encoded) // brackets and commas
	for _, e := range encoded {
		size += len(e)
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for i, e := range encoded {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// ErrNotEvent is wrapped by ParseRecord's error when the record is not an
// event or an array of them at all (not JSON, unknown fields), as opposed
// to events that break a rule.
var ErrNotEvent = errors.New("record is not an event")

// ParseRecord decodes the events of the Kinesis record at shardID/seq with
// partitionKey, which arrived at arrival. Every event is normalised
// (Normalize) and must be of the same producer, which must be the partition
// key (when there is one), or per-producer order is lost. A missing eventId
// is derived from the record's position (<shardId>:<seq>, plus :<index>
// within an array), so every replay yields the same ids; a missing
// timestamp becomes the arrival time. The error says what is wrong with
// the record; it is for a dead letter.
func ParseRecord(data []byte, partitionKey, shardID, seq string, arrival time.Time) ([]Event, error) {
	data = bytes.TrimSpace(data)
	var events []Event
	dec := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			return fmt.Errorf("%w: %v", ErrNotEvent, err)
		}
		if d.InputOffset() != int64(len(data)) { // d.More misses a stray '}' or ']'
			return fmt.Errorf("%w: data after the JSON value", ErrNotEvent)
		}
		return nil
	}
	switch {
	case len(data) > 0 && data[0] == '[':
		if err := dec(&events); err != nil {
			return nil, err
		}
		if len(events) == 0 {
			return nil, errors.New("record is an empty array")
		}
	default:
		var e Event
		if err := dec(&e); err != nil {
			return nil, err
		}
		events = []Event{e}
	}
	for i := range events {
		e := &events[i]
		if err := e.Normalize(arrival); err != nil {
			return nil, fmt.Errorf("event %d: %v", i, err)
		}
		if e.AgentID != events[0].AgentID {
			return nil, fmt.Errorf("event %d: agentId %q differs from the record's first event %q: one producer per record", i, e.AgentID, events[0].AgentID)
		}
		if partitionKey != "" && e.AgentID != partitionKey {
			return nil, fmt.Errorf("partition key %q is not the event's agentId %q: put records with PartitionKey = agentId, or order is lost", partitionKey, e.AgentID)
		}
		if e.EventID == "" {
			e.GeneratedID = true
			e.EventID = shardID + ":" + seq
			if len(events) > 1 {
				e.EventID += ":" + strconv.Itoa(i)
			}
		}
	}
	return events, nil
}
