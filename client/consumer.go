package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fanout/fanout/internal/backoff"
)

// Queue is the part of the SQS API a Consumer uses. *sqs.Client satisfies
// it.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Consumer waits.
const (
	// receiveWait is SQS's longest long poll: an idle consumer costs one
	// call per 20 s.
	receiveWait = 20
	// consumerRetry is the pause after a failed receive (credentials, a
	// network blip), so a broken consumer does not spin.
	consumerRetry = time.Second
)

// Consumer reads an agent's own queue (the queueUrl of its agent) with the
// agent's credentials.
type Consumer struct {
	// Queue is an SQS client with the agent's own credentials: the queue's
	// policy denies everyone else.
	Queue Queue
	// QueueURL is the agent's queue.
	QueueURL string
	// Errors, when not nil, is told of every failure Run rides out: a
	// failed receive or delete, an unreadable message, a handler error.
	Errors func(error)
}

// Run long-polls the queue and hands each message to handle, one at a
// time, in the order SQS delivers them (per producer, the order it
// published). A message is deleted once handle returns nil. When handle
// fails, that message and the rest of its batch are made visible again and
// received anew, in order, after a pause that grows with each failure in a
// row (backoff, up to 5 s): a FIFO queue holds a producer's later events
// back until an earlier one is deleted, so nothing overtakes it. A message
// that is not a fanout message is reported and left to the queue's
// visibility timeout (and its redrive policy, if the queue has one).
// Handlers must be idempotent by Message.EventID: a message whose delete
// was lost comes again. Run returns nil when ctx is done (after the handler
// in progress returns; ctx is handed to it); it never stops otherwise.
func (c *Consumer) Run(ctx context.Context, handle func(context.Context, Message) error) error {
	failures := 0 // handler failures in a row
	for ctx.Err() == nil {
		out, err := c.Queue.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(c.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: receiveWait,
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.report(fmt.Errorf("receive from %s: %w", c.QueueURL, err))
			select {
			case <-ctx.Done():
			case <-time.After(consumerRetry):
			}
			continue
		}
		failed := false
		for i, m := range out.Messages {
			err := c.handleOne(ctx, m, handle)
			if err == nil {
				continue
			}
			c.report(err)
			rest := out.Messages[i:]
			if errors.Is(err, errNotMessage) {
				rest = rest[1:] // it comes back when its visibility timeout ends
			}
			c.release(rest)
			failed = true
			break
		}
		if !failed {
			failures = 0
			continue
		}
		backoff.Sleep(ctx, backoff.Delay(failures))
		failures++
	}
	return nil
}

// errNotMessage marks a message that is not a fanout message.
var errNotMessage = errors.New("not a fanout message")

// handleOne decodes m, runs handle and deletes m when it succeeds.
func (c *Consumer) handleOne(ctx context.Context, m types.Message, handle func(context.Context, Message) error) error {
	var msg Message
	if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &msg); err != nil {
		return fmt.Errorf("message %s on %s: %w: %v", aws.ToString(m.MessageId), c.QueueURL, errNotMessage, err)
	}
	if err := handle(ctx, msg); err != nil {
		return fmt.Errorf("handler failed on event %s: %w", msg.EventID, err)
	}
	// The delete outlives ctx: the handler's work is done and must count.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := c.Queue.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.QueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
		c.report(fmt.Errorf("delete event %s from %s (it will come again): %w", msg.EventID, c.QueueURL, err))
	}
	return nil
}

// release makes msgs visible again at once, in order.
func (c *Consumer) release(msgs []types.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range msgs {
		if _, err := c.Queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(c.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			c.report(fmt.Errorf("release message %s on %s (it comes back when its visibility timeout ends): %w", aws.ToString(m.MessageId), c.QueueURL, err))
		}
	}
}

func (c *Consumer) report(err error) {
	if c.Errors != nil {
		c.Errors(err)
	}
}
