package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names of fanout's tables. No other package spells them.
const (
	// Agents.
	attrAgentID     = "agentId"
	attrResourceARN = "resourceArn"
	attrQueueURL    = "queueUrl"

	// Subscribers, and the keys of SubscriberEvents. attrDeletedAt marks an
	// unsubscribed subscription (a tombstone, expiring at attrExpiresAt);
	// attrGaps lists earlier unsubscribed times of a resumed one.
	attrProducerID   = "producerId"
	attrSubscriberID = "subscriberId"
	attrDeletedAt    = "deletedAt"
	attrGaps         = "gaps"
	// attrFilter holds a subscription's filter policy, as JSON.
	attrFilter = "filter"

	// SubscriberEvents. attrEventSortKey holds the event timestamp, the
	// producer and the event id, '#' between them: sorted by event time, yet
	// unique per event.
	attrEventSortKey   = "timestamp"
	attrEventID        = "eventId"
	attrEventType      = "eventType"
	attrEventTimestamp = "eventTimestamp"
	attrData           = "data"

	// The TTL attribute of SubscriberEvents and Subscribers.
	attrExpiresAt = "expiresAt"

	// DeadLetters. attrListKey (createdAt#id) sorts every index of dead
	// letters newest last; attrListAll is one value for all of them, the
	// partition of the index that lists them all.
	attrID         = "id"
	attrStage      = "stage"
	attrReason     = "reason"
	attrListKey    = "listKey"
	attrListAll    = "listAll"
	attrRedrivenAt = "redrivenAt"

	// Shared by several tables.
	attrCreatedAt = "createdAt"
	attrShardID   = "shardId"
	attrSeq       = "seq"
	// attrArrivedAt is when an event's record reached Kinesis, in Unix
	// milliseconds.
	attrArrivedAt = "arrivedAt"

	// attrLeaseKey is the key of a KCL lease table: the attribute
	// vmware-go-kcl-v2's DynamoCheckpoint reads and writes.
	attrLeaseKey = "ShardID"
)

// Global secondary indexes.
const (
	// indexResourceARN finds an agent by its principal (eventually
	// consistent; registration does not rely on it).
	indexResourceARN = "resourceArn-index"
	// indexSubscriberID lists the producers a subscriber follows.
	indexSubscriberID = "subscriberId-index"
	// Dead letters by time: all of them, or of one stage, producer or
	// subscriber.
	indexDeadLettersAll        = "all-index"
	indexDeadLettersStage      = "stage-index"
	indexDeadLettersProducer   = "producer-index"
	indexDeadLettersSubscriber = "subscriber-index"
)

// pingKey is the agent id Ping reads: not a UUID, so no agent has it.
const pingKey = "ping"

// Waiting for tables to become ACTIVE.
const (
	// tableWaitMinDelay and tableWaitMaxDelay replace the SDK waiter's
	// 20 s first delay: a new on-demand table is usually ACTIVE within
	// seconds, and emulators create tables ACTIVE at once.
	tableWaitMinDelay = time.Second
	tableWaitMaxDelay = 10 * time.Second
	// tableWaitMax is the waiter's required upper bound; the caller's ctx
	// normally ends the wait sooner.
	tableWaitMax = 10 * time.Minute
)

// CreateTables creates each missing table (Agents, Subscribers,
// SubscriberEvents, DeadLetters, EventIDs, Replays and every named KCL
// lease table), all on-demand, waits until each is ACTIVE and enables TTL
// on SubscriberEvents, Subscribers, EventIDs and Replays.
// A table that already exists, or that a concurrent caller creates first,
// counts as created; its schema is not checked. It is idempotent and safe to
// call from several processes at once. ctx bounds the whole wait.
func (s *Store) CreateTables(ctx context.Context, leaseTables ...string) error {
	var pending []*string // tables not known to be ACTIVE yet
	for _, in := range s.tableDefinitions(leaseTables) {
		out, err := s.db.CreateTable(ctx, in)
		switch {
		case err == nil && out.TableDescription != nil && out.TableDescription.TableStatus == types.TableStatusActive:
			// Emulators create tables ACTIVE. Not describing them also
			// spares kumo's DescribeTable, which races with itself.
		case err == nil || hasCode(err, codeResourceInUse):
			pending = append(pending, in.TableName)
		default:
			return fmt.Errorf("create table %s: %w", aws.ToString(in.TableName), err)
		}
	}
	waiter := dynamodb.NewTableExistsWaiter(s.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = tableWaitMinDelay, tableWaitMaxDelay
	})
	for _, name := range pending {
		if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: name}, tableWaitMax); err != nil {
			return fmt.Errorf("wait for table %s to be active: %w", aws.ToString(name), err)
		}
	}
	for _, table := range []string{s.tables.SubscriberEvents, s.tables.Subscribers, s.tables.EventIDs, s.tables.Replays} {
		if err := s.enableTTL(ctx, table); err != nil {
			return err
		}
	}
	return nil
}

