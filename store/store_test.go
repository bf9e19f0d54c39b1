package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fanout/fanout/internal/awstest"
)

const (
	// testTimeout bounds each test's AWS calls.
	testTimeout = time.Minute
	// pollTimeout bounds how long poll waits for eventually consistent
	// reads (a GSI, a stream) to show a write.
	pollTimeout = 10 * time.Second
	// pollInterval is the pause between two reads of poll.
	pollInterval = 50 * time.Millisecond
)

// testAccount is where the emulator keeps queues: what its STS
// GetCallerIdentity reports, in the region of awstest's clients.
var testAccount = Account{Partition: "aws", Region: "us-east-1", ID: "000000000000"}

// newTestStore returns a Store over freshly created tables, named uniquely
// for t, at the test endpoint. Its clock ticks (see tickingClock).
func newTestStore(t *testing.T) *Store {
	t.Helper()
	s := newStoreWithoutTables(t)
	if err := s.CreateTables(testContext(t)); err != nil {
		t.Fatalf("CreateTables: %v", err)
	}
	return s
}

// newStoreWithoutTables is newTestStore before CreateTables.
func newStoreWithoutTables(t *testing.T) *Store {
	t.Helper()
	s := New(awstest.DynamoDB(t), awstest.SQS(t), Tables{
		Agents:           awstest.Name(t, "agents"),
		Subscribers:      awstest.Name(t, "subscribers"),
		SubscriberEvents: awstest.Name(t, "subscriber-events"),
		DeadLetters:      awstest.Name(t, "dead-letters"),
		EventIDs:         awstest.Name(t, "event-ids"),
		Replays:          awstest.Name(t, "replays"),
	}, testAccount)
	s.now = tickingClock()
	return s
}

// testContext is t's context with testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// tickingClock returns a clock that starts at the current time and moves on
// one second at every reading, so no two writes share a createdAt and a
// test can tell which write a stored time came from.
func tickingClock() func() time.Time {
	var mu sync.Mutex
	t := time.Now().UTC().Truncate(time.Millisecond)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// clients returns the Store's own clients, for checks the Store has no
// method for.
func clients(s *Store) (*dynamodb.Client, *sqs.Client) { return s.db, s.sqs }

// poll calls done until it returns true or an error, or pollTimeout passes;
// then the caller checks what it read. what names the awaited state.
func poll(t *testing.T, what string, done func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for {
		ok, err := done()
		switch {
		case err != nil:
			t.Fatalf("waiting for %s: %v", what, err)
		case ok || time.Now().After(deadline):
			return
		}
		time.Sleep(pollInterval)
	}
}
