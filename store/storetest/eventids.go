package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fanout/fanout/store"
)

func testClaimEventIDFirstHolds(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	first := store.EventClaim{ProducerID: "P", EventID: "order-77", Position: store.EventPosition{ShardID: "shardId-1", Seq: "100", Index: 1}, BodyHash: "h1"}
	claim := func(c store.EventClaim) store.EventClaim {
		t.Helper()
		got, err := s.ClaimEventID(ctx, c)
		if err != nil {
			t.Fatalf("ClaimEventID(%+v): %v", c, err)
		}
		return got
	}
	if got := claim(first); got != first {
		t.Errorf("first claim = %+v, want itself", got)
	}
	if got := claim(first); got != first {
		t.Errorf("the same position again (a replay) = %+v, want itself", got)
	}
	later := first
	later.Position, later.BodyHash = store.EventPosition{ShardID: "shardId-1", Seq: "200"}, "h2"
	if got := claim(later); got != first {
		t.Errorf("a later position = %+v, want the first claim %+v", got, first)
	}
	other := later
	other.ProducerID = "Q"
	if got := claim(other); got != other {
		t.Errorf("another producer's same id = %+v, want itself", got)
	}
}

func testClaimEventIDConcurrently(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	const n = 10
	got := make([]store.EventClaim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.ClaimEventID(ctx, store.EventClaim{ProducerID: "P", EventID: "e", Position: store.EventPosition{ShardID: "s", Seq: fmt.Sprint(i)}})
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

func testClaimEventIDRejects(t *testing.T, h Harness) {
	s := h.New(t)
	_, err := s.ClaimEventID(testContext(t), store.EventClaim{ProducerID: "P", EventID: strings.Repeat("x", 1025)})
	if !errors.Is(err, store.ErrRejected) {
		t.Errorf("ClaimEventID(an id over DynamoDB's 1024-byte sort key) = %v, want ErrRejected", err)
	}
}