// tableDefinitions returns the CreateTable input of every table.
func (s *Store) tableDefinitions(leaseTables []string) []*dynamodb.CreateTableInput {
	defs := []*dynamodb.CreateTableInput{
		{
			TableName:            aws.String(s.tables.Agents),
			KeySchema:            keySchema(attrAgentID, ""),
			AttributeDefinitions: stringAttributes(attrAgentID, attrResourceARN),
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
				IndexName:  aws.String(indexResourceARN),
				KeySchema:  keySchema(attrResourceARN, ""),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
			}},
		},
		{
			TableName:            aws.String(s.tables.Subscribers),
			KeySchema:            keySchema(attrProducerID, attrSubscriberID),
			AttributeDefinitions: stringAttributes(attrProducerID, attrSubscriberID),
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
				IndexName:  aws.String(indexSubscriberID),
				KeySchema:  keySchema(attrSubscriberID, attrProducerID),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
			}},
		},
		{
			TableName:            aws.String(s.tables.SubscriberEvents),
			KeySchema:            keySchema(attrSubscriberID, attrEventSortKey),
			AttributeDefinitions: stringAttributes(attrSubscriberID, attrEventSortKey),
			StreamSpecification: &types.StreamSpecification{
				StreamEnabled:  aws.Bool(true),
				StreamViewType: types.StreamViewTypeNewImage,
			},
		},
		{
			TableName:            aws.String(s.tables.DeadLetters),
			KeySchema:            keySchema(attrID, ""),
			AttributeDefinitions: stringAttributes(attrID, attrListKey, attrListAll, attrStage, attrProducerID, attrSubscriberID),
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
				deadLetterIndex(indexDeadLettersAll, attrListAll),
				deadLetterIndex(indexDeadLettersStage, attrStage),
				deadLetterIndex(indexDeadLettersProducer, attrProducerID),
				deadLetterIndex(indexDeadLettersSubscriber, attrSubscriberID),
			},
		},
		{
			TableName:            aws.String(s.tables.EventIDs),
			KeySchema:            keySchema(attrProducerID, attrEventID),
			AttributeDefinitions: stringAttributes(attrProducerID, attrEventID),
		},
		{
			TableName:            aws.String(s.tables.Replays),
			KeySchema:            keySchema(attrSubscriberID, attrID),
			AttributeDefinitions: stringAttributes(attrSubscriberID, attrID, attrState, attrCreatedAt),
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
				IndexName:  aws.String(indexReplaysState),
				KeySchema:  keySchema(attrState, attrCreatedAt),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
			}},
		},
	}
	for _, name := range leaseTables {
		defs = append(defs, &dynamodb.CreateTableInput{
			TableName:            aws.String(name),
			KeySchema:            keySchema(attrLeaseKey, ""),
			AttributeDefinitions: stringAttributes(attrLeaseKey),
		})
	}
	for _, d := range defs {
		d.BillingMode = types.BillingModePayPerRequest
	}
	return defs
}

// deadLetterIndex is a GSI listing dead letters by partition, by time.
func deadLetterIndex(name, partition string) types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName:  aws.String(name),
		KeySchema:  keySchema(partition, attrListKey),
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
	}
}

