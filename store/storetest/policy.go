package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/fanout/fanout/store"
)

// testSubscribersPolicy: a new agent has no policy; a policy reads back as
// set, an empty one too, and the next write replaces it at once (it is
// never cached: a subscription is checked against the latest); the agent
// itself is untouched; an unknown agent has none to read or set.
func testSubscribersPolicy(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	a := register(t, s)
	if allow, set, err := s.SubscribersPolicy(ctx, a.ID); err != nil || set || len(allow) != 0 {
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
	if got, err := s.Agent(ctx, a.ID); err != nil || got != a {
		t.Errorf("agent after policy writes = %+v, %v; want %+v", got, err, a)
	}
	const unknown = "00000000-0000-0000-0000-000000000000"
	if _, _, err := s.SubscribersPolicy(ctx, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("policy of an unknown agent: %v, want ErrNotFound", err)
	}
	if err := s.SetSubscribersPolicy(ctx, unknown, []string{"*"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("setting the policy of an unknown agent: %v, want ErrNotFound", err)
	}
}
