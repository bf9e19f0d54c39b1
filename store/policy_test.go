package store

import (
	"errors"
	"slices"
	"testing"
)

// TestSubscribersPolicy: a policy reads back as set, an empty one too, the
// next write replaces it at once (no cache), and an unknown agent has none.
func TestSubscribersPolicy(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	a, err := s.RegisterAgent(ctx, "arn:aws:iam::123456789012:role/policy-producer")
	if err != nil {
		t.Fatal(err)
	}
	if allow, set, err := s.SubscribersPolicy(ctx, a.ID); err != nil || set || allow != nil {
		t.Fatalf("policy of a new agent = %v, %v, %v; want none set", allow, set, err)
	}
	for _, want := range [][]string{{"111122223333", "arn:aws:iam::444455556666:role/reader"}, {"*"}, {}} {
		if err := s.SetSubscribersPolicy(ctx, a.ID, want); err != nil {
			t.Fatalf("SetSubscribersPolicy(%v): %v", want, err)
		}
		allow, set, err := s.SubscribersPolicy(ctx, a.ID)
		if err != nil || !set || !slices.Equal(allow, want) {
			t.Errorf("policy = %v, %v, %v; want %v set", allow, set, err, want)
		}
	}
	// The agent itself is untouched.
	if got, err := s.Agent(ctx, a.ID); err != nil || got != a {
		t.Errorf("agent after policy writes = %+v, %v; want %+v", got, err, a)
	}
	const unknown = "00000000-0000-0000-0000-000000000000"
	if _, _, err := s.SubscribersPolicy(ctx, unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("policy of an unknown agent: %v, want ErrNotFound", err)
	}
	if err := s.SetSubscribersPolicy(ctx, unknown, []string{"*"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("setting the policy of an unknown agent: %v, want ErrNotFound", err)
	}
}
