package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// tombstoneTTL is how long an unsubscribed subscription is kept (as a
// tombstone) so that events that reached the stream while it was live are
// still delivered when the pipeline is behind. It covers Kinesis' extended
// retention (7 days): no older record can still be waiting.
const tombstoneTTL = 8 * 24 * time.Hour

// Subscribe makes subscriberID follow producerID. It is idempotent: a
// repeat keeps the subscription's original CreatedAt; subscribing again
// after an unsubscribe starts a new subscription. It does not check that
// either agent exists.
func (s *Store) Subscribe(ctx context.Context, producerID, subscriberID string) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.tables.Subscribers),
		Item: map[string]types.AttributeValue{
			attrProducerID:   attrS(producerID),
			attrSubscriberID: attrS(subscriberID),
			attrCreatedAt:    attrS(formatTime(s.now())),
		},
		ConditionExpression:      aws.String("attribute_not_exists(#p) OR attribute_exists(#d)"),
		ExpressionAttributeNames: map[string]string{"#p": attrProducerID, "#d": attrDeletedAt},
	})
	if err != nil && !hasCode(err, codeConditionalCheckFailed) {
		return fmt.Errorf("subscribe %s to producer %s: %w", subscriberID, producerID, err)
	}
	return nil
}

// Unsubscribe makes subscriberID stop following producerID. It is
// idempotent. The subscription is kept as a tombstone (DeletedAt set) for
// tombstoneTTL, so events that reached the stream before the unsubscribe
// are still delivered however far behind the pipeline is.
func (s *Store) Unsubscribe(ctx context.Context, producerID, subscriberID string) error {
	now := s.now()
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.tables.Subscribers),
		Key:                      subscriptionKey(producerID, subscriberID),
		UpdateExpression:         aws.String("SET #d = :d, #e = :e"),
		ConditionExpression:      aws.String("attribute_exists(#p) AND attribute_not_exists(#d)"),
		ExpressionAttributeNames: map[string]string{"#p": attrProducerID, "#d": attrDeletedAt, "#e": attrExpiresAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d": attrS(formatTime(now)),
			":e": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Add(tombstoneTTL).Unix(), 10)},
		},
	})
	if err != nil && !hasCode(err, codeConditionalCheckFailed) {
		return fmt.Errorf("unsubscribe %s from producer %s: %w", subscriberID, producerID, err)
	}
	return nil
}

// Subscribers returns every subscription to producerID, read consistently,
// ordered by subscriber id, ended ones (DeletedAt set) included: whether an
// event goes to a subscriber depends on when the event arrived.
func (s *Store) Subscribers(ctx context.Context, producerID string) ([]Subscription, error) {
	subs, err := s.querySubscriptions(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Subscribers),
		KeyConditionExpression:    aws.String("#k = :v"),
		ExpressionAttributeNames:  map[string]string{"#k": attrProducerID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": attrS(producerID)},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("subscribers of producer %s: %w", producerID, err)
	}
	return subs, nil
}

// Producers returns the live subscriptions of subscriberID, ordered by
// producer id. It reads a global secondary index, so a subscription made a
// moment ago may be missing.
func (s *Store) Producers(ctx context.Context, subscriberID string) ([]Subscription, error) {
	subs, err := s.querySubscriptions(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Subscribers),
		IndexName:                 aws.String(indexSubscriberID),
		KeyConditionExpression:    aws.String("#k = :v"),
		ExpressionAttributeNames:  map[string]string{"#k": attrSubscriberID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": attrS(subscriberID)},
	})
	if err != nil {
		return nil, fmt.Errorf("producers followed by %s: %w", subscriberID, err)
	}
	live := subs[:0]
	for _, sub := range subs {
		if sub.DeletedAt.IsZero() {
			live = append(live, sub)
		}
	}
	return live, nil
}

// querySubscriptions runs in over all pages and decodes the items.
func (s *Store) querySubscriptions(ctx context.Context, in *dynamodb.QueryInput) ([]Subscription, error) {
	if s.pageSize > 0 {
		in.Limit = aws.Int32(s.pageSize)
	}
	subs := []Subscription{}
	pages := dynamodb.NewQueryPaginator(s.db, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("query table %s: %w", s.tables.Subscribers, err)
		}
		for _, it := range page.Items {
			r := reader{item: it}
			sub := Subscription{
				ProducerID:   r.str(attrProducerID),
				SubscriberID: r.str(attrSubscriberID),
				CreatedAt:    r.time(attrCreatedAt),
			}
			if _, ok := it[attrDeletedAt]; ok {
				sub.DeletedAt = r.time(attrDeletedAt)
			}
			if r.err != nil {
				return nil, fmt.Errorf("table %s: %w", s.tables.Subscribers, r.err)
			}
			subs = append(subs, sub)
		}
	}
	return subs, nil
}

// subscriptionKey is the key of one Subscribers item.
func subscriptionKey(producerID, subscriberID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrProducerID: attrS(producerID), attrSubscriberID: attrS(subscriberID)}
}
