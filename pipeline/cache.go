package pipeline

import (
	"context"
	"sync"
	"time"
)

// ttlCache memoises a lookup per key for ttl. Concurrent misses for one key
// share a single lookup. Errors are not cached. It is safe for concurrent use.
type ttlCache[V any] struct {
	ttl    time.Duration
	max    int
	lookup func(ctx context.Context, key string) (V, error)
	now    func() time.Time
	// counted, when set, is told whether each get found its value (a
	// finished or in-flight lookup) or looked it up.
	counted func(hit bool)

	mu      sync.Mutex
	entries map[string]*cacheEntry[V]
}

type cacheEntry[V any] struct {
	ready   chan struct{}
	val     V
	err     error
	expires time.Time
}

func newTTLCache[V any](ttl time.Duration, max int, lookup func(context.Context, string) (V, error)) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, max: max, lookup: lookup, now: time.Now, entries: map[string]*cacheEntry[V]{}}
}

// get returns the cached value for key, looking it up when absent or older
// than ttl.
func (c *ttlCache[V]) get(ctx context.Context, key string) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.ready:
			if e.err != nil || c.now().After(e.expires) {
				ok = false
			}
		default: // a lookup is in flight: share it
		}
	}
	if c.counted != nil {
		c.counted(ok)
	}
	if !ok {
		if len(c.entries) >= c.max {
			c.evictExpired()
		}
		e = &cacheEntry[V]{ready: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		// The value is as old as the moment the lookup started: ttl bounds
		// its staleness even when the lookup is slow.
		started := c.now()
		e.val, e.err = c.lookup(ctx, key)
		e.expires = started.Add(c.ttl)
		close(e.ready)
		return e.val, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.val, e.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// evictExpired drops finished entries past their ttl, or all finished
// entries when none had expired; c.mu must be held.
func (c *ttlCache[V]) evictExpired() {
	now := c.now()
	n := len(c.entries)
	for k, e := range c.entries {
		select {
		case <-e.ready:
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		default:
		}
	}
	if len(c.entries) < n {
		return
	}
	for k, e := range c.entries {
		select {
		case <-e.ready:
			delete(c.entries, k)
		default:
		}
	}
}
