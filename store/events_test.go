package store

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodbstreams/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/fanout/fanout/internal/awstest"
)

// testEvent is an event for subscriber sub with id id.
func testEvent(sub, id string) Event {
	return Event{
		EventID:      id,
		ProducerID:   "producer-1",
		SubscriberID: sub,
		EventType:    "exampleEvent",
		Timestamp:    "2026-07-01T12:00:00.000Z",
		Data:         json.RawMessage(`{"n":1}`),
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
	if got := decodeRecord(t, recs[0]); !reflect.DeepEqual(got, e) {
		t.Errorf("streamed event %+v, want the first write %+v", got, e)
	}
}

// TestPutEventSameMillisecond writes two events of one subscriber with one
// timestamp: both are kept.
func TestPutEventSameMillisecond(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	for _, id := range []string{"ev-a", "ev-b"} {
		if created, err := s.PutEvent(ctx, testEvent("sub-1", id)); err != nil || !created {
			t.Errorf("PutEvent(%s) = %v, %v; want true, nil", id, created, err)
		}
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
			"timestamp":    &types.AttributeValueMemberS{Value: "2026-07-01T12:00:00.000Z#ev-1"},
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

func TestPutEventRequiresKey(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	for _, e := range []Event{
		{EventID: "e", Timestamp: "2026-07-01T12:00:00.000Z"},
		{SubscriberID: "s", Timestamp: "2026-07-01T12:00:00.000Z"},
		{SubscriberID: "s", EventID: "e"},
	} {
		if _, err := s.PutEvent(testContext(t), e); err == nil {
			t.Errorf("PutEvent(%+v) = nil error, want one", e)
		}
	}
}

// TestDecodeEventImageRoundTrip writes events, reads them back from the
// table's stream as the publisher does and decodes them.
func TestDecodeEventImageRoundTrip(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	datas := []string{
		`{"n":1}`,
		`{ "spaced" : [1, 2.50, 1e3],  "keep":"as is" }`,
		`{"unicode":"héllo ✓ \u00e9 \ud83d\ude00","escapes":"a\"b\\c\n\t","html":"<a&b>"}`,
		`"just a string"`,
		`12345678901234567890.5`,
		`null`,
		`[true,false,{}]`,
	}
	want := map[string]Event{}
	for i, d := range datas {
		e := testEvent("sub-1", fmt.Sprintf("ev-%d", i))
		e.Timestamp = fmt.Sprintf("2026-07-01T12:00:00.%03dZ", i)
		e.EventType = fmt.Sprintf("type-%d", i)
		e.Data = json.RawMessage(d)
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
		got := decodeRecord(t, r)
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
		"timestamp": "2026-07-01T12:00:00.000Z#e", "expiresAt": 1.7e9,
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

// decodeRecord converts a stream record's NewImage to JSON the way the
// publisher does and decodes it.
func decodeRecord(t *testing.T, r streamtypes.Record) Event {
	t.Helper()
	var m map[string]any
	if err := attributevalue.UnmarshalMap(r.Dynamodb.NewImage, &m); err != nil {
		t.Fatalf("UnmarshalMap: %v", err)
	}
	image, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	e, err := DecodeEventImage(image)
	if err != nil {
		t.Fatalf("DecodeEventImage(%s): %v", image, err)
	}
	return e
}
