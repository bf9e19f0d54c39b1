package kcl

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
)

const (
	// streamsMaxRecords is DynamoDB Streams' GetRecords maximum; KCL asks for
	// 10000 by default, which Streams rejects.
	streamsMaxRecords = 1000

	// adapterIteratorPrefix marks iterators minted by the adapter, so a
	// foreign string is rejected instead of being sent to Streams.
	adapterIteratorPrefix = "fanout-ddbs1:"

	// maxHashKey is 2^128-1. Streams shards have no hash key range; KCL does
	// not read it, but Kinesis clients expect one.
	maxHashKey = "340282366920938463463374607431768211455"
)

// StreamsReader is the part of the DynamoDB Streams API the adapter calls.
// *dynamodbstreams.Client satisfies it; tests use in-memory fakes for shard
// rollover, which the emulator never does.
type StreamsReader interface {
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// Change is the Data of every Kinesis record the adapter returns: one
// DynamoDB stream record of the table.
type Change struct {
	// EventName is INSERT, MODIFY or REMOVE.
	EventName string `json:"eventName"`
	// NewImage is the item after the change as plain JSON (numbers keep
	// DynamoDB's exact digits, binary is base64); absent on REMOVE.
	NewImage json.RawMessage `json:"newImage,omitempty"`
	// Error says why the image could not be converted. The record is still
	// returned, so one bad record cannot stall the shard: DecodeChange
	// reports it as an error and the consumer sets the record aside.
	Error string `json:"error,omitempty"`
}

// DecodeChange parses the Data of a record read through newStreamsKinesis.
// It fails on data that is not a stream change, and on a change whose image
// the adapter could not convert.
func DecodeChange(data []byte) (Change, error) {
	var c Change
	if err := json.Unmarshal(data, &c); err != nil {
		return Change{}, fmt.Errorf("decode stream change: %w", err)
	}
	if c.Error != "" {
		return c, fmt.Errorf("stream change %s: image not convertible: %s", c.EventName, c.Error)
	}
	if c.EventName == "" {
		return c, errors.New("decode stream change: eventName is missing")
	}
	return c, nil
}

// newStreamsKinesis returns a *kinesis.Client whose ListShards,
// GetShardIterator and GetRecords read the DynamoDB stream streamARN (any
// StreamName KCL passes is answered from streamARN); any other operation
// returns an error naming it. The answers come from streams, in process: the
// client sends no Kinesis request, so cfg needs no Kinesis endpoint.
//
// optFns are applied after the adapter is installed; middleware they add to
// the Initialize step with middleware.Before (such as gateChildren) wraps the
// adapter's answers. The client is safe for concurrent use. Records come in
// shard order; Data is a JSON Change (see DecodeChange), PartitionKey
// the item's key attributes as JSON, MillisBehindLatest always 0 (Streams
// does not report lag). An AT/AFTER_SEQUENCE_NUMBER iterator never returns a
// record before its sequence number, even from a Streams implementation that
// ignores it (the emulator restarts such iterators at the shard's start).
func newStreamsKinesis(cfg aws.Config, streams StreamsReader, streamARN string, optFns ...func(*kinesis.Options)) *kinesis.Client {
	a := &streamsAdapter{streams: streams, streamARN: streamARN}
	install := func(o *kinesis.Options) { o.APIOptions = append(o.APIOptions, a.addTo) }
	return kinesis.NewFromConfig(cfg, append([]func(*kinesis.Options){install}, optFns...)...)
}

// streamsAdapter answers Kinesis read operations from one DynamoDB stream.
type streamsAdapter struct {
	streams   StreamsReader
	streamARN string
}

// addTo installs the adapter last in the Initialize step, after the SDK's
// input validation, and before anything that would build an HTTP request.
func (a *streamsAdapter) addTo(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fanout.StreamsAdapter", a.handle), middleware.After)
}

// handle answers the operation without calling next: no request is sent.
func (a *streamsAdapter) handle(ctx context.Context, in middleware.InitializeInput, _ middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	// ctx carries the one per-call timeout (withCallTimeout, installed
	// before the adapter by NewStreamsWorker).
	var (
		result any
		err    error
	)
	switch params := in.Parameters.(type) {
	case *kinesis.ListShardsInput:
		result, err = a.listShards(ctx)
	case *kinesis.GetShardIteratorInput:
		result, err = a.getShardIterator(ctx, params)
	case *kinesis.GetRecordsInput:
		result, err = a.getRecords(ctx, params)
	default:
		err = fmt.Errorf("dynamodb streams adapter: kinesis operation %s is not supported (stream %s)",
			middleware.GetOperationName(ctx), a.streamARN)
	}
	if err != nil {
		return middleware.InitializeOutput{}, middleware.Metadata{}, err
	}
	return middleware.InitializeOutput{Result: result}, middleware.Metadata{}, nil
}

// listShards lists every shard of the stream in one page.
func (a *streamsAdapter) listShards(ctx context.Context) (*kinesis.ListShardsOutput, error) {
	var (
		shards []ktypes.Shard
		start  *string
	)
	for {
		out, err := a.streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{
			StreamArn:             aws.String(a.streamARN),
			ExclusiveStartShardId: start,
		})
		if err != nil {
			return nil, fmt.Errorf("describe stream=%s after shard=%s: %w", a.streamARN, aws.ToString(start), kinesisError(err))
		}
		if out.StreamDescription == nil {
			return nil, fmt.Errorf("describe stream=%s: no stream description", a.streamARN)
		}
		for _, s := range out.StreamDescription.Shards {
			shards = append(shards, kinesisShard(s))
		}
		next := out.StreamDescription.LastEvaluatedShardId
		if next == nil {
			return &kinesis.ListShardsOutput{Shards: shards}, nil
		}
		if aws.ToString(next) == aws.ToString(start) {
			return nil, fmt.Errorf("describe stream=%s: pagination repeats shard %s", a.streamARN, aws.ToString(next))
		}
		start = next
	}
}

