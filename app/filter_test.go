package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/pipeline"
	"github.com/fanout/fanout/store"
)

// subscribeFiltered subscribes listener to producer with filter.
func subscribeFiltered(t testing.TB, s *service, listener, producer store.Agent, filter string) {
	t.Helper()
	mustCall(t, 204, "PUT", s.url+"/agents/"+listener.ID+"/subscriptions/"+producer.ID, map[string]json.RawMessage{"filter": json.RawMessage(filter)})
}

// eventTypes returns the eventType of each message, in order.
func eventTypes(msgs []event.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.EventType
	}
	return out
}

// receiveExactly receives n messages, then long-polls twice more to catch
// any that should not be there.
func receiveExactly(t *testing.T, e *env, queueURL string, n int) []event.Message {
	t.Helper()
	msgs := receive(t, e, queueURL, deliveryTimeout, count(n))
	for range 2 {
		msgs = append(msgs, receiveOnce(t, e, queueURL)...)
	}
	return msgs
}

// TestFilters: every filter operator, through the API and the real
// pipeline: each subscriber gets exactly the events its filter passes, in
// order; invalid filters get a 400 naming the bad part.
func TestFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "filters")
	producer := register(t, s, "p")

	events := []postEvent{
		{EventType: "order.created", Data: map[string]any{"id": "e0", "total": 150, "region": "eu", "tags": []string{"a", "b"}}},
		{EventType: "order.paid", Data: map[string]any{"id": "e1", "total": 20, "region": "us"}},
		{EventType: "refund", Data: map[string]any{"id": "e2", "total": 500, "region": "eu", "note": nil}},
		{EventType: "ping", Data: map[string]any{"id": "e3"}},
		{EventType: "order.created", Data: map[string]any{"id": "e4", "total": 100, "region": "ap", "customer": map[string]any{"tier": "gold"}}},
	}
	for i := range events {
		events[i].AgentID = producer.ID
	}
	cases := []struct {
		name, filter string
		want         []string // data ids
	}{
		{"exact string", `{"eventType": ["refund", "ping"]}`, []string{"e2", "e3"}},
		{"exact number", `{"data.total": [100]}`, []string{"e4"}},
		{"prefix", `{"eventType": [{"prefix": "order."}]}`, []string{"e0", "e1", "e4"}},
		{"anything-but", `{"data.region": [{"anything-but": ["eu"]}]}`, []string{"e1", "e4"}},
		{"anything-but prefix", `{"eventType": [{"anything-but": {"prefix": "order"}}]}`, []string{"e2", "e3"}},
		{"numeric range", `{"data.total": [{"numeric": [">=", 100, "<", 500]}]}`, []string{"e0", "e4"}},
		{"exists", `{"data.customer.tier": [{"exists": true}]}`, []string{"e4"}},
		{"exists false", `{"data.total": [{"exists": false}]}`, []string{"e3"}},
		{"OR within a key", `{"data.region": ["us", {"prefix": "a"}]}`, []string{"e1", "e4"}},
		{"AND across keys", `{"eventType": [{"prefix": "order."}], "data.total": [{"numeric": [">", 50]}]}`, []string{"e0", "e4"}},
		{"nested form", `{"data": {"customer": {"tier": ["gold"]}}}`, []string{"e4"}},
		{"array field", `{"data.tags": ["b"]}`, []string{"e0"}},
	}
	subs := make([]store.Agent, len(cases))
	for i, c := range cases {
		subs[i] = register(t, s, "s"+strings.ReplaceAll(c.name, " ", "-"))
		subscribeFiltered(t, s, subs[i], producer, c.filter)
	}
	all := register(t, s, "all")
	subscribe(t, s, all, producer)

	for _, tc := range []struct{ filter, says string }{
		{`{"eventType": "refund"}`, `filter key "eventType" must be an array of conditions`},
		{`{"source": ["x"]}`, `filter key "source"`},
		{`{"data.total": [{"numeric": [">", 5, "<", 1]}]}`, `filter key "data.total" condition 0: "numeric" range is empty`},
		{`{"data.total": [{"numeric": ["~", 1]}]}`, `"numeric" operator "~"`},
		{`{"eventType": [{"prefix": ""}]}`, `"prefix" takes a non-empty string`},
		{`{"eventType": [{"anything-but": []}]}`, `"anything-but" needs at least one value`},
		{`{"data.a": [{"exists": 1}]}`, `"exists" takes true or false`},
		{`{"data.a": [{"suffix": "x"}]}`, `unknown operator "suffix"`},
		{`{}`, "no keys"},
	} {
		status, body := call(t, "PUT", s.url+"/agents/"+all.ID+"/subscriptions/"+producer.ID, map[string]json.RawMessage{"filter": json.RawMessage(tc.filter)})
		var eb struct{ Error string }
		if json.Unmarshal(body, &eb); status != 400 || !strings.Contains(eb.Error, tc.says) {
			t.Errorf("filter %s: %d %s, want 400 saying %q", tc.filter, status, body, tc.says)
		}
	}

	var list struct {
		Subscriptions []struct {
			ProducerID string          `json:"producerId"`
			Filter     json.RawMessage `json:"filter"`
		} `json:"subscriptions"`
	}
	waitFor(t, 10*time.Second, "filter listed", func() bool {
		json.Unmarshal(mustCall(t, 200, "GET", s.url+"/agents/"+subs[0].ID+"/subscriptions", nil), &list)
		return len(list.Subscriptions) == 1
	})
	if got, want := string(list.Subscriptions[0].Filter), `{"eventType":["refund","ping"]}`; got != want {
		t.Errorf("listed filter %s, want %s", got, want)
	}

	publish(t, s, events...)
	if got := receiveExactly(t, e, all.QueueURL, len(events)); len(got) != len(events) {
		t.Errorf("unfiltered subscriber got %v, want all %d events", eventTypes(got), len(events))
	}
	for i, c := range cases {
		msgs := receiveExactly(t, e, subs[i].QueueURL, len(c.want))
		var got []string
		for _, m := range msgs {
			var d struct{ ID string }
			json.Unmarshal(m.Data, &d)
			got = append(got, d.ID)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s %s: got events %v, want %v", c.name, c.filter, got, c.want)
		}
	}
}

