package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
)

// agentNamespace is the UUID namespace of agent ids: an agent's id is the
// UUIDv5 of its resource ARN in it, so every registration of one ARN writes
// the same key and DynamoDB's conditional put picks one winner. Changing it
// would give every registered ARN a second agent.
const agentNamespace = "aad0563f-af44-4e1c-97df-dba3fad9e27e"

// queueNamePrefix starts every agent queue's name: agents-<agentId>.fifo.
const queueNamePrefix = "agents-"

// compensationTimeout bounds the clean-up after a failed registration (one
// GetItem, one DeleteQueue). It runs even when the caller's context is done,
// or a cancelled request would leave its queue behind.
const compensationTimeout = 10 * time.Second

// agentItems is the part of the DynamoDB API that registration uses.
// *dynamodb.Client satisfies it; tests wrap one to inject failures the
// emulator cannot produce.
type agentItems interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// agentQueues is the part of the SQS API that registration uses.
// *sqs.Client satisfies it; tests wrap one to inject failures.
type agentQueues interface {
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, optFns ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
}

// RegisterAgent returns the agent of resourceARN, registering it with a new
// FIFO queue the first time. It is idempotent and race-free: any number of
// concurrent calls with one ARN, in any processes, yield one agent and one
// queue. resourceARN must be a valid IAM principal ARN (the caller checks).
// The error wraps ErrInvalidPrincipal, as a *PrincipalError, when
// resourceARN is in another partition than the Store's account (found
// before any AWS call) or when SQS rejects it in the queue policy (a role or
// user that does not exist); nothing is left behind then. When SQS still
// refuses to re-create a recently deleted queue the error wraps
// ErrRetryLater. If the agent cannot be written, its new queue is deleted
// again, unless an agent row exists after all, which is returned.
func (s *Store) RegisterAgent(ctx context.Context, resourceARN string) (Agent, error) {
	return registerAgent(ctx, s.db, s.sqs, s.tables.Agents, s.account, resourceARN, s.now)
}

// registerAgent is RegisterAgent over narrow clients.
func registerAgent(ctx context.Context, db agentItems, q agentQueues, table string, account Account, resourceARN string, now func() time.Time) (Agent, error) {
	id := agentID(resourceARN)
	policy, err := queuePolicy(account, resourceARN, queueName(id))
	if err != nil {
		return Agent{}, fmt.Errorf("register agent %s: policy of queue %s: %w", id, queueName(id), err)
	}
	a, err := getAgent(ctx, db, table, id)
	if !errors.Is(err, ErrNotFound) {
		return a, err // found, or failed
	}
	queueURL, err := createQueue(ctx, q, id, resourceARN, policy)
	if err != nil {
		return Agent{}, err
	}
	a = Agent{ID: id, QueueURL: queueURL, ResourceARN: resourceARN, CreatedAt: now().UTC().Truncate(time.Millisecond)}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			attrAgentID:     attrS(a.ID),
			attrResourceARN: attrS(a.ResourceARN),
			attrQueueURL:    attrS(a.QueueURL),
			attrCreatedAt:   attrS(formatTime(a.CreatedAt)),
		},
		ConditionExpression:      aws.String("attribute_not_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": attrAgentID},
	})
	switch {
	case err == nil:
		return a, nil
	case hasCode(err, codeConditionalCheckFailed):
		// A concurrent registration won; its row names the same queue.
		return getAgent(ctx, db, table, id)
	}
	putErr := fmt.Errorf("register agent %s: put into table %s: %w", id, table, err)
	return compensate(ctx, db, q, table, id, queueURL, putErr)
}

// compensate runs after the agent row could not be written: it returns the
// row if one exists after all (the write landed, or a concurrent one did),
// and otherwise deletes the queue so that none is left without an agent.
// When even the read fails, the queue stays: a retry reuses it, as its name
// follows from the ARN.
func compensate(ctx context.Context, db agentItems, q agentQueues, table, id, queueURL string, putErr error) (Agent, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensationTimeout)
	defer cancel()
	a, err := getAgent(ctx, db, table, id)
	switch {
	case err == nil:
		return a, nil
	case !errors.Is(err, ErrNotFound):
		return Agent{}, errors.Join(putErr, err)
	}
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
		return Agent{}, errors.Join(putErr, fmt.Errorf("delete queue %s of unregistered agent %s: %w", queueURL, id, err))
	}
	return Agent{}, putErr
}

// agentID is the id of the agent of resourceARN.
func agentID(resourceARN string) string {
	return uuid.NewSHA1(uuid.MustParse(agentNamespace), []byte(resourceARN)).String()
}

// queueName is the name of agent id's queue.
func queueName(id string) string {
	return queueNamePrefix + id + ".fifo"
}

