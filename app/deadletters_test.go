package app_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fanout/fanout/event"
)

// deadLetterJSON is a dead letter as the API shows it.
type deadLetterJSON struct {
	ID, Stage, ProducerID, SubscriberID, Reason, ShardID, SequenceNumber, RedrivenAt string
	Data                                                                             *string
}

// TestRedriveAfterQueueRecreated: a subscriber's queue is deleted, its
// events are dead-lettered, one letter per event though they come in
// multi-event records (packed into runs in SubscriberEvents); the API lists
// them newest first (page by page, by subscriber), shows each with its
// data, and answers 409 to a redrive while the queue is missing. Once the queue is recreated, redriving each
// (oldest first) delivers every event once, in order; redriving them all
// again delivers nothing more; DELETE discards one.
func TestRedriveAfterQueueRecreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "redrive")
	producer, gone := register(t, s, "p"), register(t, s, "gone")
	subscribe(t, s, gone, producer)
	if _, err := e.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(gone.QueueURL)}); err != nil {
		t.Fatal(err)
	}
	const n = 6
	publish(t, s, numbered(producer, 0, n/2)...)
	publish(t, s, numbered(producer, n/2, n/2)...)

	var letters []deadLetterJSON // newest first
	waitFor(t, deliveryTimeout, "every event listed as a dead letter", func() bool {
		letters = nil
		cursor := ""
		for {
			var page struct {
				DeadLetters []deadLetterJSON
				Next        string
			}
			q := url.Values{"subscriberId": {gone.ID}, "limit": {"4"}, "cursor": {cursor}}
			if cursor == "" {
				q.Del("cursor")
			}
			json.Unmarshal(mustCall(t, 200, "GET", s.url+"/deadletters?"+q.Encode(), nil), &page)
			letters = append(letters, page.DeadLetters...)
			if cursor = page.Next; cursor == "" {
				return len(letters) == n
			}
		}
	})
	path := func(l deadLetterJSON) string { return s.url + "/deadletters/" + url.PathEscape(l.ID) }
	events := map[string]bool{}
	for i, l := range letters {
		var one deadLetterJSON
		json.Unmarshal(mustCall(t, 200, "GET", path(l), nil), &one)
		var m event.Message
		if one.Data != nil {
			json.Unmarshal([]byte(*one.Data), &m)
		}
		if want := n - 1 - i; dataN(m) != want || m.EventID == "" || one.Stage != "publisher" || one.SubscriberID != gone.ID ||
			one.ProducerID != producer.ID || one.ShardID == "" || one.SequenceNumber == "" || !strings.Contains(one.Reason, "recreate it") {
			t.Errorf("dead letter %d = %+v; want event %d's message for %s, its shard, sequence number and a reason saying to recreate the queue", i, one, want, gone.ID)
		}
		if events[m.EventID] {
			t.Errorf("event %s has two dead letters", m.EventID)
		}
		events[m.EventID] = true
	}
	status, body := call(t, "POST", path(letters[0])+"/redrive", nil)
	if status != 409 || !strings.Contains(string(body), "still does not exist") {
		t.Errorf("redrive with the queue missing: %d %s, want 409 saying it still does not exist", status, body)
	}

	if _, err := e.sqs.CreateQueue(context.Background(), &sqs.CreateQueueInput{
		QueueName:  aws.String("agents-" + gone.ID + ".fifo"),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNameFifoQueue): "true"},
	}); err != nil {
		t.Fatal(err)
	}
	for i := n - 1; i >= 0; i-- { // oldest first
		var l deadLetterJSON
		json.Unmarshal(mustCall(t, 200, "POST", path(letters[i])+"/redrive", nil), &l)
		if l.RedrivenAt == "" {
			t.Errorf("redriven letter %s has no redrivenAt", l.ID)
		}
	}
	for i := n - 1; i >= 0; i-- { // a double redrive sends nothing
		mustCall(t, 200, "POST", path(letters[i])+"/redrive", nil)
	}
	msgs := receiveExactly(t, e, gone.QueueURL, n)
	e.checkDelivered(t, gone.ID, msgs, map[string]int{producer.ID: n})

	mustCall(t, 204, "DELETE", path(letters[0]), nil)
	mustCall(t, 204, "DELETE", path(letters[0]), nil)
	mustCall(t, 404, "GET", path(letters[0]), nil)
	for _, tc := range []struct{ query, says string }{
		{"stage=elsewhere", "use aggregator or publisher"},
		{"limit=0", "limit"},
		{"cursor=bogus", "cursor"},
	} {
		if status, body := call(t, "GET", s.url+"/deadletters?"+tc.query, nil); status != 400 || !strings.Contains(string(body), tc.says) {
			t.Errorf("GET /deadletters?%s: %d %s, want 400 saying %q", tc.query, status, body, tc.says)
		}
	}
}
