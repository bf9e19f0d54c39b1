package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/fanout/fanout/store"
)

// SubscribersPolicy returns the subscribers-policy agent id set, and
// set=false when it set none. The error wraps store.ErrNotFound when there
// is no agent id.
func (s *Store) SubscribersPolicy(ctx context.Context, id string) (allow []string, set bool, err error) {
	if err := ctxErr(ctx, "subscribers-policy of agent "+id); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[id]; !ok {
		return nil, false, fmt.Errorf("subscribers-policy of agent %s: %w", id, store.ErrNotFound)
	}
	allow, set = s.policies[id]
	return slices.Clone(allow), set, nil
}

// SetSubscribersPolicy replaces agent id's subscribers-policy with allow.
// The error wraps store.ErrNotFound when there is no agent id.
func (s *Store) SetSubscribersPolicy(ctx context.Context, id string, allow []string) error {
	if err := ctxErr(ctx, "set subscribers-policy of agent "+id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[id]; !ok {
		return fmt.Errorf("set subscribers-policy of agent %s: %w", id, store.ErrNotFound)
	}
	if s.policies == nil {
		s.policies = map[string][]string{}
	}
	s.policies[id] = append([]string{}, allow...)
	return nil
}
