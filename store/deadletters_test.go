package store

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	s.pageSize = 1 // so that listing takes several pages
	ctx := testContext(t)

	at := time.Date(2026, 7, 1, 12, 0, 0, 123_000_000, time.UTC)
	letters := []DeadLetter{
		{ID: "agg-1", Stage: "aggregator", Reason: "invalid JSON", ShardID: "shardId-0", Seq: "1", Data: []byte("{not json\x00\xff"), At: at},
		{ID: "pub-2", Stage: "publisher", Reason: "queue missing", ShardID: "shardId-1", Seq: "2", Data: []byte(`{"a":1}`), At: at.Add(time.Second)},
		{ID: "agg-3", Stage: "aggregator", Reason: "empty record", ShardID: "shardId-0", Seq: "3", At: at.Add(2 * time.Second)},
	}
	for i, d := range letters {
		if created, err := s.PutDeadLetter(ctx, d); err != nil || !created {
			t.Fatalf("PutDeadLetter(%s) = %v, %v; want true, nil", d.ID, created, err)
		}
		letters[i].DataBytes = len(d.Data) // what DeadLetters reports
	}
	replay := letters[0]
	replay.Reason = "changed"
	if created, err := s.PutDeadLetter(ctx, replay); err != nil || created {
		t.Errorf("PutDeadLetter replay = %v, %v; want false, nil", created, err)
	}

	got, err := s.DeadLetters(ctx)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	slices.SortFunc(got, func(a, b DeadLetter) int { return strings.Compare(a.Seq, b.Seq) })
	if !reflect.DeepEqual(got, letters) {
		t.Errorf("DeadLetters =\n %+v\nwant\n %+v", got, letters)
	}
}

func TestDeadLetterDefaults(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	if _, err := s.PutDeadLetter(ctx, DeadLetter{ID: "x", Stage: "aggregator"}); err != nil {
		t.Fatalf("PutDeadLetter: %v", err)
	}
	got, err := s.DeadLetters(ctx)
	if err != nil || len(got) != 1 || got[0].At.IsZero() {
		t.Errorf("DeadLetters = %+v, %v; want one with a time", got, err)
	}
}

// TestDeadLetterTruncated sets aside a 1 MiB record with a long reason:
// the item keeps a bounded prefix of each and records the record's size.
// (The emulator does not enforce DynamoDB's 400 KB; the item's size is
// checked here instead.)
func TestDeadLetterTruncated(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	reason := "record is not an event: " + strings.Repeat("ünïcödé ", 1000) // 11 KB, multi-byte
	whole := make([]byte, maxDeadLetterData)
	copy(whole, data)
	letters := []DeadLetter{
		{ID: "big", Stage: "aggregator", Reason: reason, ShardID: "shardId-0", Seq: "1", Data: data},
		{ID: "at-limit", Stage: "aggregator", Reason: "r", ShardID: "shardId-0", Seq: "2", Data: whole},
	}
	for _, d := range letters {
		if created, err := s.PutDeadLetter(ctx, d); err != nil || !created {
			t.Fatalf("PutDeadLetter(%s) = %v, %v; want true, nil", d.ID, created, err)
		}
	}
	got, err := s.DeadLetters(ctx)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	byID := map[string]DeadLetter{}
	for _, d := range got {
		byID[d.ID] = d
	}

	big := byID["big"]
	if !bytes.Equal(big.Data, data[:maxDeadLetterData]) || big.DataBytes != len(data) || !big.Truncated {
		t.Errorf("1 MiB dead letter: %d bytes of data (a prefix: %v), DataBytes %d, Truncated %v; want the first %d bytes, %d, true",
			len(big.Data), bytes.HasPrefix(data, big.Data), big.DataBytes, big.Truncated, maxDeadLetterData, len(data))
	}
	if r := big.Reason; len(r) > maxDeadLetterReason || !utf8.ValidString(r) ||
		!strings.HasSuffix(r, reasonTruncated) || !strings.HasPrefix(reason, strings.TrimSuffix(r, reasonTruncated)) || len(r) < maxDeadLetterReason-8 {
		t.Errorf("reason of %d bytes stored as %d bytes %q...; want a valid UTF-8 prefix of at most %d bytes ending %q",
			len(reason), len(r), r[:min(len(r), 40)], maxDeadLetterReason, reasonTruncated)
	}
	if d := byID["at-limit"]; !bytes.Equal(d.Data, whole) || d.DataBytes != len(whole) || d.Truncated {
		t.Errorf("dead letter of %d bytes: %d bytes, DataBytes %d, Truncated %v; want it whole", len(whole), len(d.Data), d.DataBytes, d.Truncated)
	}

	db, _ := clients(s)
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.tables.DeadLetters),
		Key:            map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "big"}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || out.Item == nil {
		t.Fatalf("GetItem(big) = %+v, %v", out, err)
	}
	if n := itemBytes(out.Item); n > maxItemBytes {
		t.Errorf("stored item is %d bytes, over DynamoDB's %d", n, maxItemBytes)
	}
	if n, ok := out.Item["dataBytes"].(*types.AttributeValueMemberN); !ok || n.Value != "1048576" {
		t.Errorf("dataBytes = %#v, want N 1048576", out.Item["dataBytes"])
	}
	if b, ok := out.Item["truncated"].(*types.AttributeValueMemberBOOL); !ok || !b.Value {
		t.Errorf("truncated = %#v, want BOOL true", out.Item["truncated"])
	}
}

