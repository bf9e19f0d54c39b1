package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Subscribe makes subscriberID follow producerID. It is idempotent: a
// repeat keeps the subscription's original CreatedAt. It does not check
// that either agent exists.
func (s *Store) Subscribe(ctx context.Context, producerID, subscriberID string) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.tables.Subscribers),
		Item: map[string]types.AttributeValue{
			attrProducerID:   attrS(producerID),
			attrSubscriberID: attrS(subscriberID),
			attrCreatedAt:    attrS(formatTime(s.now())),
		},
		ConditionExpression:      aws.String("attribute_not_exists(#p)"),
		ExpressionAttributeNames: map[string]string{"#p": attrProducerID},
	})
	if err != nil && !hasCode(err, codeConditionalCheckFailed) {
		return fmt.Errorf("subscribe %s to producer %s: %w", subscriberID, producerID, err)
	}
	return nil
}

// Unsubscribe makes subscriberID stop following producerID. It is
// idempotent.
func (s *Store) Unsubscribe(ctx context.Context, producerID, subscriberID string) error {
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.tables.Subscribers),
		Key:       subscriptionKey(producerID, subscriberID),
	})
	if err != nil {
		return fmt.Errorf("unsubscribe %s from producer %s: %w", subscriberID, producerID, err)
	}
	return nil
}

// Subscribers returns every subscription to producerID, read consistently,
// ordered by subscriber id.
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

// Producers returns every subscription of subscriberID, ordered by producer
// id. It reads a global secondary index, so a subscription made a moment ago
// may be missing.
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
	return subs, nil
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
