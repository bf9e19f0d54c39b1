package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fanout/fanout/app"
	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/awstest"
	"github.com/fanout/fanout/internal/openapitest"
	"github.com/fanout/fanout/server"
	"github.com/fanout/fanout/store"
)

// apiClient is the HTTP client of every request the end-to-end tests send
// to fanout: it checks each answer against the API's OpenAPI document
// (server/openapi.json), so an answer the document does not describe
// fails the request, and with it the test.
var apiClient = &http.Client{Transport: mustChecker().Transport(nil)}

func mustChecker() *openapitest.Checker {
	c, err := openapitest.New(server.OpenAPI())
	if err != nil {
		panic(err)
	}
	return c
}

// deliveryTimeout bounds every wait for messages: generous for a loaded
// 2-core CI machine, far above the sub-second latency measured.
const deliveryTimeout = 60 * time.Second

// env is one isolated fanout deployment on the test endpoint: its own
// stream, tables and lease tables.
type env struct {
	cfg    app.Config
	awsCfg aws.Config
	sqs    *sqs.Client
	store  *store.Store
	// redelivered: a test consumer got a message a second time (see
	// receiveOnce).
	redelivered atomic.Bool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := awstest.Name(t, "e2e")
	cfg, err := app.ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Stream = n + "-events"
	cfg.AgentsTable = n + "-agents"
	cfg.SubscribersTable = n + "-subscribers"
	cfg.SubscriberEventsTable = n + "-subscriber-events"
	cfg.DeadLettersTable = n + "-dead-letters"
	cfg.EventIDsTable = n + "-event-ids"
	cfg.ReplaysTable = n + "-replays"
	cfg.AggregatorLeaseTable = n + "-aggregator"
	cfg.PublisherLeaseTable = n + "-publisher"
	cfg.CreateResources = true
	cfg.ShutdownTimeout = 20 * time.Second
	// These tests are about delivery; auth_test.go runs the same wiring
	// with FANOUT_AUTH=iam.
	cfg.Auth = app.AuthNone
	awsCfg := awstest.Config(t)
	return &env{
		cfg:    cfg,
		awsCfg: awsCfg,
		sqs:    sqs.NewFromConfig(awsCfg),
		store: store.New(awstest.DynamoDB(t), awstest.SQS(t), store.Tables{
			Agents: cfg.AgentsTable, Subscribers: cfg.SubscribersTable,
			SubscriberEvents: cfg.SubscriberEventsTable, DeadLetters: cfg.DeadLettersTable,
			EventIDs: cfg.EventIDsTable, Replays: cfg.ReplaysTable,
		}, store.Account{Partition: "aws", Region: "us-east-1", ID: "000000000000"}),
	}
}

// putRecord puts data straight into e's stream, as a producer may, and
// returns its sequence number.
func (e *env) putRecord(t testing.TB, partitionKey, data string) string {
	t.Helper()
	out, err := kinesis.NewFromConfig(e.awsCfg).PutRecord(context.Background(), &kinesis.PutRecordInput{
		StreamName: aws.String(e.cfg.Stream), PartitionKey: aws.String(partitionKey), Data: []byte(data),
	})
	if err != nil {
		t.Fatalf("PutRecord: %v", err)
	}
	return aws.ToString(out.SequenceNumber)
}

// service is one running fanout task.
type service struct {
	url    string
	app    *app.App
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start runs a fanout task on e through the production wiring and waits
// until it is ready. It is stopped at the end of the test if still running.
func (e *env) start(t testing.TB, workerID string) *service {
	t.Helper()
	cfg := e.cfg
	cfg.WorkerID = workerID
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, e.awsCfg, testLogger(t))
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	s := &service{url: "http://" + a.Addr(), app: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(func() { s.stop(t) })
	waitReady(t, s.url)
	return s
}

// waitReady polls GET /readyz at url until it answers 200.
func waitReady(t testing.TB, url string) {
	t.Helper()
	waitFor(t, 30*time.Second, "service ready", func() bool {
		resp, err := apiClient.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop stops the task the way SIGTERM does (main's signal context is
// cancelled) and fails the test unless it stops cleanly and in time.
func (s *service) stop(t testing.TB) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("service stopped with error: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("service did not stop within 40 s")
		}
	})
}

// testLogger collects the service's logs and prints them only when the
// test fails (writes after the test ends are kept harmlessly).
func testLogger(t testing.TB) *zap.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("service logs:\n%s", buf.String())
			mu.Unlock()
		}
	})
	w := zapcore.AddSync(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}))
	enc := zap.NewDevelopmentEncoderConfig()
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), w, zapcore.InfoLevel))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends a JSON request and returns the status and body.
func call(t testing.TB, method, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// mustCall is call that fails the test unless the status is want.
func mustCall(t testing.TB, want int, method, url string, body any) []byte {
	t.Helper()
	got, out := call(t, method, url, body)
	if got != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, url, got, want, out)
	}
	return out
}

