package kcl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/fanout/fanout/internal/awstest"
)

// streamsAWS holds the clients the adapter tests use against the
// test binary's AWS endpoint (the in-process emulator by default).
type streamsAWS struct {
	cfg     aws.Config
	ddb     *dynamodb.Client
	streams *dynamodbstreams.Client
}

func newStreamsAWS(t *testing.T) streamsAWS {
	t.Helper()
	return streamsAWS{cfg: awstest.Config(t), ddb: awstest.DynamoDB(t), streams: awstest.Streams(t)}
}

// streamsTestConfig is an SDK config with static credentials and no
// endpoint: the adapter's Kinesis client never sends a request.
func streamsTestConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

// createTable creates a table, waits until it is active and returns its
// description.
func (e streamsAWS) createTable(t *testing.T, in *dynamodb.CreateTableInput) *dtypes.TableDescription {
	t.Helper()
	ctx := context.Background()
	out, err := e.ddb.CreateTable(ctx, in)
	if err != nil {
		t.Fatalf("create table %s: %v", aws.ToString(in.TableName), err)
	}
	waiter := dynamodb.NewTableExistsWaiter(e.ddb, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond })
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, 60*time.Second); err != nil {
		t.Fatalf("table %s not active: %v", aws.ToString(in.TableName), err)
	}
	return out.TableDescription
}

// createStreamTable creates a table keyed by pk with a NEW_IMAGE stream and
// returns the stream's ARN.
func (e streamsAWS) createStreamTable(t *testing.T, name string) string {
	t.Helper()
	desc := e.createTable(t, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: dtypes.KeyTypeHash}},
		BillingMode:          dtypes.BillingModePayPerRequest,
		StreamSpecification:  &dtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: dtypes.StreamViewTypeNewImage},
	})
	arn := aws.ToString(desc.LatestStreamArn)
	if arn == "" {
		t.Fatalf("create table %s: no stream ARN", name)
	}
	return arn
}

// putItem writes one item (PutItem: the emulator emits no stream records
// for batch writes).
func (e streamsAWS) putItem(t *testing.T, table string, item map[string]dtypes.AttributeValue) {
	t.Helper()
	if _, err := e.ddb.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatalf("put item into %s: %v", table, err)
	}
}

// readShard opens an iterator and reads it with readFrom.
func readShard(t *testing.T, kc *kinesis.Client, shardID string, typ ktypes.ShardIteratorType, seq string, limit int32, want int) []ktypes.Record {
	t.Helper()
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String("ignored"), ShardId: aws.String(shardID), ShardIteratorType: typ}
	if seq != "" {
		in.StartingSequenceNumber = aws.String(seq)
	}
	it, err := kc.GetShardIterator(context.Background(), in)
	if err != nil {
		t.Fatalf("GetShardIterator(%s %s): %v", typ, seq, err)
	}
	return readFrom(t, kc, it.ShardIterator, limit, want)
}

// readFrom reads pages of at most limit records until it has want records
// (stream records may take a moment to appear on AWS), then reads once
// more so that records beyond want show up too.
func readFrom(t *testing.T, kc *kinesis.Client, iter *string, limit int32, want int) []ktypes.Record {
	t.Helper()
	var got []ktypes.Record
	deadline := time.Now().Add(30 * time.Second)
	for extra := 0; extra < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("read: got %d records before the deadline, want %d", len(got), want)
		}
		out, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(limit)})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		if out.MillisBehindLatest == nil {
			t.Fatal("GetRecords: MillisBehindLatest is nil; KCL dereferences it")
		}
		if out.NextShardIterator == nil {
			t.Fatal("GetRecords: NextShardIterator is nil on an open shard")
		}
		got = append(got, out.Records...)
		iter = out.NextShardIterator
		if len(got) >= want {
			extra++
			limit = streamsMaxRecords
		}
	}
	return got
}

