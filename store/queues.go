package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// queueNamePrefix starts every agent queue's name: agents-<agentId>.fifo.
const queueNamePrefix = "agents-"

// queueName is the name of agent id's queue.
func queueName(id string) string {
	return queueNamePrefix + id + ".fifo"
}

// createQueue creates agent id's FIFO queue with policy, the queue policy
// granting resourceARN, or finds it: CreateQueue with the same name and
// attributes returns the existing queue.
func createQueue(ctx context.Context, q agentQueues, id, resourceARN, policy string) (string, error) {
	name := queueName(id)
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			string(sqstypes.QueueAttributeNameFifoQueue):                 "true",
			string(sqstypes.QueueAttributeNameContentBasedDeduplication): "false",
			// Deduplication per group and throughput per group: groups are
			// producers, and one busy producer must not slow the others.
			string(sqstypes.QueueAttributeNameDeduplicationScope):  "messageGroup",
			string(sqstypes.QueueAttributeNameFifoThroughputLimit): "perMessageGroupId",
			string(sqstypes.QueueAttributeNamePolicy):              policy,
		},
	})
	switch {
	case hasCode(err, codeQueueDeletedRecently, codeQueueDeletedRecentlyLegacy):
		return "", fmt.Errorf("create queue %s for agent %s: %w: %w", name, id, ErrRetryLater, err)
	case hasCode(err, codeInvalidAttributeValue):
		// The other attributes are constants and the policy's resource is
		// the queue's own ARN, so the principal is what SQS refused: since
		// 2025 it checks that the principal exists.
		return "", fmt.Errorf("create queue %s for agent %s: %w", name, id, &PrincipalError{
			Msg:   fmt.Sprintf("SQS rejected the queue policy for principal %s: it must be an existing IAM role, user or account", resourceARN),
			cause: err,
		})
	case err != nil:
		return "", fmt.Errorf("create queue %s for agent %s: %w", name, id, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// MaxBatch is the most messages one SendMessages call takes: SQS's limit
// for SendMessageBatch.
const MaxBatch = 10

// BatchFailure is one message of a batch that SQS did not take.
type BatchFailure struct {
	ID          string // the Message.ID of the entry
	Code        string
	Message     string
	SenderFault bool // true: resending the same message fails again
}

// SendMessages sends msgs (at most MaxBatch) to the FIFO queue at queueURL
// in one SendMessageBatch call, in slice order, and returns the entries SQS
// did not take. It does not retry: the caller decides what to resend. When
// the queue does not exist (whether SQS says so for the call or for an
// entry) the error wraps ErrQueueMissing. When SQS refuses the whole batch
// as invalid (more than MaxBatch entries, entry ids not distinct, the
// batch too long) the error wraps ErrRejected: sending the same batch
// again fails again, though its messages may go through in smaller
// batches. An entry SQS refuses on its own is a BatchFailure with
// SenderFault set instead. Sending no messages does nothing.
func (s *Store) SendMessages(ctx context.Context, queueURL string, msgs []QueueMessage) (failed []BatchFailure, err error) {
	if len(msgs) > MaxBatch {
		return nil, fmt.Errorf("send %d messages to queue %s: %w: at most %d per batch", len(msgs), queueURL, ErrRejected, MaxBatch)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	entries := make([]sqstypes.SendMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = sqstypes.SendMessageBatchRequestEntry{
			Id:                     aws.String(m.ID),
			MessageBody:            aws.String(m.Body),
			MessageGroupId:         aws.String(m.GroupID),
			MessageDeduplicationId: aws.String(m.DedupID),
		}
	}
	out, err := s.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("send %d messages to queue %s: %w", len(msgs), queueURL, sendError(err))
	}
	for _, f := range out.Failed {
		code := aws.ToString(f.Code)
		if code == codeQueueDoesNotExist || code == codeQueueDoesNotExistLegacy {
			// Some endpoints (the emulator) report a missing queue per
			// entry rather than for the call.
			return nil, fmt.Errorf("send %d messages to queue %s: entry %s: %w: %s", len(msgs), queueURL, aws.ToString(f.Id), ErrQueueMissing, code)
		}
		failed = append(failed, BatchFailure{
			ID:          aws.ToString(f.Id),
			Code:        code,
			Message:     aws.ToString(f.Message),
			SenderFault: f.SenderFault,
		})
	}
	return failed, nil
}

// sendError wraps a failed SendMessageBatch's err with what callers
// branch on: ErrQueueMissing, ErrBatchTooLong (and ErrRejected), or
// ErrRejected when SQS refused it as invalid.
func sendError(err error) error {
	switch {
	case hasCode(err, codeQueueDoesNotExist, codeQueueDoesNotExistLegacy):
		return fmt.Errorf("%w: %w", ErrQueueMissing, err)
	case hasCode(err, codeBatchRequestTooLong, codeBatchRequestTooLongLegacy):
		return fmt.Errorf("%w: %w: %w", ErrBatchTooLong, ErrRejected, err)
	}
	return rejectable(err)
}
