package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// PutDeadLetter sets d aside, unless a dead letter with d.ID is there
// already: a replay adds nothing and returns created == false. A zero d.At
// is stored as the current time.
func (s *Store) PutDeadLetter(ctx context.Context, d DeadLetter) (created bool, err error) {
	if d.ID == "" {
		return false, fmt.Errorf("put dead letter (shard %s, seq %s): id is required", d.ShardID, d.Seq)
	}
	if d.At.IsZero() {
		d.At = s.now()
	}
	it := map[string]types.AttributeValue{
		attrID:        attrS(d.ID),
		attrStage:     attrS(d.Stage),
		attrReason:    attrS(d.Reason),
		attrShardID:   attrS(d.ShardID),
		attrSeq:       attrS(d.Seq),
		attrCreatedAt: attrS(formatTime(d.At)),
	}
	if len(d.Data) > 0 {
		it[attrData] = &types.AttributeValueMemberB{Value: d.Data}
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(s.tables.DeadLetters),
		Item:                     it,
		ConditionExpression:      aws.String("attribute_not_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": attrID},
	})
	switch {
	case err == nil:
		return true, nil
	case hasCode(err, codeConditionalCheckFailed):
		return false, nil
	}
	return false, fmt.Errorf("put dead letter %s (shard %s, seq %s) into table %s: %w", d.ID, d.ShardID, d.Seq, s.tables.DeadLetters, err)
}

// DeadLetters returns every dead letter, in no particular order. It scans
// the whole table: it is for operators and tests, not for a request path.
func (s *Store) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	in := &dynamodb.ScanInput{TableName: aws.String(s.tables.DeadLetters), ConsistentRead: aws.Bool(true)}
	if s.pageSize > 0 {
		in.Limit = aws.Int32(s.pageSize)
	}
	dls := []DeadLetter{}
	pages := dynamodb.NewScanPaginator(s.db, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("scan table %s: %w", s.tables.DeadLetters, err)
		}
		for _, it := range page.Items {
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
			if r.err != nil {
				return nil, fmt.Errorf("table %s: %w", s.tables.DeadLetters, r.err)
			}
			dls = append(dls, d)
		}
	}
	return dls, nil
}
