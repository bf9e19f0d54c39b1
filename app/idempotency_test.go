package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/pipeline"
	"github.com/fanout/fanout/store"
)

// TestRepeatedEventIDDeliveredOnce: an event is identified by (producer,
// eventId), not by SQS's five-minute deduplication. A retry with the same
// eventId is delivered to no one, whatever its timestamp or body, through
// the API or straight into Kinesis, and also after the first copy was
// consumed and deleted: the emulator's SQS delivers a repeated
// deduplication id once the original has left the queue, so only fanout's
// own check can have dropped the copies below.
func TestRepeatedEventIDDeliveredOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "idempotent")
	producer := register(t, s, "p")
	subs := []store.Agent{register(t, s, "s1"), register(t, s, "s2")}
	for _, sub := range subs {
		subscribe(t, s, sub, producer)
	}
	withID := func(id string, n int, extra ...string) postEvent {
		data := map[string]any{"n": n}
		for _, k := range extra {
			data[k] = true
		}
		return postEvent{AgentID: producer.ID, EventType: "order", EventID: id, Data: data}
	}
	got := make([][]event.Message, len(subs))
	consume := func(until int) {
		t.Helper()
		var wg sync.WaitGroup
		for i, sub := range subs {
			wg.Go(func() {
				got[i] = receive(t, e, sub.QueueURL, deliveryTimeout, func(m []event.Message) bool {
					return len(m) > 0 && dataN(m[len(m)-1]) >= until
				})
			})
		}
		wg.Wait()
	}

	// The README's retry: the same event posted twice, 0.3 s apart, so the
	// server stamps each with its own time.
	publish(t, s, withID("order-77", 0))
	time.Sleep(300 * time.Millisecond) // the scenario's spacing, not a wait for a condition
	publish(t, s, withID("order-77", 0))
	publish(t, s, withID("order-78", 1))
	consume(1) // both copies of the first events are received and deleted
	first := slices.Clone(got)

	// Past SQS's window, in effect: the originals are gone from the queues.
	publish(t, s, withID("order-78", 1))
	// The same id with another body: the first one counts.
	publish(t, s, withID("order-79", 2))
	publish(t, s, withID("order-79", 99, "changed"))
	// Once through the API, once straight into Kinesis.
	publish(t, s, withID("order-80", 3))
	e.putRecord(t, producer.ID, fmt.Sprintf(`{"eventId":"order-80","agentId":%q,"eventType":"order","data":{"n":98}}`, producer.ID))
	// A new event last: once it arrives, every copy before it has been
	// through the pipeline (one producer, one shard, one message group).
	publish(t, s, withID("order-81", 4))
	consume(4)

	for i, sub := range subs {
		msgs := append(first[i], got[i]...)
		e.checkDelivered(t, sub.ID, msgs, map[string]int{producer.ID: 5})
		for _, m := range msgs {
			if strings.Contains(string(m.Data), "changed") {
				t.Errorf("subscriber %s got the changed copy of %s: %s", sub.ID, m.EventID, m.Data)
			}
		}
	}
}

// failSends returns an API option that fails every SendMessageBatch to the
// queue whose URL *victim holds (none while it is empty) with err.
func failSends(victim *atomic.Value, err error) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test-fail-sends",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if send, ok := in.Parameters.(*sqs.SendMessageBatchInput); ok {
					if url, _ := victim.Load().(string); url != "" && aws.ToString(send.QueueUrl) == url {
						return middleware.InitializeOutput{}, middleware.Metadata{}, err
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
}

// TestFailingEntryIsSetAside: an entry that keeps failing for a reason of
// its own (here a response that never passes its checksum) is set aside in
// the dead letters within the bound, while another producer's events to
// another agent are delivered; the agent's later events flow again.
func TestFailingEntryIsSetAside(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var victim atomic.Value
	e.awsCfg.APIOptions = append(e.awsCfg.APIOptions, failSends(&victim, fmt.Errorf("validate message checksum: MD5 returned by SQS does not match")))
	s := e.start(t, "poison")
	p1, p2 := register(t, s, "p1"), register(t, s, "p2")
	stuck, fine := register(t, s, "stuck"), register(t, s, "fine")
	subscribe(t, s, stuck, p1)
	subscribe(t, s, fine, p2)
	victim.Store(stuck.QueueURL)

	start := time.Now()
	poison := publish(t, s, numbered(p1, 0, 1)...)[0]
	publish(t, s, numbered(p2, 0, 3)...)
	msgs := receive(t, e, fine.QueueURL, deliveryTimeout, count(3))
	e.checkDelivered(t, fine.ID, msgs, map[string]int{p2.ID: 3})

	var letter store.DeadLetter
	waitFor(t, deliveryTimeout, "the failing entry in the dead letters", func() bool {
		letters, err := e.store.DeadLetters(context.Background())
		if err != nil || len(letters) == 0 {
			return false
		}
		letter = letters[0]
		return true
	})
	t.Logf("set aside %s after the entry started failing", time.Since(start).Round(time.Millisecond))
	var m event.Message
	if err := json.Unmarshal(letter.Data, &m); err != nil || letter.Stage != "publisher" || m.EventID != poison.EventID || m.SubscriberID != stuck.ID ||
		!strings.Contains(letter.Reason, "MD5") {
		t.Errorf("dead letter %+v (data %s): want the publisher's, of event %s for %s, with the failure as its reason", letter, letter.Data, poison.EventID, stuck.ID)
	}

	victim.Store("")
	publish(t, s, numbered(p1, 1, 1)...)
	later := receive(t, e, stuck.QueueURL, deliveryTimeout, count(1))
	if len(later) != 1 || dataN(later[0]) != 1 {
		t.Errorf("after the fault: %+v, want the later event n=1 only", later)
	}
}

// TestStuckWorkerNamedInReadiness: a call that fails because the service
// fails (throttling) is retried for as long as it takes, and once it has
// failed for pipeline.StuckAfter /readyz says which shard is stuck and why;
// when the service recovers the event is delivered and the task is ready.
func TestStuckWorkerNamedInReadiness(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var victim atomic.Value
	e.awsCfg.APIOptions = append(e.awsCfg.APIOptions, failSends(&victim, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}))
	s := e.start(t, "stuck")
	p, sub := register(t, s, "p"), register(t, s, "s")
	subscribe(t, s, sub, p)
	victim.Store(sub.QueueURL)
	publish(t, s, numbered(p, 0, 1)...)

	var reason string
	waitFor(t, pipeline.StuckAfter+deliveryTimeout, "/readyz naming the stuck publisher", func() bool {
		status, body := call(t, "GET", s.url+"/readyz", nil)
		reason = string(body)
		return status == 503 && strings.Contains(reason, "publisher stuck on shard") && strings.Contains(reason, "ThrottlingException") && strings.Contains(reason, sub.ID)
	})
	t.Logf("/readyz: %s", reason)
	if letters, err := e.store.DeadLetters(context.Background()); err != nil || len(letters) != 0 {
		t.Errorf("dead letters %v, %v: a throttled service must be retried, not set aside", letters, err)
	}

	victim.Store("")
	msgs := receive(t, e, sub.QueueURL, deliveryTimeout, count(1))
	e.checkDelivered(t, sub.ID, msgs, map[string]int{p.ID: 1})
	waitReady(t, s.url)
}
