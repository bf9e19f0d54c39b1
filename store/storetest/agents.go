package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/fanout/fanout/store"
)

// newARN returns the ARN of a role no other test (or run) names: agent
// queues are named after the ARN, and an endpoint's queues are shared by
// every store on it.
func newARN() string {
	return "arn:aws:iam::123456789012:role/storetest/" + uuid.NewString()
}

// register registers a new agent in s, failing t on error.
func register(t *testing.T, s Store) store.Agent {
	t.Helper()
	a, err := s.RegisterAgent(testContext(t), newARN())
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	return a
}

// testRegisterAgentIsIdempotent: registering one ARN again returns the same
// agent, which Agent finds; another ARN gets another agent and queue.
func testRegisterAgentIsIdempotent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	arn := newARN()
	a, err := s.RegisterAgent(ctx, arn)
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	if a.ID == "" || a.ResourceARN != arn || !strings.HasSuffix(a.QueueURL, "/agents-"+a.ID+".fifo") || !isStored(a.CreatedAt) {
		t.Errorf("agent %+v: want an id, resourceArn %s, queue agents-<id>.fifo and a createdAt in UTC milliseconds", a, arn)
	}
	again, err := s.RegisterAgent(ctx, arn)
	if err != nil || again != a {
		t.Errorf("RegisterAgent again = %+v, %v; want %+v", again, err, a)
	}
	if got, err := s.Agent(ctx, a.ID); err != nil || got != a {
		t.Errorf("Agent(%s) = %+v, %v; want %+v", a.ID, got, err, a)
	}
	other := register(t, s)
	if other.ID == a.ID || other.QueueURL == a.QueueURL {
		t.Errorf("another ARN's agent %+v shares id or queue with %+v", other, a)
	}
}

// testRegisterAgentConcurrently: 20 concurrent registrations of one ARN
// yield one agent.
func testRegisterAgentConcurrently(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	arn := newARN()
	const n = 20
	agents := make([]store.Agent, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { agents[i], errs[i] = s.RegisterAgent(ctx, arn) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || agents[i] != agents[0] {
			t.Errorf("registration %d = %+v, %v; want %+v like the first", i, agents[i], errs[i], agents[0])
		}
	}
}

// testAgentNotFound: an id no agent has is store.ErrNotFound.
func testAgentNotFound(t *testing.T, h Harness) {
	s := h.New(t)
	id := uuid.NewString()
	if a, err := s.Agent(testContext(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Agent(%s) = %+v, %v; want store.ErrNotFound", id, a, err)
	}
}
