// Package pipeline moves events from producers to subscribers' queues: the
// ingest that writes them to Kinesis, and the two record handlers behind it
// that package kcl runs over leased shards — the aggregator (Kinesis -> one
// SubscriberEvents item per subscriber) and the publisher (SubscriberEvents'
// DynamoDB stream -> each subscriber's SQS FIFO queue) — and the dead
// letters where both set aside what they cannot handle.
//
// Every hop is at-least-once: a worker checkpoints only after the next hop
// holds the batch durably, and every write is keyed so that a replay adds
// nothing (conditional item writes, SQS deduplication ids). Order per
// producer and subscriber is kept by handling each shard's records in order
// and each subscriber's writes one at a time.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/store"
)

// retry calls f until it succeeds or ctx is done, backing off between
// attempts and logging each failure once at warn. An error wrapping
// store.ErrRejected (AWS refused the request as invalid) is returned at
// once: the caller sets the record aside.
func retry(ctx context.Context, f func() error, log *zap.Logger, what string, fields ...zap.Field) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, store.ErrRejected) { // retrying cannot help
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if err := pause(ctx, log, attempt, what, err, fields...); err != nil {
			return err
		}
	}
}

// pause logs failed attempt number attempt (0-based) of what at warn and
// backs off; it fails only when ctx is done first.
func pause(ctx context.Context, log *zap.Logger, attempt int, what string, err error, fields ...zap.Field) error {
	log.Warn(what+" failed, retrying", append(fields, zap.Int("attempt", attempt+1), zap.Error(err))...)
	if !backoff.Sleep(ctx, backoff.Delay(attempt)) {
		return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
	}
	return nil
}

// forEachLimit runs f for every item with at most limit at once and returns
// the first error.
func forEachLimit(ctx context.Context, items []string, limit int, f func(context.Context, string) error) error {
	if len(items) == 1 {
		return f(ctx, items[0])
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(ctx, it); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	return first
}
