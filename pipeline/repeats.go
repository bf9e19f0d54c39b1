package pipeline

import (
	"context"
	"encoding/json"
	"strconv"

	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// eventRef is one event of a batch: its record's index and its own.
type eventRef struct{ rec, ev int }

// dropRepeats marks as dropped, in batch, every event whose eventId its
// producer gave an earlier event: earlier in the batch, or in an earlier
// record (a claim in store.ClaimEventID, kept for store.EventIDWindow).
// The first event with an id is the one delivered, whatever the copies'
// timestamps or content; a copy whose content differs is logged at warn
// with both positions. Ids fanout chose (event.GeneratedID) are unique and
// cost no claim. A claim that cannot be written sets its event aside.
func (a *Aggregator) dropRepeats(ctx context.Context, shardID string, batch []fanned) error {
	first := map[[2]string]eventRef{}
	var claims []eventRef
	for i := range batch {
		for j, e := range batch[i].events {
			if e.GeneratedID {
				continue
			}
			k := [2]string{e.AgentID, e.EventID}
			if earlier, ok := first[k]; ok {
				batch[i].dropped[j] = true
				was := batch[earlier.rec].events[earlier.ev]
				a.logRepeat(e, position(shardID, batch[i].seq, j), position(shardID, batch[earlier.rec].seq, earlier.ev), was.ContentHash() == e.ContentHash())
				continue
			}
			first[k] = eventRef{i, j}
			claims = append(claims, eventRef{i, j})
		}
	}
	return forEachLimit(ctx, claims, writeConcurrency, func(ctx context.Context, r eventRef) error {
		f := &batch[r.rec]
		e := f.events[r.ev]
		c := store.EventClaim{ProducerID: e.AgentID, EventID: e.EventID, Position: position(shardID, f.seq, r.ev), BodyHash: e.ContentHash()}
		var holder store.EventClaim
		err := a.watch.retry(ctx, shardID, func() (err error) {
			holder, err = a.ids.ClaimEventID(ctx, c)
			return err
		}, "check event id", zap.String("producer_id", e.AgentID), zap.String("event_id", e.EventID), zap.String("seq", f.seq))
		if gaveUp(err) {
			f.dropped[r.ev] = true     // each goroutine writes its own element
			data, _ := json.Marshal(e) // cannot fail: the event was parsed from JSON
			return a.dead.putLetter(ctx, reasonClass(err), a.dead.letter([]string{shardID, f.seq, strconv.Itoa(r.ev)}, shardID, f.seq,
				"cannot check whether eventId "+e.EventID+" was seen before: "+err.Error(), data))
		}
		if err != nil {
			return err
		}
		if holder.Position != c.Position {
			f.dropped[r.ev] = true
			a.logRepeat(e, c.Position, holder.Position, holder.BodyHash == c.BodyHash)
		}
		return nil
	})
}

func position(shardID, seq string, index int) store.EventPosition {
	return store.EventPosition{ShardID: shardID, Seq: seq, Index: index}
}

// logRepeat logs a dropped copy e at pos of the event first delivered from
// firstPos. Operators count these lines: keep the message stable.
func (a *Aggregator) logRepeat(e event.Event, pos, firstPos store.EventPosition, sameContent bool) {
	a.rec.DuplicateDropped(metrics.StageAggregator)
	log := a.log.Info
	if !sameContent {
		log = a.log.Warn // not a retry: the producer reused an id
	}
	log("duplicate eventId dropped", zap.String("producer_id", e.AgentID), zap.String("event_id", e.EventID),
		zap.Stringer("position", pos), zap.Stringer("first_position", firstPos), zap.Bool("same_content", sameContent))
}
