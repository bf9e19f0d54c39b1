package pipeline

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

// The Aggregator's and Publisher's tests run over memstore, which behaves
// as *store.Store does (package storetest holds both to that). What the
// emulator cannot do — throttle, fail entries, refuse items — and the call
// records the tests check come from these wrappers, each embedding one
// memstore and overriding one method.

// newMemStore returns an in-memory store holding subs and the agents ids,
// each with its queue at queueURL(id).
func newMemStore(subs map[string][]store.Subscription, agents ...string) *memstore.Store {
	st := memstore.New(nil)
	for _, id := range agents {
		st.AddAgent(store.Agent{ID: id, QueueURL: queueURL(id)})
	}
	for _, list := range subs {
		for _, s := range list {
			st.AddSubscription(s)
		}
	}
	return st
}

// queueURL is the URL of agent id's queue in newMemStore.
func queueURL(id string) string { return "https://sqs.test/queue-" + id + ".fifo" }

// calls counts a wrapper's calls, per key and over all keys.
type calls struct {
	mu    sync.Mutex
	n     int
	perID map[string]int
}

// add counts a call for key and returns its number over all keys
// (0-based).
func (c *calls) add(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perID == nil {
		c.perID = map[string]int{}
	}
	c.perID[key]++
	c.n++
	return c.n - 1
}

// callsFor returns the calls counted for key.
func (c *calls) callsFor(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perID[key]
}

// flakySubscribers is the store's Subscribers, counted per producer. err,
// when set, may fail call n (0-based, counted over all producers).
type flakySubscribers struct {
	*memstore.Store
	err func(n int) error
	calls
}

func (f *flakySubscribers) Subscribers(ctx context.Context, producerID string) ([]store.Subscription, error) {
	n := f.add(producerID)
	if f.err != nil {
		if err := f.err(n); err != nil {
			return nil, err
		}
	}
	return f.Store.Subscribers(ctx, producerID)
}

// flakyAgents is the store's Agent, counted per id. err, when set, may
// fail call n (0-based).
type flakyAgents struct {
	*memstore.Store
	err func(n int) error
	calls
}

func (f *flakyAgents) Agent(ctx context.Context, id string) (store.Agent, error) {
	n := f.add(id)
	if f.err != nil {
		if err := f.err(n); err != nil {
			return store.Agent{}, err
		}
	}
	return f.Store.Agent(ctx, id)
}

// recordingEvents is the store's PutEvent and PutEventRun recording, per
// subscriber, the event id of every event of every call in order, and
// reporting overlapping writes for one subscriber and producer (their
// items must reach the table's stream in order). fail, when set, may fail
// the attempt-th try (0-based) of an event: a run fails when one of its
// events does. runs records the events of each call, per subscriber.
type recordingEvents struct {
	*memstore.Store
	t    *testing.T
	fail func(e store.SubscriberEvent, attempt int) error

	mu       sync.Mutex
	attempts map[string]int
	calls    map[string][]string // subscriber -> eventId of every event of every call, in order
	runs     map[string][][]string
	inFlight map[string]bool
	spans    int // RunSpans calls
}

// begin records a call writing events; it returns the failure fail
// chooses, if any.
func (f *recordingEvents) begin(events []store.SubscriberEvent) error {
	e := events[0]
	lane := e.SubscriberID + "/" + e.AgentID
	f.mu.Lock()
	if f.attempts == nil {
		f.attempts, f.calls, f.runs, f.inFlight = map[string]int{}, map[string][]string{}, map[string][][]string{}, map[string]bool{}
	}
	if f.inFlight[lane] {
		f.t.Errorf("write of %s while another write of subscriber %s and producer %s is in flight: its writes must be sequential", e.EventID, e.SubscriberID, e.AgentID)
	}
	f.inFlight[lane] = true
	var ids []string
	var err error
	for _, e := range events {
		ids = append(ids, e.EventID)
		key := e.SubscriberID + "/" + e.EventID
		attempt := f.attempts[key]
		f.attempts[key]++
		if f.fail != nil && err == nil {
			err = f.fail(e, attempt)
		}
	}
	f.calls[e.SubscriberID] = append(f.calls[e.SubscriberID], ids...)
	f.runs[e.SubscriberID] = append(f.runs[e.SubscriberID], ids)
	f.mu.Unlock()
	runtime.Gosched() // widen the window an overlapping write would hit
	return err
}

// end records that the call begin recorded for e is done.
func (f *recordingEvents) end(e store.SubscriberEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight[e.SubscriberID+"/"+e.AgentID] = false
}

func (f *recordingEvents) PutEvent(ctx context.Context, e store.SubscriberEvent) (bool, error) {
	defer f.end(e)
	if err := f.begin([]store.SubscriberEvent{e}); err != nil {
		return false, err
	}
	return f.Store.PutEvent(ctx, e)
}

func (f *recordingEvents) RunSpans(ctx context.Context, subscriberID, producerID, shardID, from, to string) ([]store.RunSpan, error) {
	f.mu.Lock()
	f.spans++
	f.mu.Unlock()
	return f.Store.RunSpans(ctx, subscriberID, producerID, shardID, from, to)
}

