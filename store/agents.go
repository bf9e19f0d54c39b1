package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"
)

// agentNamespace is the UUID namespace of agent ids: an agent's id is the
// UUIDv5 of its resource ARN in it, so every registration of one ARN writes
// the same key and DynamoDB's conditional put picks one winner. Changing it
// would give every registered ARN a second agent.
const agentNamespace = "aad0563f-af44-4e1c-97df-dba3fad9e27e"

// Attributes of an Agents row that only registration reads, and the values
// of attrStatus. A row is written pending (with a claim) before its queue
// is created and made active (with queueUrl and createdAt) after; only an
// active row is an agent. Rows written before registration claimed have no
// status: they hold a queueUrl and count as active.
const (
	attrStatus = "status"
	// attrClaim is the random token of the registration that owns a pending
	// row; it stays on the row once active.
	attrClaim = "claim"
	// attrClaimedAt is when the claim was made or last renewed.
	attrClaimedAt = "claimedAt"

	statusPending = "pending"
	statusActive  = "active"
)

// Agent returns the agent with id, read consistently. The error wraps
// ErrNotFound when there is none, also while its registration is pending.
// Agents never change and are never deleted, so a found agent is
// remembered: the API checks a producer on every POST /events, and that
// costs one GetItem per producer per task.
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

// CacheRecorder counts a cache's lookups. metrics.CacheRecorder
// satisfies it. Lookup must be safe for concurrent use.
type CacheRecorder interface {
	Lookup(hit bool)
}

// agentCache remembers found agents. Safe for concurrent use.
type agentCache struct {
	mu     sync.RWMutex
	agents map[string]Agent
	// rec, when set, counts get's hits and misses.
	rec CacheRecorder
}

func (c *agentCache) get(id string) (Agent, bool) {
	c.mu.RLock()
	a, ok := c.agents[id]
	c.mu.RUnlock()
	if c.rec != nil {
		c.rec.Lookup(ok)
	}
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

// getAgent is Agent over a narrow client, without the cache.
func getAgent(ctx context.Context, db agentItems, table, id string) (Agent, error) {
	row, err := readAgentRow(ctx, db, table, id)
	if err != nil {
		return Agent{}, err
	}
	if row.status != statusActive {
		return Agent{}, fmt.Errorf("get agent %s: %w (its registration is %s)", id, ErrNotFound, row.status)
	}
	return row.agent, nil
}

// agentRow is an Agents row: an agent once active, a claim while pending.
type agentRow struct {
	status    string
	agent     Agent     // when active
	claim     string    // when pending
	claimedAt time.Time // when pending
}

// readAgentRow reads agent id's row consistently. The error wraps
// ErrNotFound when there is none.
func readAgentRow(ctx context.Context, db agentItems, table, id string) (agentRow, error) {
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            agentKey(id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return agentRow{}, fmt.Errorf("get agent %s: %w", id, err)
	}
	if out.Item == nil {
		return agentRow{}, fmt.Errorf("get agent %s: %w", id, ErrNotFound)
	}
	row, err := decodeAgentRow(out.Item)
	if err != nil {
		return agentRow{}, fmt.Errorf("get agent %s from table %s: %w", id, table, err)
	}
	return row, nil
}

// decodeAgentRow decodes an Agents item. An item without status is active:
// registrations wrote no status before they claimed rows.
func decodeAgentRow(item map[string]types.AttributeValue) (agentRow, error) {
	r := reader{item: item}
	row := agentRow{status: statusActive}
	if _, ok := item[attrStatus]; ok {
		row.status = r.str(attrStatus)
	}
	switch row.status {
	case statusActive:
		row.agent = Agent{
			ID:          r.str(attrAgentID),
			QueueURL:    r.str(attrQueueURL),
			ResourceARN: r.str(attrResourceARN),
			CreatedAt:   r.time(attrCreatedAt),
		}
	case statusPending:
		row.claim = r.str(attrClaim)
		row.claimedAt = r.time(attrClaimedAt)
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unknown %s %q", attrStatus, row.status)
		}
	}
	if r.err != nil {
		return agentRow{}, r.err
	}
	return row, nil
}

// agentKey is the key of agent id's row.
func agentKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrAgentID: attrS(id)}
}

// agentID is the id of the agent of resourceARN.
func agentID(resourceARN string) string {
	return uuid.NewSHA1(uuid.MustParse(agentNamespace), []byte(resourceARN)).String()
}
