package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestClaimEventID(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	first := EventClaim{ProducerID: "P", EventID: "order-77", Position: EventPosition{ShardID: "shardId-1", Seq: "100", Index: 2}, BodyHash: "h1"}

	claim := func(c EventClaim) EventClaim {
		t.Helper()
		got, err := s.ClaimEventID(ctx, c)
		if err != nil {
			t.Fatalf("ClaimEventID(%+v): %v", c, err)
		}
		return got
	}
	if got := claim(first); got != first {
		t.Errorf("first claim = %+v, want itself %+v", got, first)
	}
	// A replay of the same record (crash, lease move) keeps the id.
	if got := claim(first); got != first {
		t.Errorf("replayed claim = %+v, want itself %+v", got, first)
	}
	// Another position with the same id: the first one holds it, whatever
	// the content.
	for _, pos := range []EventPosition{{"shardId-1", "200", 0}, {"shardId-1", "100", 3}, {"shardId-2", "100", 2}} {
		again := first
		again.Position, again.BodyHash = pos, "h2"
		if got := claim(again); got != first {
			t.Errorf("claim at %s = %+v, want the first claim %+v", pos, got, first)
		}
	}
	// Ids are per producer.
	other := first
	other.ProducerID = "Q"
	other.Position.Seq = "300"
	if got := claim(other); got != other {
		t.Errorf("claim of producer Q = %+v, want itself", got)
	}
}

// TestClaimEventIDRace: claims of one id at different positions made at
// once all agree on one holder.
func TestClaimEventIDRace(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	const n = 10
	got := make([]EventClaim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.ClaimEventID(ctx, EventClaim{ProducerID: "P", EventID: "e", Position: EventPosition{ShardID: "s", Seq: fmt.Sprint(i)}})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("claim %d says %s holds the id, claim 0 says %s", i, got[i].Position, got[0].Position)
		}
	}
}

func TestClaimEventIDRejected(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{EventIDs: "unused"}, testAccount)
	_, err := s.ClaimEventID(testContext(t), EventClaim{ProducerID: "P", EventID: strings.Repeat("x", maxSortKeyBytes+1)})
	if !errors.Is(err, ErrRejected) {
		t.Errorf("ClaimEventID(id over the key limit) = %v, want ErrRejected without calling AWS", err)
	}
}
