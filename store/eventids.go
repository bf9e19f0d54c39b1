package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attributes of EventIDs that only this file writes.
const (
	// attrIndex is the event's index within its Kinesis record (in
	// SubscriberEvents too).
	attrIndex = "idx"
	// attrBodyHash identifies the event's content (eventType and data),
	// so that a dropped copy can be told apart from a changed event.
	attrBodyHash = "bodyHash"
)

// EventIDWindow is how long an event is identified by (producer, eventId):
// another event with the same pair within it is delivered to no one. It
// is the stream's retention (24 h in deploy/), so every copy a producer or
// a replay can still bring in falls within it. A claim past its expiry is
// free again, whether or not DynamoDB's TTL has deleted it yet.
const EventIDWindow = 24 * time.Hour

// EventPosition is where an event stands in the stream: its record's
// shard and sequence number and its index within the record.
type EventPosition struct {
	ShardID string
	Seq     string
	Index   int
}

func (p EventPosition) String() string {
	return p.ShardID + "/" + p.Seq + "/" + strconv.Itoa(p.Index)
}

// EventClaim says that ProducerID's EventID is the event at Position, whose
// content hashes to BodyHash.
type EventClaim struct {
	ProducerID string
	EventID    string
	Position   EventPosition
	BodyHash   string
}

// ClaimEventID records c as the event that c.EventID of c.ProducerID names,
// for EventIDWindow, unless an event at another position has it already.
// It returns the claim that holds the id: c itself when the id was free or
// held by c's own position (a replay of the same record after a crash or a
// lease move), else the earlier claim, whose event is the one to deliver.
// One conditional write decides, so two tasks processing the same records
// during a lease move agree. The error wraps ErrRejected when the claim
// can never be written (an id too long for a key).
func (s *Store) ClaimEventID(ctx context.Context, c EventClaim) (EventClaim, error) {
	pos := c.Position
	item := map[string]types.AttributeValue{
		attrProducerID: attrS(c.ProducerID),
		attrEventID:    attrS(c.EventID),
		attrShardID:    attrS(pos.ShardID),
		attrSeq:        attrS(pos.Seq),
		attrIndex:      attrN(int64(pos.Index)),
		attrBodyHash:   attrS(c.BodyHash),
		attrExpiresAt:  attrN(s.now().Add(EventIDWindow).Unix()),
	}
	what := fmt.Sprintf("claim event id %s of producer %s at %s", c.EventID, c.ProducerID, pos)
	if err := checkItem(item, attrProducerID, attrEventID); err != nil {
		return EventClaim{}, fmt.Errorf("%s: %w", what, err)
	}
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.tables.EventIDs),
		Item:      item,
		// Free, expired (TTL deletes an item only some time after it
		// expires: the window stays exact), or this very position's.
		ConditionExpression: aws.String("attribute_not_exists(#p) OR #exp < :now OR (#shard = :shard AND #seq = :seq AND #idx = :idx)"),
		ExpressionAttributeNames: map[string]string{
			"#p": attrProducerID, "#shard": attrShardID, "#seq": attrSeq, "#idx": attrIndex, "#exp": attrExpiresAt,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":shard": attrS(pos.ShardID), ":seq": attrS(pos.Seq), ":idx": attrN(int64(pos.Index)),
			":now": attrN(s.now().Unix()),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return c, nil
	}
	if !hasCode(err, codeConditionalCheckFailed) {
		return EventClaim{}, fmt.Errorf("%s in table %s: %w", what, s.tables.EventIDs, rejectable(err))
	}
	var ccf *types.ConditionalCheckFailedException
	old := map[string]types.AttributeValue(nil)
	if errors.As(err, &ccf) {
		old = ccf.Item
	}
	if old == nil { // endpoints that do not return the item (the emulator)
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(s.tables.EventIDs),
			Key:            map[string]types.AttributeValue{attrProducerID: attrS(c.ProducerID), attrEventID: attrS(c.EventID)},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return EventClaim{}, fmt.Errorf("%s: read the claim that holds it: %w", what, err)
		}
		if out.Item == nil { // expired and deleted in between: try again
			return EventClaim{}, fmt.Errorf("%s: the claim that held it is gone; retry", what)
		}
		old = out.Item
	}
	r := reader{item: old}
	owner := EventClaim{
		ProducerID: r.str(attrProducerID),
		EventID:    r.str(attrEventID),
		Position:   EventPosition{ShardID: r.str(attrShardID), Seq: r.str(attrSeq), Index: r.number(attrIndex, 0)},
		BodyHash:   r.str(attrBodyHash),
	}
	if r.err != nil {
		return EventClaim{}, fmt.Errorf("%s: table %s: %w", what, s.tables.EventIDs, r.err)
	}
	return owner, nil
}
