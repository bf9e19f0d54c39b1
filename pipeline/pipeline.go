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
	"sync"
	"time"

	"github.com/fanout/fanout/metrics"
)

// Recorder counts what the pipeline does. *metrics.Metrics satisfies it
// (a nil one records nothing). Methods must be safe for concurrent use.
type Recorder interface {
	// Delivered records one message SQS accepted, for an event whose
	// record reached Kinesis at arrived (zero: unknown).
	Delivered(arrived, accepted time.Time)
	// DeadLettered counts one new dead letter of stage, of reason class
	// reason (a metrics.Reason constant).
	DeadLettered(stage, reason string)
	// DuplicateDropped counts one event dropped at stage as a repeat of
	// its producer's eventId.
	DuplicateDropped(stage string)
	// CacheLookup counts one lookup in cache (a metrics.Cache constant).
	CacheLookup(cache string, hit bool)
	// Filtered counts one delivery a subscription filter turned away.
	Filtered()
}

// recorder returns r, or one that records nothing when r is nil.
func recorder(r Recorder) Recorder {
	if r == nil {
		return (*metrics.Metrics)(nil)
	}
	return r
}

// forEachLimit runs f for every item with at most limit at once and returns
// the first error.
func forEachLimit[T any](ctx context.Context, items []T, limit int, f func(context.Context, T) error) error {
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
