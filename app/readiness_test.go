package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fanout/fanout/pipeline"
)

type stuckList []pipeline.Stuck

func (s stuckList) Stuck() []pipeline.Stuck { return s }

// TestReadinessCachesOnlySuccess: a passing AWS check is remembered for
// readyCacheFor (probes cost one DescribeStreamSummary per 5 s), a failing
// one is asked again at once, and stopped or stuck workers are never hidden
// by the cache.
func TestReadinessCachesOnlySuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		checks, running := 0, true
		var checkErr error
		var stuck stuckList
		r := &readiness{
			running: func() bool { return running },
			check:   func(context.Context) error { checks++; return checkErr },
			workers: map[string]stuckReporter{"publisher": &stuck},
		}
		ctx := context.Background()
		ready := func(want string) {
			t.Helper()
			err := r.Ready(ctx)
			switch {
			case want == "" && err != nil:
				t.Fatalf("Ready = %v, want nil", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("Ready = %v, want an error containing %q", err, want)
			}
		}
		ready("")
		ready("")
		if checks != 1 {
			t.Errorf("%d AWS checks for two probes within %v, want 1", checks, readyCacheFor)
		}
		time.Sleep(readyCacheFor)
		checkErr = errors.New("read table fanout-agents: throttled")
		ready("throttled")
		checkErr = nil
		ready("")
		if checks != 3 {
			t.Errorf("%d AWS checks, want 3: a failure must not be cached", checks)
		}
		running = false
		ready("not running")
		running = true
		stuck = stuckList{{ShardID: "shardId-1", What: "send messages (subscriber S)", Since: time.Now().Add(-time.Minute), Err: errors.New("ThrottlingException")}}
		ready("publisher stuck on shard shardId-1: send messages (subscriber S) failing for 1m0s: ThrottlingException")
	})
}
