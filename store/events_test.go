package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/awstest"
)

// testEvent is an event for subscriber sub with id id.
func testEvent(sub, id string) SubscriberEvent {
	return SubscriberEvent{
		Event: event.Event{
			EventID:   id,
			AgentID:   "producer-1",
			EventType: "exampleEvent",
			Timestamp: "2026-07-01T12:00:00.000Z",
			Data:      json.RawMessage(`{"n":1}`),
		},
		SubscriberID: sub,
		ShardID:      "shardId-000000000000",
		Seq:          "49590338271490256608559692538361571095921575989136588898",
	}
}

func TestPutEventReplay(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	e := testEvent("sub-1", "ev-1")

	if created, err := s.PutEvent(ctx, e); err != nil || !created {
		t.Fatalf("PutEvent = %v, %v; want true, nil", created, err)
	}
	replay := e
	replay.Data = json.RawMessage(`{"n":2}`) // even a changed replay writes nothing
	for range 2 {
		if created, err := s.PutEvent(ctx, replay); err != nil || created {
			t.Fatalf("PutEvent replay = %v, %v; want false, nil", created, err)
		}
	}
	recs := streamRecords(t, s, 1)
	if len(recs) != 1 {
		t.Fatalf("stream has %d records, want exactly 1: %+v", len(recs), recs)
	}
	if got := decodeRecord(t, recs[0]); !reflect.DeepEqual(got, []SubscriberEvent{e}) {
		t.Errorf("streamed events %+v, want the first write %+v", got, e)
	}
}

// TestPutEventSameMillisecond writes pairs of events of one subscriber
// with one timestamp: both are kept, as separate items.
func TestPutEventSameMillisecond(t *testing.T) {
	t.Parallel()
	ofProducer := func(producer, id string) SubscriberEvent {
		e := testEvent("sub-1", id)
		e.AgentID = producer
		return e
	}
	for _, tc := range []struct {
		name string
		a, b SubscriberEvent
	}{
		{"one producer, two event ids", ofProducer("p-1", "ev-a"), ofProducer("p-1", "ev-b")},
		{"two producers, one event id", ofProducer("p-1", "ev-1"), ofProducer("p-2", "ev-1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t)
			ctx := testContext(t)
			for _, e := range []SubscriberEvent{tc.a, tc.b} {
				if created, err := s.PutEvent(ctx, e); err != nil || !created {
					t.Errorf("PutEvent(producer %s, event %s) = %v, %v; want true, nil", e.AgentID, e.EventID, created, err)
				}
			}
			db, _ := clients(s)
			out, err := db.Query(ctx, &dynamodb.QueryInput{
				TableName:                 aws.String(s.tables.SubscriberEvents),
				KeyConditionExpression:    aws.String("subscriberId = :s"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: "sub-1"}},
				ConsistentRead:            aws.Bool(true),
			})
			if err != nil {
				t.Fatalf("Query: %v", err)
			}
			var got []string
			for _, it := range out.Items {
				p, _ := it["producerId"].(*types.AttributeValueMemberS)
				id, _ := it["eventId"].(*types.AttributeValueMemberS)
				if p != nil && id != nil {
					got = append(got, p.Value+"/"+id.Value)
				}
			}
			slices.Sort(got)
			if want := []string{tc.a.AgentID + "/" + tc.a.EventID, tc.b.AgentID + "/" + tc.b.EventID}; !slices.Equal(got, want) {
				t.Errorf("subscriber's items are events %v, want %v", got, want)
			}
		})
	}
}

func TestPutEventItem(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	e := testEvent("sub-1", "ev-1")
	if _, err := s.PutEvent(ctx, e); err != nil {
		t.Fatalf("PutEvent: %v", err)
	}
	written := s.now().Add(-time.Second) // the reading PutEvent took

	db, _ := clients(s)
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.tables.SubscriberEvents),
		Key: map[string]types.AttributeValue{
			"subscriberId": &types.AttributeValueMemberS{Value: "sub-1"},
			"timestamp":    &types.AttributeValueMemberS{Value: "2026-07-01T12:00:00.000Z#producer-1#ev-1"},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || out.Item == nil {
		t.Fatalf("GetItem by the documented key = %+v, %v; want the item", out, err)
	}
	exp, ok := out.Item["expiresAt"].(*types.AttributeValueMemberN)
	if want := strconv.FormatInt(written.Add(7*24*time.Hour).Unix(), 10); !ok || exp.Value != want {
		t.Errorf("expiresAt = %#v, want N %s (7 days after the write)", out.Item["expiresAt"], want)
	}
}