func TestStreamsKinesisReadsTableStream(t *testing.T) {
	t.Parallel()
	emu := newStreamsAWS(t)
	table := awstest.Name(t, "adapter")
	arn := emu.createStreamTable(t, table)
	const bigNumber = "12345678901234567890123" // beyond float64's exact integers
	for i := range 5 {
		emu.putItem(t, table, map[string]dtypes.AttributeValue{
			"pk":  &dtypes.AttributeValueMemberS{Value: "item-" + string(rune('0'+i))},
			"big": &dtypes.AttributeValueMemberN{Value: bigNumber},
			"nested": &dtypes.AttributeValueMemberM{Value: map[string]dtypes.AttributeValue{
				"list": &dtypes.AttributeValueMemberL{Value: []dtypes.AttributeValue{
					&dtypes.AttributeValueMemberS{Value: "a"}, &dtypes.AttributeValueMemberN{Value: "1.5"},
				}},
			}},
		})
	}
	kc := newStreamsKinesis(emu.cfg, emu.streams, arn)
	ctx := context.Background()

	shards, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("any-name")})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if len(shards.Shards) != 1 || shards.NextToken != nil {
		t.Fatalf("ListShards: got %d shards (next token %v), want 1 in one page", len(shards.Shards), shards.NextToken)
	}
	shard := shards.Shards[0]
	if shard.SequenceNumberRange == nil || shard.SequenceNumberRange.StartingSequenceNumber == nil || shard.HashKeyRange == nil {
		t.Fatalf("ListShards: shard %+v lacks ranges KCL reads", shard)
	}
	shardID := aws.ToString(shard.ShardId)

	all := readShard(t, kc, shardID, ktypes.ShardIteratorTypeTrimHorizon, "", 2, 5)
	if len(all) != 5 {
		t.Fatalf("TRIM_HORIZON: got %d records, want 5", len(all))
	}
	var prev *big.Int
	for i, r := range all {
		wantKey := `{"pk":"item-` + string(rune('0'+i)) + `"}`
		if got := aws.ToString(r.PartitionKey); got != wantKey {
			t.Errorf("record %d: partition key %s, want %s (write order)", i, got, wantKey)
		}
		seq, ok := parseSeq(aws.ToString(r.SequenceNumber))
		if !ok || (prev != nil && seq.Cmp(prev) <= 0) {
			t.Errorf("record %d: sequence number %s does not increase", i, aws.ToString(r.SequenceNumber))
		}
		prev = seq
		if r.ApproximateArrivalTimestamp == nil {
			t.Errorf("record %d: no arrival timestamp", i)
		}
		change, err := DecodeChange(r.Data)
		if err != nil {
			t.Fatalf("record %d: DecodeChange: %v", i, err)
		}
		if change.EventName != "INSERT" {
			t.Errorf("record %d: event %s, want INSERT", i, change.EventName)
		}
		var img struct {
			PK     string      `json:"pk"`
			Big    json.Number `json:"big"`
			Nested struct {
				List []any `json:"list"`
			} `json:"nested"`
		}
		dec := json.NewDecoder(bytes.NewReader(change.NewImage))
		dec.UseNumber()
		if err := dec.Decode(&img); err != nil {
			t.Fatalf("record %d: image %s: %v", i, change.NewImage, err)
		}
		if img.Big.String() != bigNumber || img.PK != "item-"+string(rune('0'+i)) || len(img.Nested.List) != 2 {
			t.Errorf("record %d: image %s, want pk item-%d, big %s, a two-element list", i, change.NewImage, i, bigNumber)
		}
	}
	seqs := func(rs []ktypes.Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, aws.ToString(r.SequenceNumber))
		}
		return out
	}
	allSeqs := seqs(all)

	// The emulator restarts AT/AFTER_SEQUENCE_NUMBER iterators at the shard's
	// start; reading one record per page proves the filter holds across
	// pages until a record passes it.
	for _, tc := range []struct {
		typ  ktypes.ShardIteratorType
		want []string
	}{
		{ktypes.ShardIteratorTypeAfterSequenceNumber, allSeqs[2:]},
		{ktypes.ShardIteratorTypeAtSequenceNumber, allSeqs[1:]},
	} {
		got := seqs(readShard(t, kc, shardID, tc.typ, allSeqs[1], 1, len(tc.want)))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s %s: got %v, want %v", tc.typ, allSeqs[1], got, tc.want)
		}
	}

	latest, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{ShardId: aws.String(shardID), ShardIteratorType: ktypes.ShardIteratorTypeLatest})
	if err != nil {
		t.Fatalf("GetShardIterator(LATEST): %v", err)
	}
	emu.putItem(t, table, map[string]dtypes.AttributeValue{
		"pk":  &dtypes.AttributeValueMemberS{Value: "item-0"},
		"big": &dtypes.AttributeValueMemberN{Value: "7"},
	})
	after := readFrom(t, kc, latest.ShardIterator, streamsMaxRecords, 1)
	if len(after) != 1 {
		t.Fatalf("LATEST: got %d records, want only the write after it", len(after))
	}
	change, err := DecodeChange(after[0].Data)
	if err != nil || change.EventName != "MODIFY" {
		t.Errorf("LATEST: change %+v (%v), want a MODIFY", change, err)
	}
	if got, want := aws.ToString(after[0].PartitionKey), aws.ToString(all[0].PartitionKey); got != want {
		t.Errorf("LATEST: partition key %s, want %s as for the item's first write", got, want)
	}
}

