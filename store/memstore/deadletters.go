package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/fanout/fanout/store"
)

// PutDeadLetter keeps d, bounded as store.DeadLetter.Bounded says, unless
// a dead letter with d.ID is there already: a replay keeps nothing and
// returns created == false. A zero d.At becomes the current time. The
// error wraps store.ErrRejected when d.ID is empty or over DynamoDB's key
// limit (2048 bytes), or the dead letter is still over 400 KB once
// bounded.
func (s *Store) PutDeadLetter(ctx context.Context, d store.DeadLetter) (created bool, err error) {
	what := fmt.Sprintf("put dead letter %s (shard %s, seq %s)", d.ID, d.ShardID, d.Seq)
	if err := ctxErr(ctx, what); err != nil {
		return false, err
	}
	d = d.Bounded()
	d.Data = slices.Clone(d.Data)
	itemBytes := len(d.ID) + len(d.Stage) + len(d.Reason) + len(d.ShardID) + len(d.Seq) + len(d.Data)
	switch {
	case d.ID == "":
		return false, fmt.Errorf("%s: %w: id is required", what, store.ErrRejected)
	case len(d.ID) > maxPartitionKeyBytes:
		return false, fmt.Errorf("%s: %w: id is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, len(d.ID), maxPartitionKeyBytes)
	case itemBytes > maxItemBytes:
		return false, fmt.Errorf("%s: %w: item is %d bytes, DynamoDB takes at most %d", what, store.ErrRejected, itemBytes, maxItemBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.deadLetters, func(l store.DeadLetter) bool { return l.ID == d.ID }) {
		return false, nil
	}
	if d.At.IsZero() {
		d.At = s.now()
	}
	d.At = stored(d.At)
	s.deadLetters = append(s.deadLetters, d)
	return true, nil
}

// DeadLetters returns every dead letter, in the order they were created
// (store promises no order).
func (s *Store) DeadLetters(ctx context.Context) ([]store.DeadLetter, error) {
	if err := ctxErr(ctx, "list dead letters"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.DeadLetter{}, s.deadLetters...), nil
}
