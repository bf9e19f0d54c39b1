package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fanout/fanout/store"
)

// TestWatchdogRetry: what retry does with each kind of failure.
func TestWatchdogRetry(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}
	own := errors.New("validate message checksum: MD5 does not match")
	for _, tc := range []struct {
		name      string
		fail      func(attempt int) error
		wantCalls int
		wantErr   func(error) bool
	}{
		{"succeeds after passing faults", func(n int) error {
			if n < 3 {
				return throttled
			}
			return nil
		}, 4, func(err error) bool { return err == nil }},
		{"rejected at once", func(int) error { return fmt.Errorf("put: %w", store.ErrRejected) }, 1, gaveUp},
		{"own fault given up after the bound", func(int) error { return own }, maxEntryAttempts, func(err error) bool {
			return gaveUp(err) && strings.Contains(err.Error(), own.Error())
		}},
		{"service faults do not count towards the bound", func(n int) error {
			if n%2 == 0 {
				return throttled
			}
			return own
		}, 2 * maxEntryAttempts, gaveUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := NewWatchdog(zap.NewNop())
				calls := 0
				err := w.retry(context.Background(), "shard-1", func() error { calls++; return tc.fail(calls - 1) }, "send")
				if calls != tc.wantCalls || !tc.wantErr(err) {
					t.Errorf("retry made %d calls and returned %v; want %d calls", calls, err, tc.wantCalls)
				}
			})
		})
	}
}

// TestWatchdogStuck: a call failing with service faults for StuckAfter is
// reported, with its shard, what it is for and its last error, and logged
// once as stuck; it is no longer reported once it succeeds.
func TestWatchdogStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		w := NewWatchdog(zap.New(core))
		recovered := make(chan struct{})
		done := make(chan error)
		go func() {
			done <- w.retry(context.Background(), "shard-7", func() error {
				select {
				case <-recovered:
					return nil
				default:
					return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
				}
			}, "send messages to subscriber S", zap.String("subscriber_id", "S"))
		}()
		time.Sleep(StuckAfter / 2)
		synctest.Wait()
		if s := w.Stuck(); len(s) != 0 {
			t.Errorf("Stuck after %v = %v, want none yet", StuckAfter/2, s)
		}
		time.Sleep(StuckAfter)
		synctest.Wait()
		s := w.Stuck()
		if len(s) != 1 || s[0].ShardID != "shard-7" || s[0].What != "send messages to subscriber S" || !strings.Contains(s[0].Err.Error(), "ThrottlingException") {
			t.Fatalf("Stuck = %v, want shard-7 sending to S, throttled", s)
		}
		stuck := logs.FilterMessage("worker stuck").All()
		if len(stuck) != 1 || stuck[0].ContextMap()["subscriber_id"] != "S" || stuck[0].ContextMap()["shard_id"] != "shard-7" {
			t.Errorf("stuck log lines = %v, want one naming shard-7 and subscriber S", stuck)
		}
		close(recovered)
		if err := <-done; err != nil {
			t.Fatalf("retry = %v after recovery", err)
		}
		if s := w.Stuck(); len(s) != 0 {
			t.Errorf("Stuck after recovery = %v, want none", s)
		}
	})
}
