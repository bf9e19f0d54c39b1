package app

import (
	"context"
	"errors"
	"maps"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
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
	// AWSEntryOperation creates a batch operation's failed-entry series
	// at zero.
	AWSEntryOperation(service, operation string)
	// AWSEntriesFailed counts n entries of one answer AWS failed.
	AWSEntriesFailed(service, operation, outcome string, n int)
}

// CallCounter counts AWS API calls by "Service.Operation" (each attempt,
// retries included: what AWS bills and throttles) and records each
// attempt's outcome (ok, error, throttled) in the service's metrics, and
// the entries a batch call's answer failed one by one (batchEntries).
// Safe for concurrent use.
type CallCounter struct {
	rec callRecorder

	mu     sync.Mutex
	counts map[string]int64
}

// newCallCounter returns an empty counter that also records into rec (nil:
// counts only).
func newCallCounter(rec callRecorder) *CallCounter {
	if rec != nil {
		for _, op := range [][2]string{{kinesis.ServiceID, "PutRecords"}, {sqs.ServiceID, "SendMessageBatch"}} { // those batchEntries reads
			rec.AWSEntryOperation(op[0], op[1])
		}
	}
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
			service, op := awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)
			c.add(service, op, outcome(err), attempt > 1)
			if err == nil && c.rec != nil {
				throttled, failed := batchEntries(out.Result)
				if throttled > 0 {
					c.rec.AWSEntriesFailed(service, op, metrics.AWSThrottled, throttled)
				}
				if failed > 0 {
					c.rec.AWSEntriesFailed(service, op, metrics.AWSError, failed)
				}
			}
			return out, md, err
		}), middleware.After)
}

// outcome classes an attempt's error.
func outcome(err error) string {
	if err == nil {
		return metrics.AWSOk
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok && throttleCode(ae.ErrorCode()) {
		return metrics.AWSThrottled
	}
	return metrics.AWSError
}

// throttleCode reports whether an AWS error code, of a call or of one
// entry of a batch, says AWS throttled it: the SDK's own list, and the
// throttles of the KMS key behind an encrypted queue or stream.
func throttleCode(code string) bool {
	if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
		return true
	}
	return code == "KMSThrottlingException" || code == "KMS.ThrottlingException"
}

// batchEntries counts the entries of a batch call's answer (the typed
// output of Kinesis PutRecords or SQS SendMessageBatch) that AWS failed
// one by one, throttled or for another reason: such an answer succeeds
// as a whole, so the attempt's outcome is ok. Other outputs have none.
func batchEntries(out any) (throttled, failed int) {
	var codes []string
	switch o := out.(type) {
	case *kinesis.PutRecordsOutput:
		for _, r := range o.Records {
			if r.ErrorCode != nil {
				codes = append(codes, aws.ToString(r.ErrorCode))
			}
		}
	case *sqs.SendMessageBatchOutput:
		for _, f := range o.Failed {
			codes = append(codes, aws.ToString(f.Code))
		}
	}
	for _, c := range codes {
		if throttleCode(c) {
			throttled++
		} else {
			failed++
		}
	}
	return throttled, failed
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
