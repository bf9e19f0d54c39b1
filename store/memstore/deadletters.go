package memstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

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

// ListDeadLetters is store.(*Store).ListDeadLetters: the dead letters q
// selects, newest first (by time, then id), one page and the next page's
// cursor.
func (s *Store) ListDeadLetters(ctx context.Context, q store.DeadLetterQuery) ([]store.DeadLetter, string, error) {
	if err := ctxErr(ctx, "list dead letters"); err != nil {
		return nil, "", err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultDeadLetterPage
	}
	limit = min(limit, store.MaxDeadLetterPage)
	var after string
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(b) == 0 {
			return nil, "", store.ErrBadCursor
		}
		after = string(b)
	}
	s.mu.Lock()
	all := slices.Clone(s.deadLetters)
	s.mu.Unlock()
	key := store.ListKey
	slices.SortFunc(all, func(a, b store.DeadLetter) int { return strings.Compare(key(b), key(a)) })
	var out []store.DeadLetter
	for _, d := range all {
		if after != "" && key(d) >= after {
			continue
		}
		if (q.Stage != "" && d.Stage != q.Stage) || (q.ProducerID != "" && d.ProducerID != q.ProducerID) || (q.SubscriberID != "" && d.SubscriberID != q.SubscriberID) {
			continue
		}
		out = append(out, d)
		if len(out) == limit {
			return out, base64.RawURLEncoding.EncodeToString([]byte(key(d))), nil
		}
	}
	return out, "", nil
}

// DeadLetter returns the dead letter id; the error wraps store.ErrNotFound
// when there is none.
func (s *Store) DeadLetter(ctx context.Context, id string) (store.DeadLetter, error) {
	if err := ctxErr(ctx, "get dead letter "+id); err != nil {
		return store.DeadLetter{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.deadLetters, func(l store.DeadLetter) bool { return l.ID == id })
	if i < 0 {
		return store.DeadLetter{}, fmt.Errorf("get dead letter %s: %w", id, store.ErrNotFound)
	}
	d := s.deadLetters[i]
	d.Data = slices.Clone(d.Data)
	return d, nil
}

// DeleteDeadLetter discards the dead letter id (idempotent).
func (s *Store) DeleteDeadLetter(ctx context.Context, id string) error {
	if err := ctxErr(ctx, "delete dead letter "+id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadLetters = slices.DeleteFunc(s.deadLetters, func(l store.DeadLetter) bool { return l.ID == id })
	return nil
}

// MarkRedriven records when the dead letter id was redriven; the error
// wraps store.ErrNotFound when it is gone.
func (s *Store) MarkRedriven(ctx context.Context, id string, at time.Time) error {
	if err := ctxErr(ctx, "mark dead letter "+id+" redriven"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.deadLetters, func(l store.DeadLetter) bool { return l.ID == id })
	if i < 0 {
		return fmt.Errorf("mark dead letter %s redriven: %w", id, store.ErrNotFound)
	}
	s.deadLetters[i].RedrivenAt = stored(at)
	return nil
}
