package app

import (
	"context"
	"errors"
	"maps"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/fanout/fanout/metrics"
)

// callRecorder receives every AWS request attempt. *metrics.Metrics
// satisfies it.
type callRecorder interface {
	// AWSOperation creates an operation's series at zero.
	AWSOperation(service, operation string)
	AWSRequest(service, operation, outcome string, retry bool)
}

// CallCounter counts AWS API calls by "Service.Operation" (each attempt,
// retries included: what AWS bills and throttles) and records each
// attempt's outcome (ok, error, throttled) in the service's metrics. Safe
// for concurrent use.
type CallCounter struct {
	rec callRecorder

	mu     sync.Mutex
	counts map[string]int64
}

// newCallCounter returns an empty counter that also records into rec (nil:
// counts only).
func newCallCounter(rec callRecorder) *CallCounter {
	return &CallCounter{rec: rec, counts: map[string]int64{}}
}

// attemptsKey holds, in a call's context, how many attempts it has made.
type attemptsKey struct{}

// Middleware installs the counter on an SDK client's stack (add it to
// aws.Config.APIOptions): it marks each call at Initialize and counts each
// attempt after the SDK's retry loop in Finalize.
func (c *CallCounter) Middleware(stack *middleware.Stack) error {
	err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fanout-call-attempts",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			return next.HandleInitialize(middleware.WithStackValue(ctx, attemptsKey{}, new(int)), in)
		}), middleware.Before)
	if err != nil {
		return err
	}
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("fanout-call-counter",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			attempt := 1
			if n, ok := middleware.GetStackValue(ctx, attemptsKey{}).(*int); ok {
				// One goroutine per call: the SDK's attempts run in turn.
				*n++
				attempt = *n
			}
			c.add(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), outcome(err), attempt > 1)
			return out, md, err
		}), middleware.After)
}

// outcome classes an attempt's error.
func outcome(err error) string {
	if err == nil {
		return metrics.AWSOk
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		if _, throttle := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; throttle {
			return metrics.AWSThrottled
		}
	}
	return metrics.AWSError
}

func (c *CallCounter) add(service, op, outcome string, retried bool) {
	c.mu.Lock()
	n := c.counts[service+"."+op]
	c.counts[service+"."+op] = n + 1
	c.mu.Unlock()
	if c.rec == nil {
		return
	}
	if n == 0 {
		c.rec.AWSOperation(service, op)
	}
	c.rec.AWSRequest(service, op, outcome, retried)
}

// Snapshot returns the counts so far.
func (c *CallCounter) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}
