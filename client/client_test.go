package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fanout/fanout/auth"
)

func testConfig(url string) Config {
	return Config{URL: url, AWS: aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIAEXAMPLE", "secret", "")}}
}

// TestPublishRetriesTheSameEvents: a 503 is retried after Retry-After with
// the very same body (eventIds and timestamps filled in once), with a
// token fanout would parse, and the receipts of the attempt that took are
// returned.
func TestPublishRetriesTheSameEvents(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, err := auth.ParseToken(tok); !ok || err != nil {
			t.Errorf("request %d carries no good token: %v", n, err)
		}
		if n < 3 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"event stream unavailable, retry later"}`, http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"events":[{"eventId":"x","shardId":"s","sequenceNumber":"1"}]}`))
	}))
	defer srv.Close()
	start := time.Now()
	rs, err := New(testConfig(srv.URL)).Publish(context.Background(), Event{AgentID: "p", EventType: "t", Data: json.RawMessage(`1`)})
	if err != nil || len(rs) != 1 || rs[0].SequenceNumber != "1" {
		t.Fatalf("Publish = %v, %v", rs, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 3 || bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Fatalf("attempts sent %q, want three identical bodies", bodies)
	}
	var sent []Event
	json.Unmarshal([]byte(bodies[0]), &sent)
	if sent[0].EventID == "" || sent[0].Timestamp == "" {
		t.Errorf("sent %+v: want eventId and timestamp filled in", sent[0])
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("3 attempts in %s: Retry-After (1 s) not honoured", d)
	}
}

// TestPublishDoesNotRetryRefusals: a 4xx is the caller's to fix.
func TestPublishDoesNotRetryRefusals(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"only agent p's own principal may publish its events"}`))
	}))
	defer srv.Close()
	_, err := New(testConfig(srv.URL)).Publish(context.Background(), Event{AgentID: "p", EventType: "t"})
	if StatusOf(err) != 403 || !strings.Contains(err.Error(), "only agent p's own principal") || calls.Load() != 1 {
		t.Errorf("Publish = %v after %d calls, want the 403 and its message after 1", err, calls.Load())
	}
}

// fakeQueue hands out batches and records deletes and releases.
type fakeQueue struct {
	mu       sync.Mutex
	batches  [][]types.Message
	deleted  []string
	released []string
}

func (q *fakeQueue) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	q.mu.Lock()
	if len(q.batches) > 0 {
		b := q.batches[0]
		q.batches = q.batches[1:]
		q.mu.Unlock()
		return &sqs.ReceiveMessageOutput{Messages: b}, nil
	}
	q.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

func (q *fakeQueue) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, nil
}

func (q *fakeQueue) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = append(q.released, aws.ToString(in.ReceiptHandle))
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func message(id string) types.Message {
	return types.Message{MessageId: aws.String(id), ReceiptHandle: aws.String(id), Body: aws.String(`{"eventId":"` + id + `","agentId":"p"}`)}
}

// TestConsumer: messages go to the handler in order and are deleted after
// it succeeds; a failure puts that message and the rest of its batch back
// at once, unhandled; cancellation stops Run with nil.
func TestConsumer(t *testing.T) {
	t.Parallel()
	q := &fakeQueue{batches: [][]types.Message{{message("a"), message("b"), message("c")}, {message("b"), message("c")}}}
	ctx, cancel := context.WithCancel(context.Background())
	var handled []string
	var errs []error
	failB := true
	err := (&Consumer{Queue: q, QueueURL: "q", Errors: func(err error) { errs = append(errs, err) }}).Run(ctx, func(_ context.Context, m Message) error {
		handled = append(handled, m.EventID)
		if m.EventID == "b" && failB {
			failB = false
			return errors.New("not now")
		}
		if m.EventID == "c" && !failB {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run = %v, want nil after cancellation", err)
	}
	if got := strings.Join(handled, ","); got != "a,b,b,c" {
		t.Errorf("handled %s, want a,b,b,c (c never before b)", got)
	}
	if got := strings.Join(q.deleted, ","); got != "a,b,c" {
		t.Errorf("deleted %s, want a,b,c", got)
	}
	if got := strings.Join(q.released, ","); got != "b,c" {
		t.Errorf("released %s, want b,c (the failed message and the rest of its batch)", got)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "event b") {
		t.Errorf("errors reported %v, want the handler's failure on b", errs)
	}
}

// repeatingQueue hands out the same batch on every receive.
type repeatingQueue struct {
	fakeQueue
	batch    []types.Message
	receives int
}

func (q *repeatingQueue) ReceiveMessage(ctx context.Context, _ *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.receives++
	return &sqs.ReceiveMessageOutput{Messages: q.batch}, ctx.Err()
}

// TestConsumerBacksOff: a handler that keeps failing does not turn the
// consumer into a tight receive loop, and a message that is not a fanout
// message is left to the queue's visibility timeout, not put back at once.
func TestConsumerBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		junk := types.Message{MessageId: aws.String("junk"), ReceiptHandle: aws.String("junk"), Body: aws.String("not json")}
		q := &repeatingQueue{batch: []types.Message{junk, message("a")}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := &Consumer{Queue: q, QueueURL: "q"}
		if err := c.Run(ctx, func(context.Context, Message) error { return errors.New("down") }); err != nil {
			t.Fatal(err)
		}
		if q.receives > 40 {
			t.Errorf("%d receives in 30 s of failures, want the consumer to back off (up to 5 s between tries)", q.receives)
		}
		if slices.Contains(q.released, "junk") {
			t.Errorf("released %v: a message that is not a fanout message must wait for its visibility timeout", q.released)
		}
		if !slices.Contains(q.released, "a") {
			t.Errorf("released %v, want the rest of the batch (a) put back", q.released)
		}
	})
}
