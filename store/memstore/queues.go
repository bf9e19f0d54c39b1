package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fanout/fanout/store"
)

// dedupWindow is how long SQS drops a message whose deduplication id its
// group has seen.
const dedupWindow = 5 * time.Minute

// queue is one FIFO queue: the messages it took, in order, and when it
// last took each deduplication id of each group.
type queue struct {
	msgs []store.QueueMessage
	seen map[[2]string]time.Time // {group, dedup id} -> when taken
}

// SendMessages appends msgs (at most store.MaxBatch) to the queue at
// queueURL in slice order, dropping each whose deduplication id its group
// took within SQS's 5-minute window. It never fails an entry. The error
// wraps store.ErrQueueMissing when there is no such queue, and
// store.ErrRejected when there are more than store.MaxBatch messages or
// two share an entry id; nothing is sent then. Sending no messages does
// nothing.
func (s *Store) SendMessages(ctx context.Context, queueURL string, msgs []store.QueueMessage) (failed []store.BatchFailure, err error) {
	what := fmt.Sprintf("send %d messages to queue %s", len(msgs), queueURL)
	if err := ctxErr(ctx, what); err != nil {
		return nil, err
	}
	if len(msgs) > store.MaxBatch {
		return nil, fmt.Errorf("%s: %w: at most %d per batch", what, store.ErrRejected, store.MaxBatch)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	ids := map[string]bool{}
	for _, m := range msgs {
		if ids[m.ID] {
			return nil, fmt.Errorf("%s: %w: entry id %s is not distinct", what, store.ErrRejected, m.ID)
		}
		ids[m.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[queueURL]
	if q == nil {
		return nil, fmt.Errorf("%s: %w", what, store.ErrQueueMissing)
	}
	if q.seen == nil {
		q.seen = map[[2]string]time.Time{}
	}
	now := s.now()
	for _, m := range msgs {
		key := [2]string{m.GroupID, m.DedupID}
		if at, ok := q.seen[key]; ok && now.Sub(at) < dedupWindow {
			continue
		}
		q.seen[key] = now
		q.msgs = append(q.msgs, m)
	}
	return nil, nil
}

// Messages returns the messages the queue at queueURL took, in order; none
// when there is no such queue.
func (s *Store) Messages(queueURL string) []store.QueueMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[queueURL]; q != nil {
		return slices.Clone(q.msgs)
	}
	return nil
}

// DeleteQueue deletes the queue at queueURL and its messages, leaving its
// agent: what an operator deleting the queue under an agent does. Sending
// to it then fails with store.ErrQueueMissing.
func (s *Store) DeleteQueue(queueURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.queues, queueURL)
}