// spanReads is how many RunSpans calls f had.
func (f *recordingEvents) spanReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.spans
}

func (f *recordingEvents) PutEventRun(ctx context.Context, events []store.SubscriberEvent) (*store.RunSpan, error) {
	if len(events) == 0 {
		return f.Store.PutEventRun(ctx, events)
	}
	defer f.end(events[0])
	if err := f.begin(events); err != nil {
		return nil, err
	}
	return f.Store.PutEventRun(ctx, events)
}

// written returns the items created per subscriber, in order.
func (f *recordingEvents) written() map[string][]store.SubscriberEvent {
	f.mu.Lock()
	subs := make([]string, 0, len(f.calls))
	for sub := range f.calls {
		subs = append(subs, sub)
	}
	f.mu.Unlock()
	out := map[string][]store.SubscriberEvent{}
	for _, sub := range subs {
		if items := f.Events(sub); len(items) > 0 {
			out[sub] = items
		}
	}
	return out
}

// writtenIDs returns the eventIds created per subscriber, in order.
func (f *recordingEvents) writtenIDs() map[string][]string {
	out := map[string][]string{}
	for sub, items := range f.written() {
		for _, it := range items {
			out[sub] = append(out[sub], it.EventID)
		}
	}
	return out
}

// flakyEventIDs is the store's ClaimEventID, counted per eventId. fail,
// when set, may fail a claim.
type flakyEventIDs struct {
	*memstore.Store
	fail func(c store.EventClaim) error
	calls
}

func (f *flakyEventIDs) ClaimEventID(ctx context.Context, c store.EventClaim) (store.EventClaim, error) {
	f.add(c.EventID)
	if f.fail != nil {
		if err := f.fail(c); err != nil {
			return store.EventClaim{}, err
		}
	}
	return f.Store.ClaimEventID(ctx, c)
}

// flakyDeadLetters is the store's PutDeadLetter. fail, when set, may fail
// call n (0-based).
type flakyDeadLetters struct {
	*memstore.Store
	fail func(n int) error
	calls
}

func (f *flakyDeadLetters) PutDeadLetter(ctx context.Context, d store.DeadLetter) (bool, error) {
	n := f.add(d.ID)
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return false, err
		}
	}
	return f.Store.PutDeadLetter(ctx, d)
}

// all returns the dead letters, in the order created.
func (f *flakyDeadLetters) all() []store.DeadLetter {
	dls, _ := f.DeadLetters(context.Background()) // fails only when its context is done
	return dls
}

// failTimes returns a fail hook failing the first n calls.
func failTimes(n int, err error) func(int) error {
	return func(i int) error {
		if i < n {
			return err
		}
		return nil
	}
}

// sendCall is one SendMessages call a recordingSender saw.
type sendCall struct {
	url  string
	msgs []store.QueueMessage
}

// recordingSender is the store's SendMessages recording every call and
// checking it against SQS's batch limits. respond, when set, answers the
// n-th call (0-based) to url first: with an error, and nothing is sent,
// or with per-entry failures, and the other entries are sent.
type recordingSender struct {
	*memstore.Store
	t       *testing.T
	respond func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error)

	mu     sync.Mutex
	calls  []sendCall
	perURL map[string]int
}

func (f *recordingSender) SendMessages(ctx context.Context, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
	f.mu.Lock()
	if f.perURL == nil {
		f.perURL = map[string]int{}
	}
	n := f.perURL[url]
	f.perURL[url]++
	f.calls = append(f.calls, sendCall{url: url, msgs: slices.Clone(msgs)})
	f.mu.Unlock()
	if len(msgs) == 0 || len(msgs) > store.MaxBatch {
		f.t.Errorf("call %d: %d messages, want 1 to %d", n, len(msgs), store.MaxBatch)
	}
	size := 0
	ids := map[string]bool{}
	for _, m := range msgs {
		size += len(m.Body)
		if ids[m.ID] {
			f.t.Errorf("call %d: entry id %s twice", n, m.ID)
		}
		ids[m.ID] = true
	}
	if len(msgs) > 1 && size > maxBatchBytes {
		f.t.Errorf("call %d: %d messages of %d bytes, over the %d-byte batch limit", n, len(msgs), size, maxBatchBytes)
	}
	if f.respond == nil {
		return f.Store.SendMessages(ctx, url, msgs)
	}
	failed, err := f.respond(n, url, msgs)
	if err != nil {
		return nil, err
	}
	rest := slices.DeleteFunc(slices.Clone(msgs), func(m store.QueueMessage) bool {
		return slices.ContainsFunc(failed, func(b store.BatchFailure) bool { return b.ID == m.ID })
	})
	if _, err := f.Store.SendMessages(ctx, url, rest); err != nil {
		return nil, err
	}
	return failed, nil
}

// queue returns the messages the queue at url holds, in order.
func (f *recordingSender) queue(url string) []store.QueueMessage { return f.Messages(url) }

// sentEventIDs returns, per call to url, the eventIds it carried.
func (f *recordingSender) sentEventIDs(t *testing.T, url string) [][]string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, c := range f.calls {
		if c.url == url {
			out = append(out, messageEventIDs(t, c.msgs))
		}
	}
	return out
}