// TestPutEventRejected gives PutEvent events DynamoDB would refuse: each
// fails as ErrRejected without a call to AWS (the Store has no clients).
func TestPutEventRejected(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{SubscriberEvents: "unused"}, testAccount)
	with := func(f func(*SubscriberEvent)) SubscriberEvent {
		e := testEvent("sub-1", "ev-1")
		f(&e)
		return e
	}
	for _, tc := range []struct {
		name string
		e    SubscriberEvent
		want string // in the error
	}{
		{"no subscriber id", with(func(e *SubscriberEvent) { e.SubscriberID = "" }), "required"},
		{"no producer id", with(func(e *SubscriberEvent) { e.AgentID = "" }), "required"},
		{"no event id", with(func(e *SubscriberEvent) { e.EventID = "" }), "required"},
		{"no timestamp", with(func(e *SubscriberEvent) { e.Timestamp = "" }), "required"},
		{"item over 400 KB", with(func(e *SubscriberEvent) { e.Data = jsonString(maxItemBytes) }), "item is"},
		{"item over 400 KB once invalid UTF-8 is replaced", with(func(e *SubscriberEvent) { e.Data = json.RawMessage(strings.Repeat("\xff", 140_000)) }), "item is"},
		{"sort key too long", with(func(e *SubscriberEvent) { e.EventID = strings.Repeat("e", maxSortKeyBytes) }), "key attribute timestamp"},
		{"partition key too long", with(func(e *SubscriberEvent) { e.SubscriberID = strings.Repeat("s", maxPartitionKeyBytes+1) }), "key attribute subscriberId"},
	} {
		created, err := s.PutEvent(testContext(t), tc.e)
		if created || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: PutEvent = %v, %v; want false and ErrRejected saying %q", tc.name, created, err, tc.want)
		}
	}
}

// TestPutEventLarge writes an event just under DynamoDB's item limit: the
// size check does not refuse what DynamoDB takes.
func TestPutEventLarge(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	e := testEvent("sub-1", "ev-1")
	e.Data = jsonString(maxItemBytes - 1024)
	if created, err := s.PutEvent(testContext(t), e); err != nil || !created {
		t.Fatalf("PutEvent(%d bytes of data) = %v, %v; want true, nil", len(e.Data), created, err)
	}
	if got := decodeRecord(t, streamRecords(t, s, 1)[0]); len(got) != 1 || !reflect.DeepEqual(got[0], e) {
		t.Errorf("streamed %d events, want the one written (data %d bytes)", len(got), len(e.Data))
	}
}

// TestPutEventRefusedByDynamoDB makes DynamoDB itself refuse an item (the
// emulator enforces neither the item size nor key lengths, but checks the
// key schema: here the table is the dead letters', keyed by id). The error
// is ErrRejected and keeps DynamoDB's answer.
func TestPutEventRefusedByDynamoDB(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	s.tables.SubscriberEvents = s.tables.DeadLetters
	_, err := s.PutEvent(testContext(t), testEvent("sub-1", "ev-1"))
	var ae smithy.APIError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Errorf("PutEvent into a table of another key schema = %v; want ErrRejected wrapping a ValidationException", err)
	}
}

