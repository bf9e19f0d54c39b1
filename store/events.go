package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// eventTTL is how long a SubscriberEvents item is kept. The publisher reads
// it from the table's stream within seconds and the stream keeps records
// for 24 h; 7 days leaves operators a week to see what was fanned out
// while the table stays bounded.
const eventTTL = 7 * 24 * time.Hour

// PutEvent writes e as one SubscriberEvents item, unless the item is there
// already: a replay writes nothing and returns created == false. It uses a
// single PutItem on purpose: the table's stream then carries one record per
// new event, and a caller that writes one subscriber's events one at a time
// gets them in the stream in that order.
//
// The error wraps ErrRejected when the event can never be written: a
// subscriber, producer or event id or the timestamp is missing, the item
// would be over DynamoDB's 400 KB or its keys too long (checked without
// calling AWS, since records put straight into Kinesis bypass the API's
// limits), or DynamoDB refuses the item as invalid.
func (s *Store) PutEvent(ctx context.Context, e SubscriberEvent) (created bool, err error) {
	if e.SubscriberID == "" || e.AgentID == "" || e.EventID == "" || e.Timestamp == "" {
		return false, fmt.Errorf("put event %s of producer %s for subscriber %s: %w: subscriber id, producer id, event id and timestamp are required", e.EventID, e.AgentID, e.SubscriberID, ErrRejected)
	}
	item := map[string]types.AttributeValue{
		attrSubscriberID:   attrS(e.SubscriberID),
		attrEventSortKey:   attrS(eventSortKey(e)),
		attrEventID:        attrS(e.EventID),
		attrProducerID:     attrS(e.AgentID),
		attrEventType:      attrS(e.EventType),
		attrEventTimestamp: attrS(e.Timestamp),
		attrData:           attrS(string(e.Data)),
		attrShardID:        attrS(e.ShardID),
		attrSeq:            attrS(e.Seq),
		attrIndex:          attrN(int64(e.Index)),
		attrExpiresAt:      attrN(s.now().Add(eventTTL).Unix()),
	}
	if !e.Arrived.IsZero() {
		item[attrArrivedAt] = attrN(e.Arrived.UnixMilli())
	}
	if err := checkItem(item, attrSubscriberID, attrEventSortKey); err != nil {
		return false, fmt.Errorf("put event %s of producer %s for subscriber %s: %w", e.EventID, e.AgentID, e.SubscriberID, err)
	}
	created, err = putIfAbsent(ctx, s.db, s.tables.SubscriberEvents, item, attrSubscriberID)
	if err == nil {
		return created, nil
	}
	return false, fmt.Errorf("put event %s of producer %s for subscriber %s into table %s: %w", e.EventID, e.AgentID, e.SubscriberID, s.tables.SubscriberEvents, rejectable(err))
}

// eventSortKey is the timestamp as published, '#', the producer id, '#' and
// the event id. Events sort by time (timestamps are RFC 3339 UTC with
// milliseconds), and events of one millisecond keep separate items even
// when two producers chose the same event id. The key is unique as long
// as timestamps and event ids have no '#', which the pipeline's (RFC 3339
// timestamps, event ids of A-Z a-z 0-9 . _ : -) do not.
func eventSortKey(e SubscriberEvent) string {
	return e.Timestamp + "#" + e.AgentID + "#" + e.EventID
}

// DecodeEventImage decodes the NewImage of a SubscriberEvents stream record,
// given as plain JSON: the image converted with the dynamodbstreams
// attributevalue package's UnmarshalMap into a map[string]any, then
// json.Marshal'ed. It returns the item's events in order: those of a
// packed item (PutEventRun), or the one event of a one-event item
// (PutEvent, and fanout before packing). Data comes back byte for byte as
// written.
func DecodeEventImage(image []byte) ([]SubscriberEvent, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(image, &m); err != nil {
		return nil, fmt.Errorf("decode event image: %w", err)
	}
	format, err := imageFormat(m)
	switch {
	case err != nil:
		return nil, fmt.Errorf("decode event image: %w", err)
	case format == runFormat:
		events, err := decodeImageRun(m)
		if err != nil {
			return nil, fmt.Errorf("decode event image: %w", err)
		}
		return events, nil
	case format != 1:
		return nil, fmt.Errorf("decode event image: item format %d is newer than this version of fanout reads", format)
	}
	e, err := decodeOneEventImage(m)
	if err != nil {
		return nil, err
	}
	return []SubscriberEvent{e}, nil
}

// decodeOneEventImage decodes the image of a one-event item.
func decodeOneEventImage(m map[string]json.RawMessage) (SubscriberEvent, error) {
	var (
		e    SubscriberEvent
		data string
		errs []error
	)
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{attrEventID, &e.EventID},
		{attrProducerID, &e.AgentID},
		{attrSubscriberID, &e.SubscriberID},
		{attrEventType, &e.EventType},
		{attrEventTimestamp, &e.Timestamp},
		{attrData, &data},
		{attrShardID, &e.ShardID},
		{attrSeq, &e.Seq},
	} {
		raw, ok := m[f.name]
		if !ok {
			errs = append(errs, fmt.Errorf("no attribute %s", f.name))
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			errs = append(errs, fmt.Errorf("attribute %s: %w", f.name, err))
		}
	}
	if raw, ok := m[attrArrivedAt]; ok {
		var ms int64
		if err := json.Unmarshal(raw, &ms); err != nil {
			errs = append(errs, fmt.Errorf("attribute %s: %w", attrArrivedAt, err))
		}
		e.Arrived = time.UnixMilli(ms).UTC()
	}
	if err := errors.Join(errs...); err != nil {
		return SubscriberEvent{}, fmt.Errorf("decode event image (event %s, subscriber %s): %w", e.EventID, e.SubscriberID, err)
	}
	e.Data = json.RawMessage(data)
	return e, nil
}