// createQueue creates agent id's FIFO queue with policy, the queue policy
// granting resourceARN, or finds it: CreateQueue with the same name and
// attributes returns the existing queue.
func createQueue(ctx context.Context, q agentQueues, id, resourceARN, policy string) (string, error) {
	name := queueName(id)
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			string(sqstypes.QueueAttributeNameFifoQueue):                 "true",
			string(sqstypes.QueueAttributeNameContentBasedDeduplication): "false",
			// Deduplication per group and throughput per group: groups are
			// producers, and one busy producer must not slow the others.
			string(sqstypes.QueueAttributeNameDeduplicationScope):  "messageGroup",
			string(sqstypes.QueueAttributeNameFifoThroughputLimit): "perMessageGroupId",
			string(sqstypes.QueueAttributeNamePolicy):              policy,
		},
	})
	switch {
	case hasCode(err, codeQueueDeletedRecently, codeQueueDeletedRecentlyLegacy):
		return "", fmt.Errorf("create queue %s for agent %s: %w: %w", name, id, ErrRetryLater, err)
	case hasCode(err, codeInvalidAttributeValue):
		// The other attributes are constants and the policy's resource is
		// the queue's own ARN, so the principal is what SQS refused: since
		// 2025 it checks that the principal exists.
		return "", fmt.Errorf("create queue %s for agent %s: %w", name, id, &PrincipalError{
			Msg:   fmt.Sprintf("SQS rejected the queue policy for principal %s: it must be an existing IAM role, user or account", resourceARN),
			cause: err,
		})
	case err != nil:
		return "", fmt.Errorf("create queue %s for agent %s: %w", name, id, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// The queue policy document, built from structs so that no ARN can change
// its structure.
type (
	policyDocument struct {
		Version   string
		Statement []policyStatement
	}
	policyStatement struct {
		Effect    string
		Principal policyPrincipal
		Action    []string
		Resource  string
	}
	policyPrincipal struct {
		AWS string
	}
)

// queuePolicy lets exactly the principal resourceARN receive and delete
// messages of queue name in account, read its attributes and find its URL.
// The policy's Resource is the queue's exact ARN, as SQS requires. The
// error is a *PrincipalError when resourceARN is in another partition than
// account: no queue policy can grant it.
func queuePolicy(account Account, resourceARN, name string) (string, error) {
	if p := arnPartition(resourceARN); p != account.Partition {
		return "", &PrincipalError{Msg: fmt.Sprintf(
			"principal %s is in partition %s but fanout runs in partition %s: use an IAM role, user or account of partition %s",
			resourceARN, p, account.Partition, account.Partition)}
	}
	b, err := json.Marshal(policyDocument{
		Version: "2012-10-17",
		Statement: []policyStatement{{
			Effect:    "Allow",
			Principal: policyPrincipal{AWS: resourceARN},
			Action:    []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
			Resource:  fmt.Sprintf("arn:%s:sqs:%s:%s:%s", account.Partition, account.Region, account.ID, name),
		}},
	})
	return string(b), err
}

// arnPartition is the partition field of arn, "" when it has none.
func arnPartition(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}

// Agent returns the agent with id, read consistently. The error wraps
// ErrNotFound when there is none. Agents never change and are never
// deleted, so a found agent is remembered: the API checks a producer on
// every POST /events, and that costs one GetItem per producer per task.
func (s *Store) Agent(ctx context.Context, id string) (Agent, error) {
	if a, ok := s.known.get(id); ok {
		return a, nil
	}
	a, err := getAgent(ctx, s.db, s.tables.Agents, id)
	if err == nil {
		s.known.put(id, a)
	}
	return a, err
}

// agentCacheSize bounds the agents remembered (about 200 bytes each); when
// full the cache starts over.
const agentCacheSize = 100_000

// agentCache remembers found agents. Safe for concurrent use.
type agentCache struct {
	mu     sync.RWMutex
	agents map[string]Agent
}

func (c *agentCache) get(id string) (Agent, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.agents[id]
	return a, ok
}

func (c *agentCache) put(id string, a Agent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agents == nil || len(c.agents) >= agentCacheSize {
		c.agents = make(map[string]Agent)
	}
	c.agents[id] = a
}

// getAgent is Agent over a narrow client.
func getAgent(ctx context.Context, db agentItems, table, id string) (Agent, error) {
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{attrAgentID: attrS(id)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Agent{}, fmt.Errorf("get agent %s: %w", id, err)
	}
	if out.Item == nil {
		return Agent{}, fmt.Errorf("get agent %s: %w", id, ErrNotFound)
	}
	r := reader{item: out.Item}
	a := Agent{
		ID:          r.str(attrAgentID),
		QueueURL:    r.str(attrQueueURL),
		ResourceARN: r.str(attrResourceARN),
		CreatedAt:   r.time(attrCreatedAt),
	}
	if r.err != nil {
		return Agent{}, fmt.Errorf("get agent %s from table %s: %w", id, table, r.err)
	}
	return a, nil
}