// TestDeadLetterWrittenBefore reads a dead letter written before sizes
// were recorded: its data is whole.
func TestDeadLetterWrittenBefore(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	db, _ := clients(s)
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.tables.DeadLetters),
		Item: map[string]types.AttributeValue{
			"id": attrS("old"), "stage": attrS("aggregator"), "reason": attrS("r"), "shardId": attrS("shardId-0"),
			"seq": attrS("1"), "createdAt": attrS("2026-07-01T12:00:00.000Z"), "data": &types.AttributeValueMemberB{Value: []byte("abc")},
		},
	}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	got, err := s.DeadLetters(ctx)
	if err != nil || len(got) != 1 || got[0].DataBytes != 3 || got[0].Truncated {
		t.Errorf("DeadLetters = %+v, %v; want one with DataBytes 3, not truncated", got, err)
	}
}

// TestPutDeadLetterRejected: dead letters DynamoDB would refuse fail as
// ErrRejected, without a call to AWS (the Store has no clients).
func TestPutDeadLetterRejected(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, Tables{DeadLetters: "unused"}, testAccount)
	for _, tc := range []struct {
		name string
		d    DeadLetter
		want string
	}{
		{"no id", DeadLetter{Stage: "aggregator"}, "id is required"},
		{"id too long", DeadLetter{ID: strings.Repeat("i", maxPartitionKeyBytes+1), Stage: "aggregator"}, "key attribute id"},
		{"item too big despite truncation", DeadLetter{ID: "x", Stage: "aggregator", Seq: strings.Repeat("9", maxItemBytes)}, "item is"},
	} {
		created, err := s.PutDeadLetter(testContext(t), tc.d)
		if created || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: PutDeadLetter = %v, %v; want false and ErrRejected saying %q", tc.name, created, err, tc.want)
		}
	}
}

// TestPutDeadLetterRefusedByDynamoDB makes DynamoDB refuse the item (the
// table is SubscriberEvents, of another key schema): ErrRejected, with
// DynamoDB's answer.
func TestPutDeadLetterRefusedByDynamoDB(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	s.tables.DeadLetters = s.tables.SubscriberEvents
	_, err := s.PutDeadLetter(testContext(t), DeadLetter{ID: "x", Stage: "aggregator"})
	var ae smithy.APIError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Errorf("PutDeadLetter into a table of another key schema = %v; want ErrRejected wrapping a ValidationException", err)
	}
}

// TestListKeyOrdersWithinAMillisecond: letters of one millisecond and one
// stream record (the events of one packed item, set aside one after
// another) list in the order they were made, whatever their ids.
func TestListKeyOrdersWithinAMillisecond(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 0, 5_000_000, time.UTC)
	first := DeadLetter{ID: "publisher/s/p/zzz", Seq: "4959", At: at.Add(1 * time.Microsecond)}
	second := DeadLetter{ID: "publisher/s/p/aaa", Seq: "4959", At: at.Add(2 * time.Microsecond)}
	if ListKey(first) >= ListKey(second) {
		t.Errorf("ListKey(%s) = %s, not before ListKey(%s) = %s", first.ID, ListKey(first), second.ID, ListKey(second))
	}
	later := DeadLetter{ID: "publisher/s/p/000", Seq: "1", At: at.Add(time.Millisecond)}
	if ListKey(second) >= ListKey(later) {
		t.Errorf("a letter of the next millisecond lists before one of this: %s >= %s", ListKey(second), ListKey(later))
	}
}