func TestStreamsKinesisRejects(t *testing.T) {
	t.Parallel()
	emu := newStreamsAWS(t)
	arn := emu.createStreamTable(t, awstest.Name(t, "reject"))
	kc := newStreamsKinesis(emu.cfg, emu.streams, arn)
	missing := newStreamsKinesis(emu.cfg, emu.streams, arn+"-missing")
	ctx := context.Background()
	var (
		invalid  *ktypes.InvalidArgumentException
		notFound *ktypes.ResourceNotFoundException
	)
	tests := []struct {
		name     string
		call     func() error
		as       any
		contains string
	}{
		{"missing stream", func() error {
			_, err := missing.ListShards(ctx, &kinesis.ListShardsInput{})
			return err
		}, &notFound, "-missing"},
		{"AT_TIMESTAMP", func() error {
			_, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{ShardId: aws.String("s"), ShardIteratorType: ktypes.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(time.Now())})
			return err
		}, &invalid, "AT_TIMESTAMP"},
		{"sequence number not decimal", func() error {
			_, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{ShardId: aws.String("s"), ShardIteratorType: ktypes.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String("12a")})
			return err
		}, &invalid, "12a"},
		{"foreign iterator", func() error {
			_, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("AAAA")})
			return err
		}, &invalid, "not issued"},
		{"corrupt iterator", func() error {
			_, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(adapterIteratorPrefix + "!!")})
			return err
		}, &invalid, "corrupt"},
		{"other operation", func() error {
			_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
			return err
		}, nil, "PutRecord is not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("got no error")
			}
			if tc.as != nil && !errors.As(err, tc.as) {
				t.Errorf("got %v (%T), want %T in its chain", err, err, tc.as)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("got %q, want it to mention %q", err, tc.contains)
			}
		})
	}
}

// funcStreams is a StreamsReader answering from functions, for what the
// emulator cannot do (errors, closed shards, pagination); a nil function
// fails the call.
type funcStreams struct {
	describe func(*dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error)
	iterator func(*dynamodbstreams.GetShardIteratorInput) (*dynamodbstreams.GetShardIteratorOutput, error)
	records  func(*dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error)
}

var errUnexpectedCall = errors.New("unexpected streams call")

func (f funcStreams) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	if f.describe == nil {
		return nil, errUnexpectedCall
	}
	return f.describe(in)
}

func (f funcStreams) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	if f.iterator == nil {
		return nil, errUnexpectedCall
	}
	return f.iterator(in)
}

func (f funcStreams) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	if f.records == nil {
		return nil, errUnexpectedCall
	}
	return f.records(in)
}

// fixedIterator answers GetShardIterator with "inner".
func fixedIterator(*dynamodbstreams.GetShardIteratorInput) (*dynamodbstreams.GetShardIteratorOutput, error) {
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String("inner")}, nil
}

// openIterator returns an adapter iterator for shard s of kc.
func openIterator(t *testing.T, kc *kinesis.Client, shard string) *string {
	t.Helper()
	out, err := kc.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{ShardId: aws.String(shard), ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatalf("GetShardIterator: %v", err)
	}
	return out.ShardIterator
}

func TestStreamsKinesisMapsErrors(t *testing.T) {
	t.Parallel()
	var (
		throughput *ktypes.ProvisionedThroughputExceededException
		expired    *ktypes.ExpiredIteratorException
		notFound   *ktypes.ResourceNotFoundException
		trimmed    *stypes.TrimmedDataAccessException
		limit      *stypes.LimitExceededException
	)
	tests := []struct {
		name   string
		err    error
		wantAs []any
	}{
		{"throttled", &stypes.LimitExceededException{Message: aws.String("slow down")}, []any{&throughput, &limit}},
		{"expired iterator", &stypes.ExpiredIteratorException{Message: aws.String("old")}, []any{&expired}},
		{"shard gone", &stypes.ResourceNotFoundException{Message: aws.String("gone")}, []any{&notFound}},
		{"trimmed", &stypes.TrimmedDataAccessException{Message: aws.String("trimmed")}, []any{&trimmed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kc := newStreamsKinesis(streamsTestConfig(), funcStreams{
				iterator: fixedIterator,
				records: func(*dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error) {
					return nil, tc.err
				},
			}, "arn:stream")
			_, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: openIterator(t, kc, "shard-7")})
			if err == nil {
				t.Fatal("GetRecords: got no error")
			}
			for _, target := range tc.wantAs {
				if !errors.As(err, target) {
					t.Errorf("GetRecords: got %v, want %T in its chain", err, target)
				}
			}
			if !strings.Contains(err.Error(), "shard=shard-7") {
				t.Errorf("GetRecords: got %q, want the shard id in it", err)
			}
		})
	}
}

