package pipeline

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/fanout/fanout/store"
)

// TestPublisherFindsTheEntryAtFault: a whole call that keeps failing for
// a reason of its own (here a checksum-style error whenever one entry is
// in the batch) is resent one message at a time; only that entry is set
// aside, the others are delivered in order.
func TestPublisherFindsTheEntryAtFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, f := newTestPublisher(t, nil)
		events := []store.SubscriberEvent{}
		for _, id := range eventIDs("p", 5) {
			events = append(events, subscriberEvent("P", "s1", id, 0))
		}
		f.sender.respond = func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
			for _, id := range messageEventIDs(t, msgs) {
				if id == "p02" {
					return nil, errors.New("validate message checksum: MD5 does not match")
				}
			}
			return nil, nil
		}
		if err := p.Handle(context.Background(), "shardId-1", inserts(t, events)); err != nil {
			t.Fatal(err)
		}
		if got, want := messageEventIDs(t, f.sender.queue(queueURL("s1"))), []string{"p00", "p01", "p03", "p04"}; !reflect.DeepEqual(got, want) {
			t.Errorf("queue holds %v, want %v", got, want)
		}
		dl := f.dead.all()
		if len(dl) != 1 || !strings.HasSuffix(dl[0].ID, "/p02") || !strings.Contains(dl[0].Reason, "MD5") {
			t.Errorf("dead letters %+v, want only p02's, with the failure", dl)
		}
	})
}

// TestPublisherRetriesServiceFaultEntries: an entry SQS fails with a code
// of the service's (KMS disabled, throttled) is retried, even when SQS
// calls it the sender's fault; an entry SQS keeps failing for its own
// reason is set aside after maxEntryAttempts.
func TestPublisherRetriesServiceFaultEntries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failure   store.BatchFailure
		failTimes int
		wantAside bool
	}{
		{"KMS disabled for a while", store.BatchFailure{Code: "KMS.DisabledException", SenderFault: true}, 3 * maxEntryAttempts, false},
		{"throttled for a while", store.BatchFailure{Code: "AWS.SimpleQueueService.RequestThrottled"}, 3 * maxEntryAttempts, false},
		{"refused for its own reason, again and again", store.BatchFailure{Code: "InternalErrorOfAnEntry"}, 3 * maxEntryAttempts, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, f := newTestPublisher(t, nil)
				events := []store.SubscriberEvent{subscriberEvent("P", "s1", "p00", 0), subscriberEvent("P", "s1", "p01", 0)}
				f.sender.respond = func(n int, url string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
					if n >= tc.failTimes {
						return nil, nil
					}
					for _, m := range msgs {
						if slices.Contains(messageEventIDs(t, []store.QueueMessage{m}), "p00") {
							b := tc.failure
							b.ID = m.ID
							return []store.BatchFailure{b}, nil
						}
					}
					return nil, nil
				}
				if err := p.Handle(context.Background(), "shardId-1", inserts(t, events)); err != nil {
					t.Fatal(err)
				}
				want := []string{"p01", "p00"}
				if tc.wantAside {
					want = []string{"p01"}
				}
				if got := messageEventIDs(t, f.sender.queue(queueURL("s1"))); !reflect.DeepEqual(got, want) {
					t.Errorf("queue holds %v, want %v", got, want)
				}
				if aside := len(f.dead.all()) == 1; aside != tc.wantAside {
					t.Errorf("dead letters %+v; want set aside: %v", f.dead.all(), tc.wantAside)
				}
			})
		})
	}
}

// TestDeadLetterWriteNeverGivesUp: the dead letters are a record's last
// durable place, so a write that keeps failing with an error of no known
// kind is retried past maxEntryAttempts until it lands.
func TestDeadLetterWriteNeverGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := defaultAggregatorFakes()
		f.dead.fail = failTimes(3*maxEntryAttempts, errors.New("TransactionConflict-ish: try again"))
		a := newTestAggregator(t, f, nil)
		if err := a.Handle(context.Background(), "shardId-1", []types.Record{streamRecord("P", "1", time.Now(), "garbage")}); err != nil {
			t.Fatal(err)
		}
		if dl := f.dead.all(); len(dl) != 1 || dl[0].Seq != "1" {
			t.Errorf("dead letters %+v, want the garbage record's, written after %d failures", dl, 3*maxEntryAttempts)
		}
	})
}
