package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// testQueue registers an agent for t and returns its queue URL.
func testQueue(t *testing.T, s *Store) string {
	t.Helper()
	a, err := s.RegisterAgent(testContext(t), roleARN(t))
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	return a.QueueURL
}

// messages returns n messages of group g, ids and bodies g-0, g-1, ...
func messages(g string, n int) []QueueMessage {
	msgs := make([]QueueMessage, n)
	for i := range msgs {
		id := fmt.Sprintf("%s-%d", g, i)
		msgs[i] = QueueMessage{ID: id, GroupID: g, DedupID: id, Body: id}
	}
	return msgs
}

// TestSendMessagesOrder sends two producers' messages interleaved over
// several batches and receives each group back in the order sent.
func TestSendMessagesOrder(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	url := testQueue(t, s)

	a, b := messages("a", 15), messages("b", 15)
	var all []QueueMessage
	for i := range a {
		all = append(all, a[i], b[i])
	}
	for batch := range slices.Chunk(all, MaxBatch) {
		if failed, err := s.SendMessages(ctx, url, batch); err != nil || len(failed) != 0 {
			t.Fatalf("SendMessages = %+v, %v; want no failures", failed, err)
		}
	}

	_, q := clients(s)
	got := map[string][]string{}
	var received int
	poll(t, fmt.Sprintf("%d messages", len(all)), func() (bool, error) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			return false, err
		}
		for _, m := range out.Messages {
			body := aws.ToString(m.Body)
			g, _, _ := strings.Cut(body, "-") // bodies name their group
			got[g] = append(got[g], body)
			received++
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return false, err
			}
		}
		return received >= len(all), nil
	})
	for g, msgs := range map[string][]QueueMessage{"a": a, "b": b} {
		var want []string
		for _, m := range msgs {
			want = append(want, m.Body)
		}
		if !slices.Equal(got[g], want) {
			t.Errorf("group %s received %v, want %v", g, got[g], want)
		}
	}
}

func TestSendMessagesEntryFailure(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	url := testQueue(t, s)

	msgs := messages("a", 3)
	msgs[1].Body = "" // SQS refuses an empty body
	failed, err := s.SendMessages(ctx, url, msgs)
	if err != nil {
		t.Fatalf("SendMessages: %v", err)
	}
	if len(failed) != 1 || failed[0].ID != "a-1" || failed[0].Code == "" || !failed[0].SenderFault {
		t.Errorf("failed = %+v, want entry a-1 as a sender fault with a code", failed)
	}
}

func TestSendMessagesMissingQueue(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	url := testQueue(t, s)
	_, q := clients(s)
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	_, err := s.SendMessages(ctx, url, messages("a", 2))
	if !errors.Is(err, ErrQueueMissing) || errors.Is(err, ErrRejected) {
		t.Errorf("SendMessages to a deleted queue: error %v, want ErrQueueMissing and not ErrRejected", err)
	}
}

// TestSendMessagesRejected sends a batch SQS refuses as a whole: the error
// is ErrRejected and keeps SQS's answer.
func TestSendMessagesRejected(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	url := testQueue(t, s)
	msgs := messages("a", 2)
	msgs[1].ID = msgs[0].ID
	_, err := s.SendMessages(ctx, url, msgs)
	var ae smithy.APIError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.ErrorCode() != "BatchEntryIdsNotDistinct" {
		t.Errorf("SendMessages(two entries with id a-0) = %v; want ErrRejected wrapping BatchEntryIdsNotDistinct", err)
	}
}

func TestSendMessagesBatchSize(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{}, testAccount) // neither call may reach AWS
	ctx := testContext(t)
	if _, err := s.SendMessages(ctx, "http://unused", messages("a", MaxBatch+1)); !errors.Is(err, ErrRejected) {
		t.Errorf("SendMessages(%d messages) = %v, want ErrRejected", MaxBatch+1, err)
	}
	if failed, err := s.SendMessages(ctx, "http://unused", nil); err != nil || failed != nil {
		t.Errorf("SendMessages(none) = %v, %v; want nil, nil", failed, err)
	}
}

// TestSendError: what callers branch on for each SendMessageBatch failure
// (the emulator enforces no batch size, so the answers are built here).
func TestSendError(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		err                       error
		missing, tooLong, refused bool
	}{
		{"batch too long", sdkError(400, &sqstypes.BatchRequestTooLong{}), false, true, true},
		{"batch too long, legacy code", sdkError(400, generic("AWS.SimpleQueueService.BatchRequestTooLong")), false, true, true},
		{"queue missing", sdkError(400, &sqstypes.QueueDoesNotExist{}), true, false, false},
		{"ids not distinct", sdkError(400, &sqstypes.BatchEntryIdsNotDistinct{}), false, false, true},
		{"throttled", sdkError(400, generic("ThrottlingException")), false, false, false},
	} {
		err := sendError(tc.err)
		if errors.Is(err, ErrQueueMissing) != tc.missing || errors.Is(err, ErrBatchTooLong) != tc.tooLong || errors.Is(err, ErrRejected) != tc.refused {
			t.Errorf("%s: %v; want missing %v, too long %v, rejected %v", tc.name, err, tc.missing, tc.tooLong, tc.refused)
		}
	}
}
