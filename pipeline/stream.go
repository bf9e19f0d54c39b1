package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// streamWaitMax bounds how long EnsureStream waits for a new stream.
const streamWaitMax = 2 * time.Minute

// EnsureStream creates the Kinesis stream name with shards shards unless it
// exists, and waits until it is active. A concurrent creation by another
// task counts as success.
func EnsureStream(ctx context.Context, kc *kinesis.Client, name string, shards int) error {
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name),
		ShardCount: aws.Int32(int32(shards)),
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	w := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, streamWaitMax); err != nil {
		return fmt.Errorf("wait for stream %s: %w", name, err)
	}
	return nil
}

// PingStream checks that the stream answers, for readiness.
func PingStream(ctx context.Context, kc *kinesis.Client, name string) error {
	if _, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)}); err != nil {
		return fmt.Errorf("describe stream %s: %w", name, err)
	}
	return nil
}