// jsonString is a JSON string value of n bytes.
func jsonString(n int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`)
}

// roundTripData are event data of every JSON kind, spaced, escaped, long
// numbers: what must come back byte for byte.
var roundTripData = []string{
	`{"n":1}`,
	`{ "spaced" : [1, 2.50, 1e3],  "keep":"as is" }`,
	`{"unicode":"héllo ✓ \u00e9 \ud83d\ude00","escapes":"a\"b\\c\n\t","html":"<a&b>"}`,
	`"just a string"`,
	`12345678901234567890.5`,
	`null`,
	`[true,false,{}]`,
}

// TestDecodeEventImageRoundTrip writes events, reads them back from the
// table's stream as the publisher does and decodes them.
func TestDecodeEventImageRoundTrip(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	datas := roundTripData
	want := map[string]SubscriberEvent{}
	for i, d := range datas {
		e := testEvent("sub-1", fmt.Sprintf("ev-%d", i))
		e.Timestamp = fmt.Sprintf("2026-07-01T12:00:00.%03dZ", i)
		e.EventType = fmt.Sprintf("type-%d", i)
		e.Data = json.RawMessage(d)
		if i%2 == 0 { // the others have no arrival time: written before it was kept
			e.Arrived = time.Date(2026, 7, 1, 12, 0, 1, i*int(time.Millisecond), time.UTC)
		}
		want[e.EventID] = e
		if _, err := s.PutEvent(ctx, e); err != nil {
			t.Fatalf("PutEvent: %v", err)
		}
	}
	recs := streamRecords(t, s, len(datas))
	if len(recs) != len(datas) {
		t.Fatalf("stream has %d records, want %d", len(recs), len(datas))
	}
	for _, r := range recs {
		events := decodeRecord(t, r)
		if len(events) != 1 {
			t.Fatalf("a one-event item decoded to %d events", len(events))
		}
		got := events[0]
		if w := want[got.EventID]; !reflect.DeepEqual(got, w) {
			t.Errorf("decoded %+v (data %s)\nwant    %+v (data %s)", got, got.Data, w, w.Data)
		}
	}
}

func TestDecodeEventImageErrors(t *testing.T) {
	t.Parallel()
	valid := map[string]any{
		"eventId": "e", "producerId": "p", "subscriberId": "s", "eventType": "t",
		"eventTimestamp": "2026-07-01T12:00:00.000Z", "data": `{}`, "shardId": "sh", "seq": "1",
		"timestamp": "2026-07-01T12:00:00.000Z#p#e", "expiresAt": 1.7e9,
	}
	without := func(k string) map[string]any {
		m := map[string]any{}
		for key, v := range valid {
			if key != k {
				m[key] = v
			}
		}
		return m
	}
	with := func(k string, v any) map[string]any {
		m := without(k)
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name  string
		image any
		want  string // in the error
	}{
		{"not JSON", "{", "decode event image"},
		{"not an object", []int{1}, "decode event image"},
		{"no data", without("data"), "data"},
		{"no event id", without("eventId"), "eventId"},
		{"data not a string", with("data", map[string]any{}), "data"},
		{"subscriber id a number", with("subscriberId", 3), "subscriberId"},
	} {
		image, _ := json.Marshal(tc.image)
		if s, ok := tc.image.(string); ok {
			image = []byte(s)
		}
		if _, err := DecodeEventImage(image); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeEventImage error = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	image, _ := json.Marshal(valid)
	if _, err := DecodeEventImage(image); err != nil {
		t.Errorf("DecodeEventImage(valid) = %v", err)
	}
}

// streamRecords reads every record of s's SubscriberEvents stream from the
// beginning, waiting up to pollTimeout for at least want of them.
func streamRecords(t *testing.T, s *Store, want int) []streamtypes.Record {
	t.Helper()
	ctx := testContext(t)
	arn, err := s.StreamARN(ctx)
	if err != nil {
		t.Fatalf("StreamARN: %v", err)
	}
	streams := awstest.Streams(t)
	var recs []streamtypes.Record
	poll(t, fmt.Sprintf("%d stream records", want), func() (bool, error) {
		recs = nil
		desc, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)})
		if err != nil {
			return false, fmt.Errorf("DescribeStream: %w", err)
		}
		for _, sh := range desc.StreamDescription.Shards {
			it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
				StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon,
			})
			if err != nil {
				return false, fmt.Errorf("GetShardIterator: %w", err)
			}
			for iter := it.ShardIterator; iter != nil; {
				out, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
				if err != nil {
					return false, fmt.Errorf("GetRecords: %w", err)
				}
				if len(out.Records) == 0 {
					break // caught up: the shard is open and has no more now
				}
				recs = append(recs, out.Records...)
				iter = out.NextShardIterator
			}
		}
		return len(recs) >= want, nil
	})
	return recs
}

// decodeRecord converts a stream record's NewImage to JSON as kcl hands
// it to the publisher (numbers with their exact digits, binary as
// base64) and decodes the item's events.
func decodeRecord(t *testing.T, r streamtypes.Record) []SubscriberEvent {
	t.Helper()
	item, err := attributevalue.FromDynamoDBStreamsMap(r.Dynamodb.NewImage)
	if err != nil {
		t.Fatalf("FromDynamoDBStreamsMap: %v", err)
	}
	var m map[string]any
	if err := attributevalue.UnmarshalMapWithOptions(item, &m, func(o *attributevalue.DecoderOptions) { o.UseNumber = true }); err != nil {
		t.Fatalf("UnmarshalMap: %v", err)
	}
	for k, v := range m {
		if n, ok := v.(attributevalue.Number); ok {
			m[k] = json.Number(n)
		}
	}
	image, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	events, err := DecodeEventImage(image)
	if err != nil {
		t.Fatalf("DecodeEventImage(%.300s): %v", image, err)
	}
	return events
}