// keySchema is a partition key and, unless sortKey is empty, a sort key.
func keySchema(partitionKey, sortKey string) []types.KeySchemaElement {
	ks := []types.KeySchemaElement{{AttributeName: aws.String(partitionKey), KeyType: types.KeyTypeHash}}
	if sortKey != "" {
		ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(sortKey), KeyType: types.KeyTypeRange})
	}
	return ks
}

// stringAttributes declares the named key attributes as strings.
func stringAttributes(names ...string) []types.AttributeDefinition {
	defs := make([]types.AttributeDefinition, len(names))
	for i, n := range names {
		defs[i] = types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: types.ScalarAttributeTypeS}
	}
	return defs
}

// enableTTL turns on TTL on table's expiry attribute unless it is on
// already (SubscriberEvents: old events; Subscribers: unsubscribe
// tombstones). DynamoDB refuses to enable TTL twice, so when the update
// fails (a concurrent caller won) the state is read again before erring.
func (s *Store) enableTTL(ctx context.Context, table string) error {
	on, err := s.ttlEnabled(ctx, table)
	if err != nil || on {
		return err
	}
	_, err = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpiresAt),
			Enabled:       aws.Bool(true),
		},
	})
	if err == nil {
		return nil
	}
	if on, again := s.ttlEnabled(ctx, table); again == nil && on {
		return nil
	}
	return fmt.Errorf("enable TTL on table %s attribute %s: %w", table, attrExpiresAt, err)
}

// ttlEnabled reports whether TTL is on (or turning on) for table's expiry
// attribute.
func (s *Store) ttlEnabled(ctx context.Context, table string) (bool, error) {
	out, err := s.db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return false, fmt.Errorf("describe TTL of table %s: %w", table, err)
	}
	d := out.TimeToLiveDescription
	if d == nil || aws.ToString(d.AttributeName) != attrExpiresAt {
		return false, nil
	}
	return d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling, nil
}

// StreamARN returns the ARN of SubscriberEvents' current DynamoDB stream.
// It reads DescribeTable, which every endpoint supports (the emulator has no
// ListStreams).
func (s *Store) StreamARN(ctx context.Context) (string, error) {
	out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.tables.SubscriberEvents)})
	if err != nil {
		return "", fmt.Errorf("describe table %s: %w", s.tables.SubscriberEvents, err)
	}
	var arn string
	var spec *types.StreamSpecification
	if out.Table != nil {
		arn = aws.ToString(out.Table.LatestStreamArn)
		spec = out.Table.StreamSpecification
	}
	if arn == "" || spec == nil || !aws.ToBool(spec.StreamEnabled) {
		return "", fmt.Errorf("table %s has no stream: enable its stream with view type NEW_IMAGE", s.tables.SubscriberEvents)
	}
	// The publisher reads each new item from its stream record.
	if v := spec.StreamViewType; v != types.StreamViewTypeNewImage && v != types.StreamViewTypeNewAndOldImages {
		return "", fmt.Errorf("table %s streams %s: its stream view type must be NEW_IMAGE (or NEW_AND_OLD_IMAGES)", s.tables.SubscriberEvents, v)
	}
	return arn, nil
}

// Ping returns nil when DynamoDB answers a read of the Agents table: a
// cheap readiness check that also proves read permission. It reads an item
// that never exists rather than describing the table: reads have no
// control-plane rate limit, and kumo's DescribeTable races with itself.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.tables.Agents),
		Key:       map[string]types.AttributeValue{attrAgentID: attrS(pingKey)},
	})
	if err != nil {
		return fmt.Errorf("read table %s: %w", s.tables.Agents, err)
	}
	return nil
}

// MissingTables returns the names of the tables that do not exist, of
// fanout's (those named in Tables) and of leaseTables, in that order. Any
// other failure to describe a table is returned as an error.
func (s *Store) MissingTables(ctx context.Context, leaseTables ...string) ([]string, error) {
	var missing []string
	for _, in := range s.tableDefinitions(leaseTables) {
		_, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
		switch {
		case hasCode(err, codeResourceNotFound):
			missing = append(missing, aws.ToString(in.TableName))
		case err != nil:
			return nil, fmt.Errorf("describe table %s: %w", aws.ToString(in.TableName), err)
		}
	}
	return missing, nil
}
