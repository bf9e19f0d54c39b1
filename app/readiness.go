package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fanout/fanout/pipeline"
)

// readyCacheFor spaces out readiness probes' AWS calls: an orchestrator
// polling /readyz every second costs one DescribeStreamSummary (a call
// Kinesis limits to 20 a second per account) per 5 s.
const readyCacheFor = 5 * time.Second

// stuckReporter is what readiness asks of each worker's handler:
// *pipeline.Aggregator and *pipeline.Publisher satisfy it.
type stuckReporter interface {
	Stuck() []pipeline.Stuck
}

// readiness answers /readyz: not ready while a worker is not running or is
// stuck on a record (see pipeline.StuckAfter), or while check (AWS
// answers) fails. A passing check is
// remembered for readyCacheFor; a failing one, and the stuck workers, are
// asked again every time.
type readiness struct {
	// running reports whether both workers run; asked every time.
	running func() bool
	check   func(context.Context) error
	workers map[string]stuckReporter // by worker name, for the message

	mu sync.Mutex
	at time.Time // when check last passed
}

func (r *readiness) Ready(ctx context.Context) error {
	if !r.running() {
		return errors.New("pipeline workers are not running")
	}
	var errs []error
	for _, name := range []string{"aggregator", "publisher"} {
		w, ok := r.workers[name]
		if !ok {
			continue
		}
		for _, s := range w.Stuck() {
			errs = append(errs, fmt.Errorf("%s stuck on %s", name, s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < readyCacheFor {
		return nil
	}
	if err := r.check(ctx); err != nil {
		r.at = time.Time{}
		return err
	}
	r.at = time.Now()
	return nil
}
