package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/store"
)

// Bounds on retrying one call.
const (
	// maxEntryAttempts bounds the attempts at a call that keeps failing
	// for a reason of its own (not the service's: see store.ServiceFault),
	// such as a response that fails its checksum or an entry SQS refuses
	// again and again. With backoff's delays (50 ms doubling, capped at
	// 5 s) ten attempts take about 8 s, at most 17 s: far past any
	// passing fault, yet one bad entry holds its shard only seconds before
	// it is set aside.
	maxEntryAttempts = 10
	// StuckAfter is how long a call may keep failing with a service fault
	// (throttling, an outage, missing permissions) before its worker
	// counts as stuck: /readyz names the shard and the reason, and the log
	// says which event and subscriber it waits on. The SDK's own retries
	// and a few of ours ride out a passing throttle well within it.
	StuckAfter = 30 * time.Second
)

// errGaveUp wraps the last error of a call given up after maxEntryAttempts:
// the caller sets its record aside.
var errGaveUp = errors.New("failed every attempt")

// gaveUp reports whether err means the record must be set aside rather
// than retried: AWS refused it as invalid, or it failed every attempt.
func gaveUp(err error) bool {
	return errors.Is(err, store.ErrRejected) || errors.Is(err, errGaveUp)
}

// Stuck is a call that a worker has been retrying for longer than
// StuckAfter.
type Stuck struct {
	ShardID string
	What    string // the call, naming the event and subscriber it is for
	Since   time.Time
	Err     error // its latest failure
}

func (s Stuck) String() string {
	return fmt.Sprintf("shard %s: %s failing for %s: %v", s.ShardID, s.What, time.Since(s.Since).Round(time.Second), s.Err)
}

// Watchdog retries a worker's calls and remembers those that keep failing,
// so that readiness can name a stuck shard. Safe for concurrent use.
type Watchdog struct {
	log *zap.Logger
	// stuckAfter is StuckAfter; tests shorten it.
	stuckAfter time.Duration

	mu      sync.Mutex
	failing map[*call]struct{}
}

// NewWatchdog returns a Watchdog that logs to log.
func NewWatchdog(log *zap.Logger) *Watchdog {
	return &Watchdog{log: log, stuckAfter: StuckAfter, failing: map[*call]struct{}{}}
}

// Stuck returns the calls failing for longer than StuckAfter, oldest first.
func (w *Watchdog) Stuck() []Stuck {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Stuck
	for c := range w.failing {
		if time.Since(c.since) >= w.stuckAfter {
			out = append(out, Stuck{ShardID: c.shard, What: c.what, Since: c.since, Err: c.err})
		}
	}
	slices.SortFunc(out, func(a, b Stuck) int { return a.Since.Compare(b.Since) })
	return out
}

// call is one call being retried.
type call struct {
	w      *Watchdog
	shard  string
	what   string
	fields []zap.Field

	// Guarded by w.mu.
	since  time.Time
	err    error
	warned bool
}

// track starts watching a call of shard described by what (e.g. "write
// subscriber event"); fields name what it is for (subscriber_id, event_id)
// in its log lines.
func (w *Watchdog) track(shard, what string, fields ...zap.Field) *call {
	return &call{w: w, shard: shard, what: what, fields: append(fields, zap.String("shard_id", shard))}
}

// failed records failed attempt number attempt (0-based) of c, logs it and
// backs off; it fails only when ctx is done first.
func (c *call) failed(ctx context.Context, attempt int, err error) error {
	c.w.mu.Lock()
	if _, ok := c.w.failing[c]; !ok { // its first failure
		c.since = time.Now()
		c.w.failing[c] = struct{}{}
	}
	c.err = err
	stuck := !c.warned && time.Since(c.since) >= c.w.stuckAfter
	c.warned = c.warned || stuck
	since := c.since
	c.w.mu.Unlock()
	if stuck {
		c.w.log.Error("worker stuck", append(c.fields, zap.String("call", c.what), zap.Time("since", since), zap.Error(err))...)
	}
	c.w.log.Warn(c.what+" failed, retrying", append(c.fields, zap.Int("attempt", attempt+1), zap.Error(err))...)
	if !backoff.Sleep(ctx, backoff.Delay(attempt)) {
		return fmt.Errorf("%s: %w (last error: %v)", c.what, ctx.Err(), err)
	}
	return nil
}

// done stops watching c. It may be called more than once.
func (c *call) done() {
	c.w.mu.Lock()
	delete(c.w.failing, c)
	warned := c.warned
	c.warned = false
	c.w.mu.Unlock()
	if warned {
		c.w.log.Info("worker unstuck", append(c.fields, zap.String("call", c.what))...)
	}
}

// retry calls f until it succeeds, backing off and logging each failure.
// It gives up with an error wrapping store.ErrRejected at once when AWS
// refused the request as invalid, and with one wrapping errGaveUp after
// maxEntryAttempts failures that were not service faults: the caller sets
// the record aside (gaveUp). Service faults are retried until ctx is
// done, the call counting as stuck after StuckAfter.
func (w *Watchdog) retry(ctx context.Context, shard string, f func() error, what string, fields ...zap.Field) error {
	return w.retryUpTo(ctx, maxEntryAttempts, shard, f, what, fields...)
}

// retryDurable is retry for a write that is the record's last durable
// place (a dead letter): it gives up only when AWS refuses the request as
// invalid, and retries every other failure until ctx is done, visibly.
func (w *Watchdog) retryDurable(ctx context.Context, shard string, f func() error, what string, fields ...zap.Field) error {
	return w.retryUpTo(ctx, 0, shard, f, what, fields...)
}

// retryUpTo is retry giving up after maxOwn failures that were not
// service faults; 0 never gives up on them.
func (w *Watchdog) retryUpTo(ctx context.Context, maxOwn int, shard string, f func() error, what string, fields ...zap.Field) error {
	c := w.track(shard, what, fields...)
	defer c.done()
	own := 0
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, store.ErrRejected) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if maxOwn > 0 && !store.ServiceFault(err) {
			if own++; own >= maxOwn {
				return fmt.Errorf("%s: %w (%d times): %w", what, errGaveUp, own, err)
			}
		}
		if err := c.failed(ctx, attempt, err); err != nil {
			return err
		}
	}
}