// register creates an agent for a fresh role ARN.
func register(t testing.TB, s *service, name string) store.Agent {
	t.Helper()
	arn := fmt.Sprintf("arn:aws:iam::123456789012:role/%s", awstest.Name(t, name))
	var a store.Agent
	if err := json.Unmarshal(mustCall(t, 200, "POST", s.url+"/agents", map[string]string{"resourceArn": arn}), &a); err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.QueueURL == "" {
		t.Fatalf("registration returned %+v", a)
	}
	return a
}

func subscribe(t testing.TB, s *service, listener, producer store.Agent) {
	t.Helper()
	mustCall(t, 204, "PUT", s.url+"/agents/"+listener.ID+"/subscriptions/"+producer.ID, nil)
}

// event is a test event: data carries the producer's running number.
type postEvent struct {
	AgentID   string         `json:"agentId"`
	EventType string         `json:"eventType"`
	Timestamp string         `json:"timestamp,omitempty"`
	EventID   string         `json:"eventId,omitempty"`
	Data      map[string]any `json:"data"`
}

type receipts struct {
	Events []event.Receipt `json:"events"`
}

// publish posts events (an array) and returns their receipts.
func publish(t testing.TB, s *service, events ...postEvent) []event.Receipt {
	t.Helper()
	var r receipts
	if err := json.Unmarshal(mustCall(t, 202, "POST", s.url+"/events", events), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != len(events) {
		t.Fatalf("got %d receipts for %d events", len(r.Events), len(events))
	}
	return r.Events
}

func numbered(producer store.Agent, from, n int) []postEvent {
	out := make([]postEvent, n)
	for i := range out {
		out[i] = postEvent{AgentID: producer.ID, EventType: "counted", Data: map[string]any{"n": from + i}}
	}
	return out
}

// receive drains messages from a queue until until(got) holds, deleting
// what it receives; it fails the test after timeout.
func receive(t testing.TB, e *env, queueURL string, timeout time.Duration, until func([]event.Message) bool) []event.Message {
	t.Helper()
	var got []event.Message
	deadline := time.Now().Add(timeout)
	for !until(got) {
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: timed out after %s with %d messages", queueURL, timeout, len(got))
		}
		got = append(got, receiveOnce(t, e, queueURL)...)
	}
	return got
}

// receiveOnce long-polls a queue once (up to 1 s) and deletes what it got.
func receiveOnce(t testing.TB, e *env, queueURL string) []event.Message {
	t.Helper()
	msgs, _ := receiveTimed(t, e, queueURL)
	return msgs
}

// receiveTimed is receiveOnce that also returns when SQS accepted each
// message (its SentTimestamp attribute, in milliseconds).
func receiveTimed(t testing.TB, e *env, queueURL string) ([]event.Message, []time.Time) {
	t.Helper()
	out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("receive from %s: %v", queueURL, err)
	}
	if len(out.Messages) == 0 {
		return nil, nil
	}
	got := make([]event.Message, 0, len(out.Messages))
	sentAt := make([]time.Time, 0, len(out.Messages))
	entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
	for i, m := range out.Messages {
		var msg event.Message
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &msg); err != nil {
			t.Fatalf("message body %q: %v", aws.ToString(m.Body), err)
		}
		// Emulator gap: kumo returns neither MessageGroupId nor
		// MessageDeduplicationId (pipeline's unit tests check what is
		// sent); AWS does, and then they are checked here too.
		if g, ok := m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]; ok && g != msg.AgentID {
			t.Errorf("message %s: MessageGroupId %q, want the producer %q", msg.EventID, g, msg.AgentID)
		}
		if d, ok := m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageDeduplicationId)]; ok && d != event.DeduplicationID(msg.AgentID, msg.EventID) {
			t.Errorf("message %s: MessageDeduplicationId %q, want one derived from the eventId", msg.EventID, d)
		}
		if n, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]); n > 1 {
			// A receive of ours whose answer was lost left messages in
			// flight until their visibility timeout. Both known causes are
			// fixed: the test proxy cutting answers (awstest.readBody) and
			// net/http closing a connection under an answer (sdkbody).
			e.redelivered.Store(true)
			t.Logf("message %s received for the %d. time: the emulator redelivered it", msg.EventID, n)
		}
		ms, _ := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64)
		got, sentAt = append(got, msg), append(sentAt, time.UnixMilli(ms))
		entries[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
	}
	if _, err := e.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries}); err != nil {
		t.Fatalf("delete from %s: %v", queueURL, err)
	}
	return got, sentAt
}

