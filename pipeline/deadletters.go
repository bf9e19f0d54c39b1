package pipeline

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/fanout/fanout/store"
)

// deadLetterer is satisfied by *store.Store. PutDeadLetter must be
// idempotent on DeadLetter.ID.
type deadLetterer interface {
	PutDeadLetter(ctx context.Context, d store.DeadLetter) (created bool, err error)
}

// deadLetters sets records aside, once each, where operators list them.
type deadLetters struct {
	store deadLetterer
	stage string
	log   *zap.Logger
}

// put records data as a dead letter of shardID/seq (idempotent) and logs it
// the first time. It fails only when ctx is cancelled.
func (d *deadLetters) put(ctx context.Context, shardID, seq string, data []byte, reason string) error {
	dl := store.DeadLetter{
		ID:      d.stage + "/" + shardID + "/" + seq,
		Stage:   d.stage,
		Reason:  reason,
		ShardID: shardID,
		Seq:     seq,
		Data:    data,
		At:      time.Now().UTC(),
	}
	return d.putLetter(ctx, dl)
}

func (d *deadLetters) putLetter(ctx context.Context, dl store.DeadLetter) error {
	var created bool
	err := retry(ctx, func() (err error) {
		created, err = d.store.PutDeadLetter(ctx, dl)
		return err
	}, d.log, "write dead letter", zap.String("dead_letter_id", dl.ID))
	if errors.Is(err, store.ErrRejected) {
		// Nowhere left to put it: the log line is all that remains.
		d.log.Error("dead letter refused; record skipped", zap.String("stage", dl.Stage), zap.String("dead_letter_id", dl.ID),
			zap.String("shard_id", dl.ShardID), zap.String("seq", dl.Seq), zap.String("reason", dl.Reason), zap.Error(err))
		return nil
	}
	if err != nil {
		return err
	}
	if created {
		// Alarms count this exact message (deploy/): keep it stable.
		d.log.Warn("dead-lettered", zap.String("stage", dl.Stage), zap.String("dead_letter_id", dl.ID),
			zap.String("shard_id", dl.ShardID), zap.String("seq", dl.Seq), zap.String("reason", dl.Reason))
	}
	return nil
}
