package pipeline

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// deadLetterer is satisfied by *store.Store. PutDeadLetter must be
// idempotent on DeadLetter.ID.
type deadLetterer interface {
	PutDeadLetter(ctx context.Context, d store.DeadLetter) (created bool, err error)
}

// What an operator can do, ending each dead letter's reason.
const (
	reasonRedrive       = "; once the cause is fixed, redrive this letter (POST /deadletters/{id}/redrive), or delete it"
	reasonFixProducer   = "; the producer must fix what it sends; redriving it fails the same way: delete this letter"
	reasonCannotRedrive = "; redriving it would fail the same way: delete this letter"
)

// reasonClass is the dead-letter reason class of err, an error that made
// a call give up (gaveUp): AWS refused the item or message, or it failed
// every attempt.
func reasonClass(err error) string {
	if errors.Is(err, store.ErrRejected) {
		return metrics.ReasonRejected
	}
	return metrics.ReasonGaveUp
}

// deadLetters sets records aside, once each, where operators list them.
type deadLetters struct {
	store deadLetterer
	stage string
	watch *Watchdog
	rec   Recorder
	log   *zap.Logger
}

// put records data, the record at shardID/seq of producer (its partition
// key; "" when unknown), as a dead letter for reason, of reason class class
// (a metrics.Reason constant), idempotently, and logs and counts it the
// first time. It fails only when ctx is cancelled.
func (d *deadLetters) put(ctx context.Context, shardID, seq, producer string, data []byte, class, reason string) error {
	dl := d.letter([]string{shardID, seq}, shardID, seq, reason, data)
	dl.ProducerID = producer
	return d.putLetter(ctx, class, dl)
}

// putEvent is put for data, what subscriber event e became (its item or
// its message), read at shardID/seq: one dead letter per subscriber and
// event.
func (d *deadLetters) putEvent(ctx context.Context, e store.SubscriberEvent, shardID, seq string, data []byte, class, reason string) error {
	dl := d.letter([]string{e.SubscriberID, e.AgentID, e.EventID}, shardID, seq, reason, data)
	dl.ProducerID, dl.SubscriberID = e.AgentID, e.SubscriberID
	return d.putLetter(ctx, class, dl)
}

// letter is the dead letter of data, read at shardID/seq, that d's stage
// sets aside for reason. key names what is set aside within the stage, so
// that setting it aside again (a replay) yields the same id.
func (d *deadLetters) letter(key []string, shardID, seq, reason string, data []byte) store.DeadLetter {
	return store.DeadLetter{
		ID:      d.stage + "/" + strings.Join(key, "/"),
		Stage:   d.stage,
		Reason:  reason,
		ShardID: shardID,
		Seq:     seq,
		Data:    data,
		At:      time.Now().UTC(),
	}
}

// putLetter writes dl (idempotent), of reason class class, and logs and
// counts it the first time. It fails only when ctx is cancelled.
func (d *deadLetters) putLetter(ctx context.Context, class string, dl store.DeadLetter) error {
	var created bool
	err := d.watch.retry(ctx, dl.ShardID, func() (err error) {
		created, err = d.store.PutDeadLetter(ctx, dl)
		return err
	}, "write dead letter", zap.String("dead_letter_id", dl.ID))
	if gaveUp(err) {
		// Nowhere left to put it: the log line is all that remains.
		d.log.Error("dead letter refused; record skipped", zap.String("stage", dl.Stage), zap.String("dead_letter_id", dl.ID),
			zap.String("shard_id", dl.ShardID), zap.String("seq", dl.Seq), zap.String("reason", dl.Reason), zap.Error(err))
		return nil
	}
	if err != nil {
		return err
	}
	if created {
		d.rec.DeadLettered(dl.Stage, class)
		d.log.Warn("dead-lettered", zap.String("stage", dl.Stage), zap.String("reason_class", class), zap.String("dead_letter_id", dl.ID),
			zap.String("shard_id", dl.ShardID), zap.String("seq", dl.Seq), zap.String("reason", dl.Reason))
	}
	return nil
}