// kinesisShard maps a Streams shard. SequenceNumberRange is never nil: KCL
// dereferences it.
func kinesisShard(s stypes.Shard) ktypes.Shard {
	rng := &ktypes.SequenceNumberRange{StartingSequenceNumber: aws.String("0")}
	if r := s.SequenceNumberRange; r != nil {
		if r.StartingSequenceNumber != nil {
			rng.StartingSequenceNumber = r.StartingSequenceNumber
		}
		rng.EndingSequenceNumber = r.EndingSequenceNumber
	}
	return ktypes.Shard{
		ShardId:             s.ShardId,
		ParentShardId:       s.ParentShardId,
		SequenceNumberRange: rng,
		HashKeyRange: &ktypes.HashKeyRange{
			StartingHashKey: aws.String("0"),
			EndingHashKey:   aws.String(maxHashKey),
		},
	}
}

// getShardIterator opens a Streams iterator and wraps it with the sequence
// number filter AT/AFTER_SEQUENCE_NUMBER need.
func (a *streamsAdapter) getShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput) (*kinesis.GetShardIteratorOutput, error) {
	shardID := aws.ToString(in.ShardId)
	req := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(a.streamARN), ShardId: in.ShardId}
	var filter seqFilter
	switch in.ShardIteratorType {
	case ktypes.ShardIteratorTypeTrimHorizon:
		req.ShardIteratorType = stypes.ShardIteratorTypeTrimHorizon
	case ktypes.ShardIteratorTypeLatest:
		req.ShardIteratorType = stypes.ShardIteratorTypeLatest
	case ktypes.ShardIteratorTypeAtSequenceNumber, ktypes.ShardIteratorTypeAfterSequenceNumber:
		seq := aws.ToString(in.StartingSequenceNumber)
		if _, ok := parseSeq(seq); !ok {
			return nil, fmt.Errorf("get shard iterator shard=%s: %w", shardID, &ktypes.InvalidArgumentException{
				Message: aws.String(fmt.Sprintf("starting sequence number %q is not a decimal number", seq)),
			})
		}
		req.SequenceNumber = aws.String(seq)
		filter = seqFilter{Seq: seq, Inclusive: in.ShardIteratorType == ktypes.ShardIteratorTypeAtSequenceNumber}
		req.ShardIteratorType = stypes.ShardIteratorTypeAfterSequenceNumber
		if filter.Inclusive {
			req.ShardIteratorType = stypes.ShardIteratorTypeAtSequenceNumber
		}
	default:
		return nil, fmt.Errorf("get shard iterator shard=%s: %w", shardID, &ktypes.InvalidArgumentException{
			Message: aws.String(fmt.Sprintf("shard iterator type %q is not supported on DynamoDB Streams", in.ShardIteratorType)),
		})
	}

	out, err := a.streams.GetShardIterator(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("get shard iterator stream=%s shard=%s type=%s: %w", a.streamARN, shardID, in.ShardIteratorType, kinesisError(err))
	}
	// A nil iterator means there is nothing more to read from a closed
	// shard: the wrapped iterator then reads as the shard's end.
	it := adapterIterator{Shard: shardID, Inner: aws.ToString(out.ShardIterator), seqFilter: filter}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(it.encode())}, nil
}

