// Package backoff spaces out retries: capped exponential delays with full
// jitter, and a sleep that ends early when its context does. The pipeline's
// workers and the KCL plumbing both retry with it, so every retry loop in
// fanout backs off the same way.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Bounds of Delay. A worker cannot return an error to KCL, so it retries
// until the call succeeds or the worker stops; the cap keeps a long outage
// from spinning, the base keeps a passing fault from costing much latency.
const (
	base = 50 * time.Millisecond
	// Max is the longest Delay.
	Max = 5 * time.Second
)

// Delay returns the wait before retry attempt n (0-based): exponential with
// full jitter, capped at 5 s, never zero.
func Delay(n int) time.Duration {
	d := base << min(max(n, 0), 16)
	if d > Max || d <= 0 {
		d = Max
	}
	return time.Duration(rand.Int64N(int64(d))) + time.Millisecond
}

// Sleep waits for d or until ctx is done, reporting whether it waited the
// whole time.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
