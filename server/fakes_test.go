package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

// The handlers' tests run over memstore, which behaves as *store.Store
// does (package storetest holds both to that). The wrappers below add what
// a test needs beyond it: call records and injected failures.

// clock is the in-memory store's: agents registered in a test are created
// then (2025-07-01T12:00:00.123Z once stored).
func clock() time.Time {
	return time.Date(2025, 7, 1, 14, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
}

// recordingAgents is the store's RegisterAgent and Agent, recording their
// calls, failing or misbehaving as a test says.
type recordingAgents struct {
	*memstore.Store
	mu          sync.Mutex
	errFor      map[string]error // Agent(id) fails with this
	registerErr error
	block       bool // Agent waits for ctx to end, then returns ctx.Err()
	panics      bool // Agent panics
	registered  []string
	lookedUp    []string
}

// newRecordingAgents returns the agents of st, with agent ids known:
// each with a queue and a resource ARN named after its id.
func newRecordingAgents(st *memstore.Store, ids ...string) *recordingAgents {
	for _, id := range ids {
		st.AddAgent(store.Agent{ID: id, QueueURL: "https://sqs.example/agents-" + id + ".fifo",
			ResourceARN: "arn:aws:iam::123456789012:role/" + id, CreatedAt: time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)})
	}
	return &recordingAgents{Store: st, errFor: map[string]error{}}
}

func (f *recordingAgents) RegisterAgent(ctx context.Context, arn string) (store.Agent, error) {
	f.mu.Lock()
	f.registered = append(f.registered, arn)
	err := f.registerErr
	f.mu.Unlock()
	if err != nil {
		return store.Agent{}, err
	}
	return f.Store.RegisterAgent(ctx, arn)
}

func (f *recordingAgents) Agent(ctx context.Context, id string) (store.Agent, error) {
	f.mu.Lock()
	f.lookedUp = append(f.lookedUp, id)
	block, panics, err := f.block, f.panics, f.errFor[id]
	f.mu.Unlock()
	switch {
	case panics:
		panic("fake agents: boom")
	case block:
		<-ctx.Done()
		return store.Agent{}, ctx.Err()
	case err != nil:
		return store.Agent{}, err
	}
	return f.Store.Agent(ctx, id)
}

func (f *recordingAgents) calls() (registered, lookedUp []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.registered...), append([]string(nil), f.lookedUp...)
}

// recordingSubs is the store's subscriptions, recording the calls that
// change them; err, when set, fails every call.
type recordingSubs struct {
	*memstore.Store
	mu           sync.Mutex
	err          error
	subscribed   [][2]string // {producer, subscriber}
	unsubscribed [][2]string
}

func (f *recordingSubs) Subscribe(ctx context.Context, producerID, subscriberID string, filter []byte) error {
	f.mu.Lock()
	f.subscribed = append(f.subscribed, [2]string{producerID, subscriberID})
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.Subscribe(ctx, producerID, subscriberID, filter)
}

func (f *recordingSubs) Unsubscribe(ctx context.Context, producerID, subscriberID string) error {
	f.mu.Lock()
	f.unsubscribed = append(f.unsubscribed, [2]string{producerID, subscriberID})
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.Unsubscribe(ctx, producerID, subscriberID)
}

func (f *recordingSubs) Producers(ctx context.Context, subscriberID string) ([]store.Subscription, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.Store.Producers(ctx, subscriberID)
}

// fakePublisher records every Publish call and answers with receipts
// "shardId-<agentId>" / "seq-<index>", or err.
type fakePublisher struct {
	mu      sync.Mutex
	err     error
	short   bool // return one receipt too few
	onCall  func(ctx context.Context)
	batches [][]event.Event
}

func (f *fakePublisher) Publish(ctx context.Context, events []event.Event) ([]event.Receipt, error) {
	if f.onCall != nil {
		f.onCall(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, append([]event.Event(nil), events...))
	if f.err != nil {
		return nil, f.err
	}
	out := make([]event.Receipt, len(events))
	for i, ev := range events {
		out[i] = event.Receipt{EventID: ev.EventID, ShardID: "shardId-" + ev.AgentID, SequenceNumber: fmt.Sprintf("seq-%d", i)}
	}
	if f.short {
		out = out[1:]
	}
	return out, nil
}

func (f *fakePublisher) published() [][]event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]event.Event(nil), f.batches...)
}

// fakeReadiness answers Ready with err, or blocks until ctx ends.
type fakeReadiness struct {
	err   error
	block bool
	calls int
	mu    sync.Mutex
}

func (f *fakeReadiness) Ready(ctx context.Context) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return fmt.Errorf("readiness check: %w", ctx.Err())
	}
	return f.err
}

// fixture is a handler under test with its fakes and its log.
type fixture struct {
	h      http.Handler
	store  *memstore.Store // behind agents and subs
	agents *recordingAgents
	subs   *recordingSubs
	pub    *fakePublisher
	ready  *fakeReadiness
	logs   *observer.ObservedLogs
}

func newFixture(t *testing.T, cfg Config, agentIDs ...string) *fixture {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	st := memstore.New(clock)
	f := &fixture{store: st, agents: newRecordingAgents(st, agentIDs...), subs: &recordingSubs{Store: st},
		pub: &fakePublisher{}, ready: &fakeReadiness{}, logs: logs}
	f.h = New(cfg, Deps{Agents: f.agents, Subscriptions: f.subs, Events: f.pub, Ready: f.ready, DeadLetters: st, Redriver: refusingRedriver{}}, zap.New(core))
	return f
}

// do sends one request through the handler. A non-empty contentType is
// set as the Content-Type header.
func (f *fixture) do(t *testing.T, method, path, contentType string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if err := apiDoc(t).Check(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("answer not in the OpenAPI document: %v", err)
	}
	return rec
}

func (f *fixture) doJSON(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return f.do(t, method, path, "application/json", strings.NewReader(body))
}

// errorMessage checks that rec is a JSON error body, exactly
// {"error": "..."}, and returns the message.
func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	var body struct {
		Error *string `json:"error"`
	}
	if err := dec.Decode(&body); err != nil || body.Error == nil || *body.Error == "" {
		t.Fatalf("body %q is not {\"error\": \"<message>\"} (decode error %v)", rec.Body.String(), err)
	}
	return *body.Error
}

// checkStatus fails t unless rec has status want.
func checkStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, want, rec.Body.String())
	}
}

// checkErrorContains checks status and that the error message holds every
// one of parts.
func checkErrorContains(t *testing.T, rec *httptest.ResponseRecorder, status int, parts ...string) {
	t.Helper()
	checkStatus(t, rec, status)
	msg := errorMessage(t, rec)
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not contain %q", msg, p)
		}
	}
}

// refusingRedriver redrives nothing: the server's tests of the dead-letter
// routes run end to end (app), where the real Redriver is wired.
type refusingRedriver struct{}

func (refusingRedriver) Redrive(context.Context, string) (store.DeadLetter, error) {
	return store.DeadLetter{}, store.ErrNotFound
}
