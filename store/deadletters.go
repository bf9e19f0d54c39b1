package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attributes of DeadLetters that only this file writes.
const (
	// attrDataBytes is the length of the record before truncation.
	attrDataBytes = "dataBytes"
	// attrTruncated says whether data holds only the record's first
	// maxDeadLetterData bytes.
	attrTruncated = "truncated"
)

// Bounds that keep a dead letter under DynamoDB's 400 KB item limit
// whatever it sets aside: a Kinesis record can be up to 1 MiB.
const (
	// maxDeadLetterData is how much of a record is kept: 256 KiB, the
	// API's event limit, so an event the API took is kept whole.
	maxDeadLetterData = 256 << 10
	// maxDeadLetterReason bounds the reason, which may quote the record.
	maxDeadLetterReason = 4 << 10
	// reasonTruncated ends a reason that was cut to maxDeadLetterReason.
	reasonTruncated = " [truncated]"
)

// Bounded returns d as PutDeadLetter keeps it: Data cut to its first
// maxDeadLetterData (256 KiB) bytes, nil when empty; Reason cut to
// maxDeadLetterReason (4 KiB) bytes of valid UTF-8, ending in
// reasonTruncated when cut; DataBytes the length of d.Data and Truncated
// whether Data was cut. Other fields are left as they are.
func (d DeadLetter) Bounded() DeadLetter {
	d.DataBytes = len(d.Data)
	d.Truncated = len(d.Data) > maxDeadLetterData
	if d.Truncated {
		d.Data = d.Data[:maxDeadLetterData]
	}
	if len(d.Data) == 0 {
		d.Data = nil
	}
	d.Reason = truncateString(d.Reason, maxDeadLetterReason, reasonTruncated)
	return d
}

// PutDeadLetter sets d aside, unless a dead letter with d.ID is there
// already: a replay adds nothing and returns created == false. A zero d.At
// is stored as the current time. Data is cut to its first
// maxDeadLetterData (256 KiB) bytes and Reason to maxDeadLetterReason
// (4 KiB) bytes of valid UTF-8, and the item records the record's length
// and whether it was cut, so a dead letter always fits in an item.
//
// The error wraps ErrRejected when the dead letter can never be written:
// its id is empty, or its id, stage, shard id or sequence number are so
// long that the item is still too big, or DynamoDB refuses it as invalid.
func (s *Store) PutDeadLetter(ctx context.Context, d DeadLetter) (created bool, err error) {
	if d.ID == "" {
		return false, fmt.Errorf("put dead letter (shard %s, seq %s): %w: id is required", d.ShardID, d.Seq, ErrRejected)
	}
	if d.At.IsZero() {
		d.At = s.now()
	}
	d = d.Bounded()
	it := map[string]types.AttributeValue{
		attrID:        attrS(d.ID),
		attrStage:     attrS(d.Stage),
		attrReason:    attrS(d.Reason),
		attrShardID:   attrS(d.ShardID),
		attrSeq:       attrS(d.Seq),
		attrCreatedAt: attrS(formatTime(d.At)),
		attrDataBytes: attrN(int64(d.DataBytes)),
		attrTruncated: &types.AttributeValueMemberBOOL{Value: d.Truncated},
	}
	if len(d.Data) > 0 {
		it[attrData] = &types.AttributeValueMemberB{Value: d.Data}
	}
	if err := checkItem(it, attrID, ""); err != nil {
		return false, fmt.Errorf("put dead letter %s (shard %s, seq %s): %w", d.ID, d.ShardID, d.Seq, err)
	}
	created, err = putIfAbsent(ctx, s.db, s.tables.DeadLetters, it, attrID)
	if err == nil {
		return created, nil
	}
	return false, fmt.Errorf("put dead letter %s (shard %s, seq %s) into table %s: %w", d.ID, d.ShardID, d.Seq, s.tables.DeadLetters, rejectable(err))
}

// DeadLetters returns every dead letter, in no particular order. It scans
// the whole table: it is for operators and tests, not for a request path.
func (s *Store) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	in := &dynamodb.ScanInput{TableName: aws.String(s.tables.DeadLetters), ConsistentRead: aws.Bool(true)}
	return scanAll(ctx, s, in, s.decodeDeadLetter)
}

// decodeDeadLetter reads a DeadLetters item.
func (s *Store) decodeDeadLetter(it map[string]types.AttributeValue) (DeadLetter, error) {
	r := reader{item: it}
	d := DeadLetter{
		ID:      r.str(attrID),
		Stage:   r.str(attrStage),
		Reason:  r.str(attrReason),
		ShardID: r.str(attrShardID),
		Seq:     r.str(attrSeq),
		Data:    r.bytes(attrData),
		At:      r.time(attrCreatedAt),
	}
	// Dead letters written before truncation existed have neither
	// attribute, and their data is whole.
	d.DataBytes = r.number(attrDataBytes, len(d.Data))
	d.Truncated = r.boolean(attrTruncated)
	if r.err != nil {
		return DeadLetter{}, fmt.Errorf("table %s: %w", s.tables.DeadLetters, r.err)
	}
	return d, nil
}
