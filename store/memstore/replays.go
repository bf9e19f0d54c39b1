package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// replayKey identifies a replay: its subscriber and id.
type replayKey struct{ subscriber, id string }

// replayMap returns s.replays, made on first use; s.mu must be held.
func (s *Store) replayMap() map[replayKey]*store.Replay {
	if s.replays == nil {
		s.replays = map[replayKey]*store.Replay{}
	}
	return s.replays
}

// copyReplay is r with its own Errors.
func copyReplay(r store.Replay) store.Replay {
	r.Errors = slices.Clone(r.Errors)
	return r
}

// CreateReplay records r as running with no owner; the error wraps
// store.ErrConflict when its id is taken and store.ErrRejected when an id
// is missing.
func (s *Store) CreateReplay(ctx context.Context, r store.Replay) error {
	what := fmt.Sprintf("create replay %s of subscriber %s", r.ID, r.SubscriberID)
	if err := ctxErr(ctx, what); err != nil {
		return err
	}
	if r.SubscriberID == "" || r.ID == "" {
		return fmt.Errorf("%s: %w: subscriber and replay id are required", what, store.ErrRejected)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.replayMap()
	k := replayKey{r.SubscriberID, r.ID}
	if _, ok := m[k]; ok {
		return fmt.Errorf("%s: %w: it exists already", what, store.ErrConflict)
	}
	r.State, r.Owner, r.LeaseUntil = store.ReplayRunning, "", time.Time{}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	r.From, r.To, r.CreatedAt = stored(r.From), stored(r.To), stored(r.CreatedAt)
	r.UpdatedAt = r.CreatedAt
	r = copyReplay(r)
	m[k] = &r
	return nil
}

// Replay returns the replay; the error wraps store.ErrNotFound when there
// is none.
func (s *Store) Replay(ctx context.Context, subscriber, id string) (store.Replay, error) {
	what := fmt.Sprintf("get replay %s of subscriber %s", id, subscriber)
	if err := ctxErr(ctx, what); err != nil {
		return store.Replay{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.findReplay(what, subscriber, id)
	if err != nil {
		return store.Replay{}, err
	}
	return copyReplay(*r), nil
}

// findReplay returns the replay or an error, for what, wrapping
// store.ErrNotFound; s.mu must be held.
func (s *Store) findReplay(what, subscriber, id string) (*store.Replay, error) {
	r, ok := s.replayMap()[replayKey{subscriber, id}]
	if !ok {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return r, nil
}

// CancelReplay ends a running replay as cancelled and returns it as it
// is; see store.(*Store).CancelReplay.
func (s *Store) CancelReplay(ctx context.Context, subscriber, id string, at time.Time) (store.Replay, error) {
	what := fmt.Sprintf("cancel replay %s of subscriber %s", id, subscriber)
	if err := ctxErr(ctx, what); err != nil {
		return store.Replay{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.findReplay(what, subscriber, id)
	if err != nil {
		return store.Replay{}, err
	}
	if r.State == store.ReplayRunning {
		r.State, r.UpdatedAt = store.ReplayCancelled, stored(at)
	}
	return copyReplay(*r), nil
}

// RunningReplays returns the running replays, oldest first.
func (s *Store) RunningReplays(ctx context.Context) ([]store.Replay, error) {
	if err := ctxErr(ctx, "list running replays"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []store.Replay{}
	for _, r := range s.replayMap() {
		if r.State == store.ReplayRunning {
			out = append(out, copyReplay(*r))
		}
	}
	slices.SortFunc(out, func(a, b store.Replay) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// ClaimReplay makes owner the replay's runner until until when it is
// running and unleased at now (or owner's); see store.(*Store).ClaimReplay.
func (s *Store) ClaimReplay(ctx context.Context, subscriber, id, owner string, until, now time.Time) (store.Replay, error) {
	what := fmt.Sprintf("claim replay %s of subscriber %s for %s", id, subscriber, owner)
	if err := ctxErr(ctx, what); err != nil {
		return store.Replay{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.replayMap()[replayKey{subscriber, id}]
	switch {
	case !ok:
		return store.Replay{}, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case r.State != store.ReplayRunning || (r.Owner != owner && !r.LeaseUntil.Before(now)):
		return store.Replay{}, fmt.Errorf("%s: %w: it has ended or another task holds it", what, store.ErrConflict)
	}
	r.Owner, r.LeaseUntil = owner, until.UTC().Truncate(time.Millisecond)
	return copyReplay(*r), nil
}

// SaveReplay writes r's progress, state and lease while r.Owner holds it
// and it runs; see store.(*Store).SaveReplay.
func (s *Store) SaveReplay(ctx context.Context, r store.Replay) error {
	what := fmt.Sprintf("save replay %s of subscriber %s by %s", r.ID, r.SubscriberID, r.Owner)
	if err := ctxErr(ctx, what); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.replayMap()[replayKey{r.SubscriberID, r.ID}]
	if !ok || cur.Owner != r.Owner || cur.State != store.ReplayRunning {
		return fmt.Errorf("%s: %w: cancelled, or taken over by another task", what, store.ErrConflict)
	}
	cur.State, cur.UpdatedAt = r.State, stored(r.UpdatedAt)
	cur.Cursor, cur.Found, cur.Sent, cur.LastTimestamp = r.Cursor, r.Found, r.Sent, r.LastTimestamp
	cur.Errors = slices.Clone(r.Errors[:min(len(r.Errors), store.MaxReplayErrors)])
	cur.ErrorCount = max(r.ErrorCount, len(r.Errors))
	cur.LeaseUntil = time.Time{}
	if !r.LeaseUntil.IsZero() {
		cur.LeaseUntil = r.LeaseUntil.UTC().Truncate(time.Millisecond)
	}
	return nil
}

// ReplayEvents reads one page of q's items in log order (by key), those
// that begin up to store.MaxRunSpan before From included, and returns
// their events whose timestamps lie in the window, each with its item's
// key as Position; Limit counts items, filtered ones included. See
// store.(*Store).ReplayEvents. A Limit of 0 reads the whole window at
// once.
func (s *Store) ReplayEvents(ctx context.Context, q store.ReplayQuery) ([]store.LoggedEvent, string, error) {
	if err := ctxErr(ctx, "read events of subscriber "+q.SubscriberID); err != nil {
		return nil, "", err
	}
	from, to := q.From.UTC().Format(event.TimeLayout), q.To.UTC().Format(event.TimeLayout)
	lo := q.From.Add(-store.MaxRunSpan).UTC().Format(event.TimeLayout)
	s.mu.Lock()
	var page []item
	for _, it := range s.sortedItems(q.SubscriberID) {
		if it.key >= lo && it.key <= to && (q.After == "" || it.key > q.After) {
			page = append(page, it)
		}
	}
	next := ""
	if q.Limit > 0 && len(page) >= int(q.Limit) {
		page = page[:q.Limit]
		next = page[len(page)-1].key
	}
	out := []store.LoggedEvent{}
	for _, it := range page {
		if q.ProducerID != "" && it.events[0].AgentID != q.ProducerID {
			continue
		}
		for _, e := range it.events {
			if e.Timestamp >= from && e.Timestamp < to {
				e.Data = slices.Clone(e.Data)
				out = append(out, store.LoggedEvent{SubscriberEvent: e, Position: it.key})
			}
		}
	}
	s.mu.Unlock()
	return out, next, nil
}