// getRecords reads one page, drops what the iterator's filter excludes and
// converts the rest.
func (a *streamsAdapter) getRecords(ctx context.Context, in *kinesis.GetRecordsInput) (*kinesis.GetRecordsOutput, error) {
	it, err := decodeAdapterIterator(aws.ToString(in.ShardIterator))
	if err != nil {
		return nil, fmt.Errorf("get records stream=%s: %w", a.streamARN, err)
	}
	if it.Inner == "" {
		return &kinesis.GetRecordsOutput{Records: []ktypes.Record{}, MillisBehindLatest: aws.Int64(0)}, nil
	}
	limit := in.Limit
	if limit != nil && *limit > streamsMaxRecords {
		limit = aws.Int32(streamsMaxRecords)
	}
	out, err := a.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(it.Inner), Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("get records stream=%s shard=%s: %w", a.streamARN, it.Shard, kinesisError(err))
	}

	records := make([]ktypes.Record, 0, len(out.Records))
	for _, r := range out.Records {
		if r.Dynamodb == nil || r.Dynamodb.SequenceNumber == nil {
			return nil, fmt.Errorf("get records stream=%s shard=%s event=%s: record has no sequence number",
				a.streamARN, it.Shard, aws.ToString(r.EventID))
		}
		seq := aws.ToString(r.Dynamodb.SequenceNumber)
		keep, err := it.admits(seq)
		if err != nil {
			return nil, fmt.Errorf("get records stream=%s shard=%s seq=%s: %w", a.streamARN, it.Shard, seq, err)
		}
		if !keep {
			continue
		}
		// Records come in sequence order: once one passes, all later do.
		it.seqFilter = seqFilter{}
		records = append(records, kinesisRecord(r))
	}

	res := &kinesis.GetRecordsOutput{Records: records, MillisBehindLatest: aws.Int64(0)}
	if out.NextShardIterator != nil {
		next := adapterIterator{Shard: it.Shard, Inner: aws.ToString(out.NextShardIterator), seqFilter: it.seqFilter}
		res.NextShardIterator = aws.String(next.encode())
	}
	return res, nil
}

// kinesisRecord converts one stream record whose Dynamodb part is present.
// A conversion failure is carried in the record (Change.Error) rather
// than failing the read, which would stall the shard on it forever.
func kinesisRecord(r stypes.Record) ktypes.Record {
	change := Change{EventName: string(r.EventName)}
	if len(r.Dynamodb.NewImage) > 0 {
		img, err := imageJSON(r.Dynamodb.NewImage)
		if err != nil {
			change.Error = err.Error()
		} else {
			change.NewImage = img
		}
	}
	data, err := json.Marshal(change)
	if err != nil {
		// Unreachable (NewImage came from json.Marshal), but never drop the record.
		data, _ = json.Marshal(Change{EventName: change.EventName, Error: "marshal stream change: " + err.Error()})
	}
	return ktypes.Record{
		Data:                        data,
		PartitionKey:                aws.String(partitionKey(r.Dynamodb.Keys)),
		SequenceNumber:              r.Dynamodb.SequenceNumber,
		ApproximateArrivalTimestamp: r.Dynamodb.ApproximateCreationDateTime,
	}
}

// partitionKey renders an item's key attributes as JSON: stable (object keys
// sorted) and never empty.
func partitionKey(keys map[string]stypes.AttributeValue) string {
	b, err := imageJSON(keys)
	if err != nil || len(keys) == 0 {
		return "{}"
	}
	return string(b)
}

// imageJSON converts a stream image to plain JSON. Numbers keep their exact
// digits (a float64 would corrupt integers above 2^53).
func imageJSON(image map[string]stypes.AttributeValue) (json.RawMessage, error) {
	item, err := attributevalue.FromDynamoDBStreamsMap(image)
	if err != nil {
		return nil, fmt.Errorf("convert stream image: %w", err)
	}
	var v map[string]any
	if err := attributevalue.UnmarshalMapWithOptions(item, &v, func(o *attributevalue.DecoderOptions) { o.UseNumber = true }); err != nil {
		return nil, fmt.Errorf("unmarshal stream image: %w", err)
	}
	b, err := json.Marshal(jsonNumbers(v))
	if err != nil {
		return nil, fmt.Errorf("marshal stream image: %w", err)
	}
	return b, nil
}

