// Package pipeline moves events from producers to subscribers' queues: the
// ingest that writes them to Kinesis, and the two KCL workers behind it — the
// aggregator (Kinesis -> one SubscriberEvents item per subscriber) and the
// publisher (SubscriberEvents' DynamoDB stream -> each subscriber's SQS FIFO
// queue).
//
// Every hop is at-least-once: a worker checkpoints only after the next hop
// holds the batch durably, and every write is keyed so that a replay adds
// nothing (conditional item writes, SQS deduplication ids). Order per
// producer and subscriber is kept by handling each shard's records in order
// and each subscriber's writes one at a time.
package pipeline

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff bounds for retrying AWS calls inside a worker. A worker cannot
// return an error to KCL, so it retries until the call succeeds or the
// worker is stopped; the cap keeps a long outage from spinning.
const (
	retryBase = 50 * time.Millisecond
	retryCap  = 5 * time.Second
)

// backoff returns the wait before retry attempt n (0-based): exponential
// with full jitter, capped.
func backoff(n int) time.Duration {
	d := retryBase << min(n, 16)
	if d > retryCap || d <= 0 {
		d = retryCap
	}
	return time.Duration(rand.Int64N(int64(d))) + time.Millisecond
}

// sleep waits for d or until ctx is done, reporting whether it waited the
// whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
