package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// countingLookup is a cache lookup that answers "<key>#<n>" for its n-th
// call (1-based), or the error err returns for that call.
type countingLookup struct {
	err func(key string, n int) error

	mu    sync.Mutex
	calls map[string]int
}

func (l *countingLookup) lookup(_ context.Context, key string) (string, error) {
	l.mu.Lock()
	if l.calls == nil {
		l.calls = map[string]int{}
	}
	l.calls[key]++
	n := l.calls[key]
	l.mu.Unlock()
	if l.err != nil {
		if err := l.err(key, n); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s#%d", key, n), nil
}

func (l *countingLookup) callsFor(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[key]
}

// testClock is a settable clock for ttlCache.now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestCache(ttl time.Duration, max int, l *countingLookup) (*ttlCache[string], *testClock) {
	clock := &testClock{now: time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)}
	c := newTTLCache(ttl, max, l.lookup)
	c.now = clock.Now
	return c, clock
}

// getWant calls c.get(key) and checks its answer.
func getWant(t *testing.T, c *ttlCache[string], key, want string) {
	t.Helper()
	got, err := c.get(context.Background(), key)
	if err != nil || got != want {
		t.Errorf("get(%s) = %q, %v; want %q", key, got, err, want)
	}
}

func TestTTLCacheExpiry(t *testing.T) {
	t.Parallel()
	l := &countingLookup{}
	c, clock := newTestCache(time.Second, 10, l)
	getWant(t, c, "a", "a#1")
	clock.Advance(time.Second) // exactly ttl: still fresh
	getWant(t, c, "a", "a#1")
	getWant(t, c, "b", "b#1") // keys are separate
	clock.Advance(time.Millisecond)
	getWant(t, c, "a", "a#2")
	getWant(t, c, "a", "a#2")
	getWant(t, c, "b", "b#1")
	if n := l.callsFor("a"); n != 2 {
		t.Errorf("lookups of a = %d, want 2", n)
	}
}

func TestTTLCacheErrorsNotCached(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	l := &countingLookup{err: func(_ string, n int) error {
		if n == 1 {
			return boom
		}
		return nil
	}}
	c, _ := newTestCache(time.Minute, 10, l)
	if _, err := c.get(context.Background(), "a"); !errors.Is(err, boom) {
		t.Fatalf("get(a) error = %v, want %v", err, boom)
	}
	getWant(t, c, "a", "a#2")
	getWant(t, c, "a", "a#2")
}

func TestTTLCacheEviction(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	for _, tc := range []struct {
		name string
		// fill gets these keys, advancing the clock by the given step
		// after each, then advances by wait and gets "new".
		steps []time.Duration
		wait  time.Duration
		// kept are the filled keys still cached afterwards.
		kept []string
	}{
		{name: "expired entries go first", steps: []time.Duration{ttl / 2, 0, 0}, wait: ttl/2 + time.Millisecond, kept: []string{"k1", "k2"}},
		{name: "all go when none expired", steps: []time.Duration{0, 0, 0}, wait: 0, kept: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := &countingLookup{}
			c, clock := newTestCache(ttl, len(tc.steps), l)
			for i, step := range tc.steps {
				getWant(t, c, fmt.Sprintf("k%d", i), fmt.Sprintf("k%d#1", i))
				clock.Advance(step)
			}
			clock.Advance(tc.wait)
			getWant(t, c, "new", "new#1")
			c.mu.Lock()
			cached := map[string]bool{}
			for k := range c.entries {
				cached[k] = true
			}
			c.mu.Unlock()
			if len(cached) > c.max {
				t.Errorf("cache holds %d entries %v, want at most %d", len(cached), cached, c.max)
			}
			if !cached["new"] {
				t.Errorf("cache holds %v, want the new entry", cached)
			}
			for i := range tc.steps {
				key := fmt.Sprintf("k%d", i)
				if want := slices.Contains(tc.kept, key); cached[key] != want {
					t.Errorf("after eviction %s cached = %v, want %v (cache holds %v)", key, cached[key], want, cached)
				}
			}
		})
	}
}

// TestTTLCacheSharesLookups runs in a synctest bubble: synctest.Wait
// returns once every caller is blocked, so all of them asked while the one
// lookup was in flight.
func TestTTLCacheSharesLookups(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		calls := map[string]int{}
		lookup := func(ctx context.Context, key string) (string, error) {
			mu.Lock()
			calls[key]++
			mu.Unlock()
			<-release
			return "v-" + key, nil
		}
		// max 1: getting "b" must not evict "a" while its lookup is in flight.
		c := newTTLCache(time.Minute, 1, lookup)
		const callers = 8
		results := make(chan string, 2*callers)
		for _, key := range []string{"a", "b"} {
			for range callers {
				go func() {
					v, err := c.get(context.Background(), key)
					if err != nil {
						v = err.Error()
					}
					results <- v
				}()
			}
		}
		synctest.Wait()
		// A waiting caller whose ctx ends stops waiting; the lookup goes on.
		ctx, cancel := context.WithCancel(context.Background())
		impatient := make(chan error, 1)
		go func() {
			_, err := c.get(ctx, "a")
			impatient <- err
		}()
		synctest.Wait()
		mu.Lock()
		if calls["a"] != 1 || calls["b"] != 1 {
			t.Errorf("%d concurrent gets each of a and b ran lookups %v, want 1 each", callers, calls)
		}
		mu.Unlock()
		cancel()
		synctest.Wait()
		select {
		case err := <-impatient:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("get with a cancelled ctx = %v, want context.Canceled", err)
			}
		default:
			t.Error("get with a cancelled ctx still waits for the lookup")
			defer func() { <-impatient }()
		}
		close(release)
		counts := map[string]int{}
		for range 2 * callers {
			counts[<-results]++
		}
		if counts["v-a"] != callers || counts["v-b"] != callers {
			t.Errorf("results %v, want %d of v-a and of v-b", counts, callers)
		}
	})
}
