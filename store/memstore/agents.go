package memstore

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/fanout/fanout/store"
)

// agentNamespace is the UUID namespace of the Store's agent ids: UUIDv5 of
// the resource ARN, like store's, though in a namespace of its own, so
// nothing can come to depend on one implementation's exact ids.
var agentNamespace = uuid.MustParse("5d0c9f3e-7a4b-4c41-9d8e-6f1a2b3c4d5e")

// queueURLPrefix starts the URL of every queue the Store creates.
const queueURLPrefix = "https://sqs.memstore.invalid/000000000000/"

// RegisterAgent returns the agent of resourceARN, registering it with a new
// queue, agents-<agentId>.fifo, the first time: any number of calls with
// one ARN yield one agent and one queue. Every ARN is accepted.
func (s *Store) RegisterAgent(ctx context.Context, resourceARN string) (store.Agent, error) {
	id := uuid.NewSHA1(agentNamespace, []byte(resourceARN)).String()
	if err := ctxErr(ctx, "register agent "+id); err != nil {
		return store.Agent{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.agents[id]; ok {
		return a, nil
	}
	a := store.Agent{ID: id, QueueURL: queueURLPrefix + "agents-" + id + ".fifo", ResourceARN: resourceARN, CreatedAt: s.stamp()}
	s.addAgent(a)
	return a, nil
}

// Agent returns the agent with id. The error wraps store.ErrNotFound when
// there is none.
func (s *Store) Agent(ctx context.Context, id string) (store.Agent, error) {
	if err := ctxErr(ctx, "get agent "+id); err != nil {
		return store.Agent{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[id]
	if !ok {
		return store.Agent{}, fmt.Errorf("get agent %s: %w", id, store.ErrNotFound)
	}
	return a, nil
}

// AddAgent stores a as it is, with an empty queue at a.QueueURL unless
// that is empty: a test's fixture, for agents with ids or times
// RegisterAgent would not give. An agent with a.ID is replaced.
func (s *Store) AddAgent(a store.Agent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addAgent(a)
}

// addAgent is AddAgent with s.mu held.
func (s *Store) addAgent(a store.Agent) {
	s.agents[a.ID] = a
	if a.QueueURL != "" && s.queues[a.QueueURL] == nil {
		s.queues[a.QueueURL] = &queue{}
	}
}
