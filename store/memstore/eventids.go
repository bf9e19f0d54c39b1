package memstore

import (
	"context"
	"fmt"

	"github.com/fanout/fanout/store"
)

// ClaimEventID is store.(*Store).ClaimEventID: the first position to claim
// a producer's eventId holds it, a replay of that position keeps it. Claims
// never expire here.
func (s *Store) ClaimEventID(ctx context.Context, c store.EventClaim) (store.EventClaim, error) {
	if err := ctx.Err(); err != nil {
		return store.EventClaim{}, err
	}
	if c.ProducerID == "" || c.EventID == "" || len(c.EventID) > maxSortKeyBytes {
		return store.EventClaim{}, fmt.Errorf("claim event id %q of producer %q: %w: producer and event id of at most 1024 bytes are required", c.EventID, c.ProducerID, store.ErrRejected)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eventIDs == nil {
		s.eventIDs = map[[2]string]store.EventClaim{}
	}
	k := [2]string{c.ProducerID, c.EventID}
	if holder, ok := s.eventIDs[k]; ok && holder.Position != c.Position {
		return holder, nil
	}
	s.eventIDs[k] = c
	return c, nil
}
