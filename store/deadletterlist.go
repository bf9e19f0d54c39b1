package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// noOwner stands in the producer and subscriber attributes of a dead
// letter that has none: every index key attribute is written (the
// emulator ignores sparse indexes), and no agent id is "-".
const noOwner = "-"

// listAll is the one value of attrListAll.
const listAll = "all"

// deadLetterIndexes returns the index attributes PutDeadLetter adds to d's
// item.
func deadLetterIndexes(d DeadLetter) map[string]types.AttributeValue {
	or := func(v string) string {
		if v == "" {
			return noOwner
		}
		return v
	}
	return map[string]types.AttributeValue{
		attrListKey:      attrS(ListKey(d)),
		attrListAll:      attrS(listAll),
		attrProducerID:   attrS(or(d.ProducerID)),
		attrSubscriberID: attrS(or(d.SubscriberID)),
	}
}

// ListKey is where d sorts among dead letters: by time, then, within a
// millisecond, by sequence number (left-padded, so that a shard's letters
// keep the order of its records), then by the rest of the time, to the
// nanosecond (the events of one packed item share its record, and are set
// aside one after another, in order), then by id.
func ListKey(d DeadLetter) string {
	seq := d.Seq
	if len(seq) < seqWidth {
		seq = strings.Repeat("0", seqWidth-len(seq)) + seq
	}
	return formatTime(d.At) + "#" + seq + "#" + fmt.Sprintf("%06d", d.At.Nanosecond()%int(time.Millisecond)) + "#" + d.ID
}

// seqWidth is more digits than any Kinesis or DynamoDB Streams sequence
// number has (up to 56 and 40).
const seqWidth = 64

// ErrBadCursor: a list cursor that no page of this query handed out.
var ErrBadCursor = fmt.Errorf("%w: the cursor is not one this listing returned; start again without it", ErrRejected)

// ListDeadLetters returns one page of the dead letters q selects, newest
// first, and the cursor of the next page ("" after the last). It queries
// the index of the most selective field given (subscriber, producer,
// stage, else all), filtering on the others. Indexes are eventually
// consistent: a dead letter written a moment ago may be missing.
func (s *Store) ListDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultDeadLetterPage
	}
	limit = min(limit, MaxDeadLetterPage)
	index, attr, value := indexDeadLettersAll, attrListAll, listAll
	switch {
	case q.SubscriberID != "":
		index, attr, value = indexDeadLettersSubscriber, attrSubscriberID, q.SubscriberID
	case q.ProducerID != "":
		index, attr, value = indexDeadLettersProducer, attrProducerID, q.ProducerID
	case q.Stage != "":
		index, attr, value = indexDeadLettersStage, attrStage, q.Stage
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.DeadLetters),
		IndexName:                 aws.String(index),
		KeyConditionExpression:    aws.String("#k = :k"),
		ExpressionAttributeNames:  map[string]string{"#k": attr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": attrS(value)},
		ScanIndexForward:          aws.Bool(false),
		Limit:                     s.pageLimit(),
	}
	if q.Cursor != "" {
		key, err := decodeCursor(q.Cursor, attr)
		if err != nil {
			return nil, "", err
		}
		in.ExclusiveStartKey = key
	}
	var out []DeadLetter
	var last map[string]types.AttributeValue
	for {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, "", fmt.Errorf("list dead letters: query table %s index %s: %w", s.tables.DeadLetters, index, rejectable(err))
		}
		for _, it := range page.Items {
			d, err := s.decodeDeadLetter(it)
			if err != nil {
				return nil, "", err
			}
			last = it
			if (q.Stage != "" && d.Stage != q.Stage) || (q.ProducerID != "" && d.ProducerID != q.ProducerID) {
				continue
			}
			out = append(out, d)
			if len(out) == limit {
				return out, encodeCursor(last, attr), nil
			}
		}
		if page.LastEvaluatedKey == nil {
			return out, "", nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// cursor is what a list cursor holds: the last item's keys in the index.
type cursor struct {
	ID, ListKey, Partition string
}

func encodeCursor(it map[string]types.AttributeValue, partition string) string {
	r := reader{item: it}
	b, _ := json.Marshal(cursor{ID: r.str(attrID), ListKey: r.str(attrListKey), Partition: r.str(partition)})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c, partition string) (map[string]types.AttributeValue, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	var cur cursor
	if err != nil || json.Unmarshal(b, &cur) != nil || cur.ID == "" || cur.ListKey == "" || cur.Partition == "" {
		return nil, ErrBadCursor
	}
	return map[string]types.AttributeValue{attrID: attrS(cur.ID), attrListKey: attrS(cur.ListKey), partition: attrS(cur.Partition)}, nil
}

// DeadLetter returns the dead letter id, read consistently. The error
// wraps ErrNotFound when there is none.
func (s *Store) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	if id == "" || len(id) > maxPartitionKeyBytes {
		return DeadLetter{}, fmt.Errorf("get dead letter %q: %w", id, ErrNotFound)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.tables.DeadLetters),
		Key:            map[string]types.AttributeValue{attrID: attrS(id)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return DeadLetter{}, fmt.Errorf("get dead letter %s from table %s: %w", id, s.tables.DeadLetters, err)
	}
	if out.Item == nil {
		return DeadLetter{}, fmt.Errorf("get dead letter %s: %w", id, ErrNotFound)
	}
	return s.decodeDeadLetter(out.Item)
}

// DeleteDeadLetter discards the dead letter id. It is idempotent.
func (s *Store) DeleteDeadLetter(ctx context.Context, id string) error {
	if id == "" || len(id) > maxPartitionKeyBytes {
		return nil
	}
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.tables.DeadLetters),
		Key:       map[string]types.AttributeValue{attrID: attrS(id)},
	})
	if err != nil {
		return fmt.Errorf("delete dead letter %s from table %s: %w", id, s.tables.DeadLetters, err)
	}
	return nil
}

// MarkRedriven records that the dead letter id was redriven at at. The
// error wraps ErrNotFound when it is gone (deleted meanwhile).
func (s *Store) MarkRedriven(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.tables.DeadLetters),
		Key:                       map[string]types.AttributeValue{attrID: attrS(id)},
		UpdateExpression:          aws.String("SET #r = :r"),
		ConditionExpression:       aws.String("attribute_exists(#id)"),
		ExpressionAttributeNames:  map[string]string{"#r": attrRedrivenAt, "#id": attrID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":r": attrS(formatTime(at))},
	})
	switch {
	case err == nil:
		return nil
	case hasCode(err, codeConditionalCheckFailed):
		return fmt.Errorf("mark dead letter %s redriven: %w", id, ErrNotFound)
	}
	return fmt.Errorf("mark dead letter %s redriven in table %s: %w", id, s.tables.DeadLetters, err)
}
