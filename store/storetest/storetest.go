// Package storetest is the conformance suite of fanout's store: one set of
// tests that every implementation of Store runs, so that *store.Store (on
// an AWS endpoint) and *memstore.Store (in memory, for the tests of server
// and pipeline) behave alike wherever server and pipeline rely on them.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/fanout/fanout/store"
)

// Store is what server and pipeline use of a store. *store.Store and
// *memstore.Store satisfy it.
type Store interface {
	RegisterAgent(ctx context.Context, resourceARN string) (store.Agent, error)
	Agent(ctx context.Context, id string) (store.Agent, error)
	Subscribe(ctx context.Context, producerID, subscriberID string, filter []byte) error
	Unsubscribe(ctx context.Context, producerID, subscriberID string) error
	Subscribers(ctx context.Context, producerID string) ([]store.Subscription, error)
	Producers(ctx context.Context, subscriberID string) ([]store.Subscription, error)
	PutEvent(ctx context.Context, e store.SubscriberEvent) (created bool, err error)
	PutEventRun(ctx context.Context, events []store.SubscriberEvent) (*store.RunSpan, error)
	RunSpans(ctx context.Context, subscriberID, producerID, shardID, from, to string) ([]store.RunSpan, error)
	PutDeadLetter(ctx context.Context, d store.DeadLetter) (created bool, err error)
	DeadLetters(ctx context.Context) ([]store.DeadLetter, error)
	ListDeadLetters(ctx context.Context, q store.DeadLetterQuery) ([]store.DeadLetter, string, error)
	DeadLetter(ctx context.Context, id string) (store.DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, id string) error
	MarkRedriven(ctx context.Context, id string, at time.Time) error
	SendMessages(ctx context.Context, queueURL string, msgs []store.QueueMessage) ([]store.BatchFailure, error)
	ClaimEventID(ctx context.Context, c store.EventClaim) (store.EventClaim, error)
	SubscribersPolicy(ctx context.Context, id string) (allow []string, set bool, err error)
	SetSubscribersPolicy(ctx context.Context, id string, allow []string) error
	CreateReplay(ctx context.Context, r store.Replay) error
	Replay(ctx context.Context, subscriber, id string) (store.Replay, error)
	CancelReplay(ctx context.Context, subscriber, id string, at time.Time) (store.Replay, error)
	RunningReplays(ctx context.Context) ([]store.Replay, error)
	ClaimReplay(ctx context.Context, subscriber, id, owner string, until, now time.Time) (store.Replay, error)
	SaveReplay(ctx context.Context, r store.Replay) error
	ReplayEvents(ctx context.Context, q store.ReplayQuery) ([]store.LoggedEvent, string, error)
}

// Harness is an implementation under test.
type Harness struct {
	// New returns an empty store of t's own: no other test sees its
	// agents, subscriptions, events, dead letters or queues.
	New func(t *testing.T) Store
	// Bodies returns the bodies of the messages the queue at queueURL of s
	// holds, each group's in the order the queue holds them, once there
	// are at least n (more when it has more at hand); it fails t when
	// there are not within a few seconds. It may consume them: the suite
	// reads each queue once.
	Bodies func(t *testing.T, s Store, queueURL string, n int) []string
}

// Timing of the suite.
const (
	// callTimeout bounds each test's calls.
	callTimeout = time.Minute
	// pollTimeout bounds the wait for an eventually consistent read (a
	// GSI) to show a write.
	pollTimeout = 10 * time.Second
	// pollInterval is the pause between two such reads.
	pollInterval = 50 * time.Millisecond
)

// Run runs the suite against h, each test in parallel on a store of its
// own.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"RegisterAgentIsIdempotent", testRegisterAgentIsIdempotent},
		{"RegisterAgentConcurrently", testRegisterAgentConcurrently},
		{"AgentNotFound", testAgentNotFound},
		{"SubscribeIsIdempotent", testSubscribeIsIdempotent},
		{"UnsubscribeKeepsTombstone", testUnsubscribeKeepsTombstone},
		{"ResubscribeRecordsGap", testResubscribeRecordsGap},
		{"ProducersAreLive", testProducersAreLive},
		{"SubscribeReplacesFilter", testSubscribeReplacesFilter},
		{"PutEventIsIdempotent", testPutEventIsIdempotent},
		{"PutEventRejects", testPutEventRejects},
		{"PutEventRunIsIdempotent", testPutEventRunIsIdempotent},
		{"PutEventRunMeetsPutEvent", testPutEventRunMeetsPutEvent},
		{"PutEventRunRejects", testPutEventRunRejects},
		{"RunSpans", testRunSpans},
		{"PutDeadLetterIsIdempotent", testPutDeadLetterIsIdempotent},
		{"PutDeadLetterBounds", testPutDeadLetterBounds},
		{"PutDeadLetterRejects", testPutDeadLetterRejects},
		{"ListDeadLetters", testListDeadLetters},
		{"SendMessagesInGroupOrder", testSendMessagesInGroupOrder},
		{"SendMessagesRejects", testSendMessagesRejects},
		{"SendMessagesQueueMissing", testSendMessagesQueueMissing},
		{"ClaimEventIDFirstHolds", testClaimEventIDFirstHolds},
		{"ClaimEventIDConcurrently", testClaimEventIDConcurrently},
		{"ClaimEventIDRejects", testClaimEventIDRejects},
		{"SubscribersPolicy", testSubscribersPolicy},
		{"ReplayLease", testReplayLease},
		{"ReplayEventsPages", testReplayEventsPages},
		{"ReplayEventsPackedWindow", testReplayEventsPackedWindow},
		{"ReplayEventsPackedPages", testReplayEventsPackedPages},
		{"ReplayEventsMixedItems", testReplayEventsMixedItems},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h)
		})
	}
}

// testContext is t's context, bounded by callTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// poll calls done until it returns true or an error, or pollTimeout
// passes; then the caller checks what it read.
func poll(t *testing.T, done func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for {
		ok, err := done()
		switch {
		case err != nil:
			t.Fatal(err)
		case ok || time.Now().After(deadline):
			return
		}
		time.Sleep(pollInterval)
	}
}

// isStored reports whether t is as stores keep times: UTC, whole
// milliseconds, not zero.
func isStored(t time.Time) bool {
	return !t.IsZero() && t.Location() == time.UTC && t.Equal(t.Truncate(time.Millisecond))
}