// count returns a condition that holds once n messages arrived.
func count(n int) func([]event.Message) bool {
	return func(m []event.Message) bool { return len(m) >= n }
}

// queued returns how many messages wait in a queue (visible or not).
func queued(t testing.TB, e *env, queueURL string) int {
	t.Helper()
	out, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	if err != nil {
		t.Fatalf("queue attributes of %s: %v", queueURL, err)
	}
	var n, m int
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &n)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &m)
	return n + m
}

// checkDelivered is checkExactlyOnceInOrder, except after a redelivery to
// a test consumer. Emulator gap (AWS-NOTES): kumo puts messages whose
// visibility timeout expired back in random order (it walks a map), where
// SQS FIFO keeps their order. Order is then checked after sorting, so the
// test still proves nothing was lost or duplicated, and says so.
func (e *env) checkDelivered(t testing.TB, subscriber string, msgs []event.Message, want map[string]int) {
	t.Helper()
	if e.redelivered.Load() {
		t.Logf("order not checked: the emulator redelivered messages to the test consumer in random order")
		msgs = slices.Clone(msgs)
		slices.SortStableFunc(msgs, func(a, b event.Message) int {
			if c := strings.Compare(a.AgentID, b.AgentID); c != 0 {
				return c
			}
			return dataN(a) - dataN(b)
		})
	}
	checkExactlyOnceInOrder(t, subscriber, msgs, want)
}

func dataN(m event.Message) int {
	var d struct{ N int }
	json.Unmarshal(m.Data, &d)
	return d.N
}

// checkExactlyOnceInOrder asserts that msgs hold, for each producer in
// want, exactly the numbers 0..want[producer]-1 in order, and nothing else.
func checkExactlyOnceInOrder(t testing.TB, subscriber string, msgs []event.Message, want map[string]int) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.SubscriberID != subscriber {
			t.Errorf("subscriber %s got a message for %s", subscriber, m.SubscriberID)
		}
		if seen[m.EventID] {
			t.Errorf("subscriber %s: duplicate event %s", subscriber, m.EventID)
			continue
		}
		seen[m.EventID] = true
		if _, ok := want[m.AgentID]; !ok {
			t.Errorf("subscriber %s: event %s from producer %s it does not follow", subscriber, m.EventID, m.AgentID)
			continue
		}
		var d struct{ N int }
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatalf("data %s: %v", m.Data, err)
		}
		if d.N != next[m.AgentID] {
			t.Errorf("subscriber %s, producer %s: got n=%d, want n=%d (order or loss)", subscriber, m.AgentID, d.N, next[m.AgentID])
		}
		next[m.AgentID] = d.N + 1
	}
	for p, n := range want {
		if next[p] != n {
			t.Errorf("subscriber %s, producer %s: got %d events, want %d", subscriber, p, next[p], n)
		}
	}
}

// checkNumbers asserts that msgs are exactly producer's events numbered
// (data n) want, in that order, each once, all for subscriber: what a
// subscriber with a filter gets. After a redelivery to a test consumer
// order is checked after sorting, as checkDelivered does.
func (e *env) checkNumbers(t testing.TB, subscriber, producer string, msgs []event.Message, want []int) {
	t.Helper()
	if e.redelivered.Load() {
		t.Logf("order not checked: the emulator redelivered messages to the test consumer in random order")
		msgs = slices.Clone(msgs)
		slices.SortStableFunc(msgs, func(a, b event.Message) int { return dataN(a) - dataN(b) })
	}
	got := make([]int, 0, len(msgs))
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.SubscriberID != subscriber || m.AgentID != producer {
			t.Errorf("subscriber %s got event %s of producer %s for subscriber %s, want only %s's for itself", subscriber, m.EventID, m.AgentID, m.SubscriberID, producer)
		}
		if seen[m.EventID] {
			t.Errorf("subscriber %s: duplicate event %s", subscriber, m.EventID)
		}
		seen[m.EventID] = true
		got = append(got, dataN(m))
	}
	if !slices.Equal(got, want) {
		t.Errorf("subscriber %s, producer %s: got events n=%v, want n=%v", subscriber, producer, got, want)
	}
}