func TestStreamsKinesisListShardsPaginates(t *testing.T) {
	t.Parallel()
	pages := map[string]*stypes.StreamDescription{
		"": {Shards: []stypes.Shard{{
			ShardId:             aws.String("a"),
			SequenceNumberRange: &stypes.SequenceNumberRange{StartingSequenceNumber: aws.String("1"), EndingSequenceNumber: aws.String("9")},
		}}, LastEvaluatedShardId: aws.String("a")},
		"a": {Shards: []stypes.Shard{{ShardId: aws.String("b"), ParentShardId: aws.String("a")}}},
	}
	var asked []string
	kc := newStreamsKinesis(streamsTestConfig(), funcStreams{
		describe: func(in *dynamodbstreams.DescribeStreamInput) (*dynamodbstreams.DescribeStreamOutput, error) {
			if aws.ToString(in.StreamArn) != "arn:stream" {
				return nil, &stypes.ResourceNotFoundException{Message: in.StreamArn}
			}
			start := aws.ToString(in.ExclusiveStartShardId)
			asked = append(asked, start)
			return &dynamodbstreams.DescribeStreamOutput{StreamDescription: pages[start]}, nil
		},
	}, "arn:stream")
	out, err := kc.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("kcl-name")})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if len(asked) != 2 || len(out.Shards) != 2 || out.NextToken != nil {
		t.Fatalf("ListShards: %d DescribeStream calls, %d shards, next token %v; want 2 calls, 2 shards, one page", len(asked), len(out.Shards), out.NextToken)
	}
	a, b := out.Shards[0], out.Shards[1]
	if aws.ToString(a.SequenceNumberRange.EndingSequenceNumber) != "9" || a.ParentShardId != nil {
		t.Errorf("shard a: %+v, want a closed root shard ending at 9", a.SequenceNumberRange)
	}
	if aws.ToString(b.ParentShardId) != "a" || b.SequenceNumberRange == nil || b.SequenceNumberRange.EndingSequenceNumber != nil {
		t.Errorf("shard b: parent %v range %+v, want an open child of a with a range", b.ParentShardId, b.SequenceNumberRange)
	}
}

func TestStreamsKinesisShardEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	record := func(seq string) stypes.Record {
		return stypes.Record{EventName: stypes.OperationTypeRemove, Dynamodb: &stypes.StreamRecord{
			SequenceNumber: aws.String(seq),
			Keys:           map[string]stypes.AttributeValue{"pk": &stypes.AttributeValueMemberS{Value: "k"}},
		}}
	}
	t.Run("last page", func(t *testing.T) {
		t.Parallel()
		kc := newStreamsKinesis(streamsTestConfig(), funcStreams{
			iterator: fixedIterator,
			records: func(*dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error) {
				return &dynamodbstreams.GetRecordsOutput{Records: []stypes.Record{record("5")}}, nil
			},
		}, "arn:stream")
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: openIterator(t, kc, "s")})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		if len(out.Records) != 1 || out.NextShardIterator != nil || out.MillisBehindLatest == nil {
			t.Fatalf("GetRecords: %d records, next %v, lag %v; want 1 record, no next iterator, a lag", len(out.Records), out.NextShardIterator, out.MillisBehindLatest)
		}
		change, err := DecodeChange(out.Records[0].Data)
		if err != nil || change.EventName != "REMOVE" || change.NewImage != nil {
			t.Errorf("DecodeChange: %+v, %v; want a REMOVE without image", change, err)
		}
	})
	t.Run("no iterator past the end", func(t *testing.T) {
		t.Parallel()
		kc := newStreamsKinesis(streamsTestConfig(), funcStreams{
			iterator: func(*dynamodbstreams.GetShardIteratorInput) (*dynamodbstreams.GetShardIteratorOutput, error) {
				return &dynamodbstreams.GetShardIteratorOutput{}, nil
			},
		}, "arn:stream")
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: openIterator(t, kc, "s")})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		if len(out.Records) != 0 || out.NextShardIterator != nil || out.MillisBehindLatest == nil {
			t.Fatalf("GetRecords: %d records, next %v, lag %v; want the shard's end", len(out.Records), out.NextShardIterator, out.MillisBehindLatest)
		}
	})
}

func TestStreamsKinesisCapsLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		asked *int32
		want  *int32
	}{
		{aws.Int32(10000), aws.Int32(streamsMaxRecords)},
		{aws.Int32(streamsMaxRecords), aws.Int32(streamsMaxRecords)},
		{aws.Int32(5), aws.Int32(5)},
		{nil, nil},
	}
	for _, tc := range tests {
		var got *int32
		kc := newStreamsKinesis(streamsTestConfig(), funcStreams{
			iterator: fixedIterator,
			records: func(in *dynamodbstreams.GetRecordsInput) (*dynamodbstreams.GetRecordsOutput, error) {
				got = in.Limit
				return &dynamodbstreams.GetRecordsOutput{NextShardIterator: aws.String("inner")}, nil
			},
		}, "arn:stream")
		if _, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: openIterator(t, kc, "s"), Limit: tc.asked}); err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("Limit %v: Streams got %v, want %v", aws.ToInt32(tc.asked), aws.ToInt32(got), aws.ToInt32(tc.want))
		}
	}
}

func TestSeqFilterAdmits(t *testing.T) {
	t.Parallel()
	const long = "4000000000000000000000000000000000000009" // 40 digits, as on AWS
	tests := []struct {
		name    string
		filter  seqFilter
		seq     string
		want    bool
		wantErr bool
	}{
		{"no filter", seqFilter{}, "1", true, false},
		{"after: later, shorter string sorts after", seqFilter{Seq: "9"}, "10", true, false},
		{"after: earlier, longer string sorts before", seqFilter{Seq: "10"}, "9", false, false},
		{"after: equal", seqFilter{Seq: "10"}, "10", false, false},
		{"at: equal", seqFilter{Seq: "10", Inclusive: true}, "10", true, false},
		{"at: earlier", seqFilter{Seq: "10", Inclusive: true}, "9", false, false},
		{"after: beyond int64", seqFilter{Seq: long}, "4000000000000000000000000000000000000010", true, false},
		{"after: beyond int64, earlier", seqFilter{Seq: long}, "4000000000000000000000000000000000000008", false, false},
		{"record not decimal", seqFilter{Seq: "1"}, "x", false, true},
		{"filter not decimal", seqFilter{Seq: "-1"}, "1", false, true},
	}
	for _, tc := range tests {
		got, err := tc.filter.admits(tc.seq)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: admits(%s) = %v, %v; want %v, error %v", tc.name, tc.seq, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestImageJSON(t *testing.T) {
	t.Parallel()
	image := map[string]stypes.AttributeValue{
		"s":    &stypes.AttributeValueMemberS{Value: "x"},
		"n":    &stypes.AttributeValueMemberN{Value: "123456789012345678901234567890"},
		"f":    &stypes.AttributeValueMemberN{Value: "0.1"},
		"b":    &stypes.AttributeValueMemberB{Value: []byte("hi")},
		"ok":   &stypes.AttributeValueMemberBOOL{Value: true},
		"null": &stypes.AttributeValueMemberNULL{Value: true},
		"ss":   &stypes.AttributeValueMemberSS{Value: []string{"a", "b"}},
		"ns":   &stypes.AttributeValueMemberNS{Value: []string{"1", "99999999999999999999"}},
		"l":    &stypes.AttributeValueMemberL{Value: []stypes.AttributeValue{&stypes.AttributeValueMemberN{Value: "2"}}},
		"m":    &stypes.AttributeValueMemberM{Value: map[string]stypes.AttributeValue{"k": &stypes.AttributeValueMemberN{Value: "3"}}},
	}
	got, err := imageJSON(image)
	if err != nil {
		t.Fatalf("imageJSON: %v", err)
	}
	want := `{"b":"aGk=","f":0.1,"l":[2],"m":{"k":3},"n":123456789012345678901234567890,"ns":[1,99999999999999999999],"null":null,"ok":true,"s":"x","ss":["a","b"]}`
	if string(got) != want {
		t.Errorf("imageJSON:\n got %s\nwant %s", got, want)
	}
}

func TestDecodeChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    Change
		wantErr string
	}{
		{"insert", `{"eventName":"INSERT","newImage":{"a":1}}`, Change{EventName: "INSERT", NewImage: json.RawMessage(`{"a":1}`)}, ""},
		{"remove", `{"eventName":"REMOVE"}`, Change{EventName: "REMOVE"}, ""},
		{"not json", `{"eventName":`, Change{}, "decode stream change"},
		{"no event name", `{"newImage":{}}`, Change{}, "eventName is missing"},
		{"unconvertible image", `{"eventName":"INSERT","error":"bad number"}`, Change{}, "bad number"},
	}
	for _, tc := range tests {
		got, err := DecodeChange([]byte(tc.data))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: got error %v, want one mentioning %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.EventName != tc.want.EventName || string(got.NewImage) != string(tc.want.NewImage) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
