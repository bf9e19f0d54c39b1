package awstest

import (
	"context"
	"time"

	"github.com/aws/smithy-go/middleware"
)

// RoundTrip returns an SDK option (for aws.Config.APIOptions) that adds d
// to every attempt of every call a client makes, before the request goes
// out: what the network to a region adds and a loopback emulator does
// not, so benchmark numbers on the emulator mean something on AWS. It sits
// in the Finalize step after the SDK's retry loop, so each attempt waits,
// as each attempt's round trip would. A done ctx ends the wait at once and
// fails the attempt with ctx's error; the request is then never sent.
// d <= 0 adds nothing.
func RoundTrip(d time.Duration) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		if d <= 0 {
			return nil
		}
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("fanout-bench-round-trip",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-ctx.Done():
					return middleware.FinalizeOutput{}, middleware.Metadata{}, ctx.Err()
				case <-t.C:
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}