// TestFilterChangeAppliesAtBound: a changed filter applies to every event
// accepted more than pipeline.PropagationBound after the PUT's 204, even
// while the old filter is cached.
func TestFilterChangeAppliesAtBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "refilter")
	producer, sub := register(t, s, "p"), register(t, s, "s")
	subscribeFiltered(t, s, sub, producer, `{"eventType": ["a"]}`)
	pair := func() []postEvent {
		return []postEvent{{AgentID: producer.ID, EventType: "a", Data: map[string]any{}}, {AgentID: producer.ID, EventType: "b", Data: map[string]any{}}}
	}
	publish(t, s, pair()...)
	if got := eventTypes(receive(t, e, sub.QueueURL, deliveryTimeout, count(1))); strings.Join(got, ",") != "a" {
		t.Fatalf("with filter a: got %v, want [a]", got)
	}
	publish(t, s, pair()...) // keeps the old filter cached right up to the change
	subscribeFiltered(t, s, sub, producer, `{"eventType": ["b"]}`)
	changed := time.Now()
	// Accepted before the change, the pair (one record, one batch) meets
	// the old filter or, aggregated after the cache expired, the new one:
	// one of the two, never both or neither.
	if got := strings.Join(eventTypes(receive(t, e, sub.QueueURL, deliveryTimeout, count(1))), ","); got != "a" && got != "b" {
		t.Fatalf("events published just before the change: got %v, want [a] (old filter) or [b] (new)", got)
	}
	// The contract is about time itself: events accepted after the bound.
	waitFor(t, 2*pipeline.PropagationBound, "the propagation bound to pass", func() bool {
		return time.Since(changed) > pipeline.PropagationBound
	})
	publish(t, s, pair()...)
	// Same producer, one group: an "a" that passed would come before "b".
	if got := eventTypes(receiveExactly(t, e, sub.QueueURL, 1)); strings.Join(got, ",") != "b" {
		t.Errorf("after the bound with filter b: got %v, want [b]", got)
	}
}

// TestFilterCostsNoWrite: with a filter that passes 10 % of a producer's
// events, the subscriber's log holds 10 % of them and its queue gets 10 %:
// a filtered event costs no SubscriberEvents write and no SQS message. It
// logs the AWS calls per published event for the README.
func TestFilterCostsNoWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "filtercost")
	producer, sub := register(t, s, "p"), register(t, s, "s")
	subscribeFiltered(t, s, sub, producer, `{"data.kind": ["rare"]}`)
	const total, rare = 500, 50
	before := s.app.Calls().Snapshot()
	for i := 0; i < total; i += 50 {
		batch := numbered(producer, i, 50)
		for j := range batch {
			batch[j].Data["kind"] = "common"
			if (i+j)%(total/rare) == 0 {
				batch[j].Data["kind"] = "rare"
			}
		}
		publish(t, s, batch...)
	}
	msgs := receiveExactly(t, e, sub.QueueURL, rare)
	if len(msgs) != rare {
		t.Errorf("subscriber got %d messages, want %d", len(msgs), rare)
	}
	out, err := dynamodb.NewFromConfig(e.awsCfg).Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 aws.String(e.cfg.SubscriberEventsTable),
		KeyConditionExpression:    aws.String("subscriberId = :s"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":s": &ddbtypes.AttributeValueMemberS{Value: sub.ID}},
		Select:                    ddbtypes.SelectCount,
	})
	if err != nil {
		t.Fatal(err)
	}
	logged := 0 // events in the subscriber's log, over all its items
	for after := ""; ; {
		page, next, err := e.store.ReplayEvents(context.Background(), store.ReplayQuery{SubscriberID: sub.ID, From: time.Unix(0, 0), To: time.Now().Add(time.Hour), After: after})
		if err != nil {
			t.Fatal(err)
		}
		logged += len(page)
		if after = next; next == "" {
			break
		}
	}
	if logged != rare {
		t.Errorf("SubscriberEvents holds %d events for the subscriber, want %d (each that passed)", logged, rare)
	}
	after := s.app.Calls().Snapshot()
	t.Logf("%d events published, %d passed the filter: SubscriberEvents items %.3f per published event (%d events in them); DynamoDB PutItem calls (items, KCL checkpoints) %.3f per published event; SQS SendMessageBatch %.3f",
		total, rare, float64(out.Count)/total, logged,
		float64(after["DynamoDB.PutItem"]-before["DynamoDB.PutItem"])/total,
		float64(after["SQS.SendMessageBatch"]-before["SQS.SendMessageBatch"])/total)
}
