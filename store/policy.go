package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// attrSubscribersPolicy is the Agents attribute holding a producer's
// subscribers-policy: a list of strings (a list, not a string set, so that
// an empty policy, "no one", can be stored).
const attrSubscribersPolicy = "subscribersPolicy"

// SubscribersPolicy returns the subscribers-policy agent id set: who may
// subscribe to it (account ids, principal ARNs, "*"), and set=false when it
// set none. It reads consistently and caches nothing, unlike Agent: a
// policy changes, and a subscription checked against it must see the one
// last written. The error wraps ErrNotFound when there is no active agent
// id.
func (s *Store) SubscribersPolicy(ctx context.Context, id string) (allow []string, set bool, err error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(s.tables.Agents),
		Key:                      agentKey(id),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#q, #p"),
		ExpressionAttributeNames: map[string]string{"#q": attrQueueURL, "#p": attrSubscribersPolicy},
	})
	if err != nil {
		return nil, false, fmt.Errorf("subscribers-policy of agent %s: %w", id, err)
	}
	if _, active := out.Item[attrQueueURL]; !active {
		return nil, false, fmt.Errorf("subscribers-policy of agent %s: %w", id, ErrNotFound)
	}
	v, ok := out.Item[attrSubscribersPolicy]
	if !ok {
		return nil, false, nil
	}
	list, ok := v.(*types.AttributeValueMemberL)
	if !ok {
		return nil, false, fmt.Errorf("subscribers-policy of agent %s in table %s: attribute %s is %T, want a list", id, s.tables.Agents, attrSubscribersPolicy, v)
	}
	allow = make([]string, 0, len(list.Value))
	for _, e := range list.Value {
		str, ok := e.(*types.AttributeValueMemberS)
		if !ok {
			return nil, false, fmt.Errorf("subscribers-policy of agent %s in table %s: entry %T, want a string", id, s.tables.Agents, e)
		}
		allow = append(allow, str.Value)
	}
	return allow, true, nil
}

// SetSubscribersPolicy replaces agent id's subscribers-policy with allow
// (the caller validates the entries). The error wraps ErrNotFound when
// there is no active agent id (a registration still pending included).
func (s *Store) SetSubscribersPolicy(ctx context.Context, id string, allow []string) error {
	list := make([]types.AttributeValue, len(allow))
	for i, a := range allow {
		list[i] = attrS(a)
	}
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.tables.Agents),
		Key:                       agentKey(id),
		UpdateExpression:          aws.String("SET #p = :p"),
		ConditionExpression:       aws.String("attribute_exists(#q)"),
		ExpressionAttributeNames:  map[string]string{"#p": attrSubscribersPolicy, "#q": attrQueueURL},
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberL{Value: list}},
	})
	if hasCode(err, codeConditionalCheckFailed) {
		return fmt.Errorf("set subscribers-policy of agent %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set subscribers-policy of agent %s: %w", id, err)
	}
	return nil
}