// jsonNumbers replaces attributevalue numbers, which JSON would quote, with
// json.Number, in place.
func jsonNumbers(v any) any {
	switch t := v.(type) {
	case attributevalue.Number:
		return json.Number(t)
	case []attributevalue.Number:
		out := make([]json.Number, len(t))
		for i, n := range t {
			out[i] = json.Number(n)
		}
		return out
	case map[string]any:
		for k, e := range t {
			t[k] = jsonNumbers(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = jsonNumbers(e)
		}
		return t
	default:
		return v
	}
}

// seqFilter drops the records an AT/AFTER_SEQUENCE_NUMBER iterator must not
// return. The zero value admits everything.
type seqFilter struct {
	// Seq is the requested sequence number; empty means no filter.
	Seq string `json:"q,omitempty"`
	// Inclusive admits Seq itself (AT_SEQUENCE_NUMBER).
	Inclusive bool `json:"n,omitempty"`
}

// admits reports whether a record with sequence number seq may be returned.
// Sequence numbers are compared as integers: their lengths vary.
func (f seqFilter) admits(seq string) (bool, error) {
	if f.Seq == "" {
		return true, nil
	}
	want, ok := parseSeq(f.Seq)
	if !ok {
		return false, fmt.Errorf("filter sequence number %q is not a decimal number", f.Seq)
	}
	got, ok := parseSeq(seq)
	if !ok {
		return false, fmt.Errorf("record sequence number %q is not a decimal number", seq)
	}
	c := got.Cmp(want)
	return c > 0 || (c == 0 && f.Inclusive), nil
}

// parseSeq parses a non-negative decimal sequence number.
func parseSeq(s string) (*big.Int, bool) {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() < 0 {
		return nil, false
	}
	return n, true
}

// adapterIterator is the shard iterator the adapter hands to KCL: the
// Streams iterator plus what the adapter must remember between reads.
type adapterIterator struct {
	// Shard names the shard in errors; GetRecords carries only the iterator.
	Shard string `json:"s"`
	// Inner is the Streams iterator; empty when the closed shard has been
	// read to its end.
	Inner string `json:"i,omitempty"`
	seqFilter
}

func (it adapterIterator) encode() string {
	b, err := json.Marshal(it)
	if err != nil {
		// Unreachable: the struct holds only strings and a bool.
		panic(fmt.Sprintf("encode shard iterator: %v", err))
	}
	return adapterIteratorPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func decodeAdapterIterator(s string) (adapterIterator, error) {
	invalid := func(why string) error {
		return &ktypes.InvalidArgumentException{Message: aws.String("shard iterator " + why)}
	}
	raw, ok := strings.CutPrefix(s, adapterIteratorPrefix)
	if !ok {
		return adapterIterator{}, invalid("was not issued by this adapter")
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return adapterIterator{}, invalid("is corrupt")
	}
	var it adapterIterator
	if err := json.Unmarshal(b, &it); err != nil {
		return adapterIterator{}, invalid("is corrupt")
	}
	return it, nil
}

// mappedError is a Streams error presented as the Kinesis error KCL reacts
// to; errors.As finds either, Error reads as the original.
type mappedError struct {
	kinesis error
	cause   error
}

func (e *mappedError) Error() string   { return e.cause.Error() }
func (e *mappedError) Unwrap() []error { return []error{e.kinesis, e.cause} }

// kinesisError maps the Streams errors KCL must react to onto their Kinesis
// counterparts: throttling makes KCL wait a second and retry; an expired
// iterator or a missing shard ends the shard consumer, which KCL restarts
// from the checkpoint at its next shard sync. TrimmedDataAccessException has
// no Kinesis counterpart and is returned as is.
func kinesisError(err error) error {
	var (
		limit    *stypes.LimitExceededException
		expired  *stypes.ExpiredIteratorException
		notFound *stypes.ResourceNotFoundException
		mapped   error
	)
	switch {
	case errors.As(err, &limit):
		mapped = &ktypes.ProvisionedThroughputExceededException{Message: aws.String(limit.ErrorMessage())}
	case errors.As(err, &expired):
		mapped = &ktypes.ExpiredIteratorException{Message: aws.String(expired.ErrorMessage())}
	case errors.As(err, &notFound):
		mapped = &ktypes.ResourceNotFoundException{Message: aws.String(notFound.ErrorMessage())}
	default:
		return err
	}
	return &mappedError{kinesis: mapped, cause: err}
}
