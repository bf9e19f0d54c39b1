package store

import (
	"context"
	"fmt"
	"strings"
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

// subscribeAttempts bounds Subscribe's read-and-resume rounds against
// concurrent subscribes and unsubscribes of the same pair.
const subscribeAttempts = 3

// Subscribe makes subscriberID follow producerID. It is idempotent: a
// repeat keeps the subscription as it is. Subscribing again after an
// unsubscribe resumes the subscription and records the time in between as
// a gap, so events that reached the stream before the unsubscribe are
// still delivered however far behind the pipeline is. It does not check
// that either agent exists.
func (s *Store) Subscribe(ctx context.Context, producerID, subscriberID string) error {
	for range subscribeAttempts {
		created, err := putIfAbsent(ctx, s.db, s.tables.Subscribers, map[string]types.AttributeValue{
			attrProducerID:   attrS(producerID),
			attrSubscriberID: attrS(subscriberID),
			attrCreatedAt:    attrS(formatTime(s.now())),
		}, attrProducerID)
		if err != nil {
			return fmt.Errorf("subscribe %s to producer %s: %w", subscriberID, producerID, err)
		}
		if created {
			return nil
		}
		done, err := s.resume(ctx, producerID, subscriberID)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("subscribe %s to producer %s: %w: it kept changing under concurrent requests", subscriberID, producerID, ErrRetryLater)
}

// resume makes an existing subscription live again if it was ended,
// recording the gap. It reports false when the item changed meanwhile.
func (s *Store) resume(ctx context.Context, producerID, subscriberID string) (bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.tables.Subscribers),
		Key:            subscriptionKey(producerID, subscriberID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return false, fmt.Errorf("subscribe %s to producer %s: read it: %w", subscriberID, producerID, err)
	}
	if out.Item == nil {
		return false, nil // expired meanwhile: create it anew
	}
	sub, err := s.decodeSubscription(out.Item)
	if err != nil {
		return false, err
	}
	if sub.DeletedAt.IsZero() {
		return true, nil // live already
	}
	now := s.now()
	gaps := []types.AttributeValue{}
	for _, g := range sub.Gaps {
		if g.To.After(now.Add(-tombstoneTTL)) { // older ones cannot matter any more
			gaps = append(gaps, attrS(formatGap(g)))
		}
	}
	gaps = append(gaps, attrS(formatGap(Gap{From: sub.DeletedAt, To: now})))
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.tables.Subscribers),
		Key:                      subscriptionKey(producerID, subscriberID),
		UpdateExpression:         aws.String("SET #g = :g REMOVE #d, #e"),
		ConditionExpression:      aws.String("#d = :seen"),
		ExpressionAttributeNames: map[string]string{"#g": attrGaps, "#d": attrDeletedAt, "#e": attrExpiresAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":g":    &types.AttributeValueMemberL{Value: gaps},
			":seen": attrS(formatTime(sub.DeletedAt)),
		},
	})
	switch {
	case err == nil:
		return true, nil
	case hasCode(err, codeConditionalCheckFailed):
		return false, nil
	}
	return false, fmt.Errorf("subscribe %s to producer %s again: %w", subscriberID, producerID, err)
}

// formatGap and parseGap store a Gap as an ISO 8601 interval.
func formatGap(g Gap) string { return formatTime(g.From) + "/" + formatTime(g.To) }

func parseGap(v string) (Gap, error) {
	from, to, ok := strings.Cut(v, "/")
	f, err1 := time.Parse(time.RFC3339, from)
	t, err2 := time.Parse(time.RFC3339, to)
	if !ok || err1 != nil || err2 != nil {
		return Gap{}, fmt.Errorf("attribute %s: %q is not an interval", attrGaps, v)
	}
	return Gap{From: f, To: t}, nil
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
			":e": attrN(now.Add(tombstoneTTL).Unix()),
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
	subs, err := queryAll(ctx, s, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Subscribers),
		KeyConditionExpression:    aws.String("#k = :v"),
		ExpressionAttributeNames:  map[string]string{"#k": attrProducerID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": attrS(producerID)},
		ConsistentRead:            aws.Bool(true),
	}, s.decodeSubscription)
	if err != nil {
		return nil, fmt.Errorf("subscribers of producer %s: %w", producerID, err)
	}
	return subs, nil
}

// Producers returns the live subscriptions of subscriberID, ordered by
// producer id. It reads a global secondary index, so a subscription made a
// moment ago may be missing.
func (s *Store) Producers(ctx context.Context, subscriberID string) ([]Subscription, error) {
	subs, err := queryAll(ctx, s, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Subscribers),
		IndexName:                 aws.String(indexSubscriberID),
		KeyConditionExpression:    aws.String("#k = :v"),
		ExpressionAttributeNames:  map[string]string{"#k": attrSubscriberID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": attrS(subscriberID)},
	}, s.decodeSubscription)
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

// subscriptionKey is the key of one Subscribers item.
func subscriptionKey(producerID, subscriberID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrProducerID: attrS(producerID), attrSubscriberID: attrS(subscriberID)}
}

// decodeSubscription reads a Subscribers item.
func (s *Store) decodeSubscription(it map[string]types.AttributeValue) (Subscription, error) {
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
		return Subscription{}, fmt.Errorf("table %s: %w", s.tables.Subscribers, r.err)
	}
	if l, ok := it[attrGaps].(*types.AttributeValueMemberL); ok {
		for _, v := range l.Value {
			str, _ := v.(*types.AttributeValueMemberS)
			if str == nil {
				return Subscription{}, fmt.Errorf("table %s: attribute %s holds a non-string", s.tables.Subscribers, attrGaps)
			}
			g, err := parseGap(str.Value)
			if err != nil {
				return Subscription{}, fmt.Errorf("table %s: %w", s.tables.Subscribers, err)
			}
			sub.Gaps = append(sub.Gaps, g)
		}
	}
	return sub, nil
}
