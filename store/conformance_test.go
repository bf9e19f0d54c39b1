package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fanout/fanout/internal/awstest"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/storetest"
)

// receiveTimeout bounds how long receiveBodies waits for a queue to hold
// the messages a test sent.
const receiveTimeout = 10 * time.Second

// TestConformance holds *store.Store on the test endpoint to the suite
// that the in-memory store runs too.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New:    func(t *testing.T) storetest.Store { return store.NewTestStore(t) },
		Bodies: receiveBodies,
	})
}

// receiveBodies receives and deletes messages of the queue at queueURL
// until it has at least n, and returns their bodies in the order received
// (so each group's in queue order: a FIFO queue hands out a group's next
// message only once the one before it is deleted).
func receiveBodies(t *testing.T, _ storetest.Store, queueURL string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), receiveTimeout)
	defer cancel()
	q := awstest.SQS(t)
	var bodies []string
	for len(bodies) < n {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("receive from %s after %d of %d messages: %v", queueURL, len(bodies), n, err)
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("delete message from %s: %v", queueURL, err)
			}
		}
	}
	return bodies
}
