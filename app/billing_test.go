package app_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
)

// prices are us-east-1 list prices in dollars per unit, the one table the
// benchmark's costs come from. Read 2026-12-03 from the pages named
// beside each; check them again before relying on a figure.
var prices = struct {
	// DynamoDB on-demand, per write / read request unit (1 KB written; 4 KB
	// read strongly consistent, half a unit eventually consistent): $0.625
	// and $0.125 per million since the November 2024 cut.
	// https://aws.amazon.com/dynamodb/pricing/on-demand/ (and
	// airbyte.com/data-engineering-resources/dynamodb-pricing, 2026).
	DynamoDBWrite, DynamoDBRead float64
	// DynamoDB Streams, per GetRecords call (a streams read request unit):
	// $0.02 per 100,000; Lambda's reads are free, KCL's are not.
	// https://aws.amazon.com/dynamodb/pricing/on-demand/ ("Change data
	// capture"); docs.aws.amazon.com/amazondynamodb/latest/developerguide/CostOptimization_StreamsUsage.html
	StreamsRead float64
	// Kinesis Data Streams on-demand, per GiB: data in (each record rounded
	// up to 1 KiB) $0.08, data out $0.04, plus $0.04 per stream-hour (not
	// per delivery, so not here). Provisioned mode bills PUT payload units
	// of 25 KB at $0.014 per million instead, shown for comparison.
	// https://aws.amazon.com/kinesis/data-streams/pricing/ (deploy/README.md
	// uses the same figures).
	KinesisInGiB, KinesisOutGiB, KinesisPutUnit float64
	// SQS, per request, each 64 KiB of payload a request: FIFO $0.50 per
	// million (send, receive, delete, change visibility), standard $0.40
	// (other actions). cloudburn.io/blog/amazon-sqs-pricing (March 2026),
	// factualminds.com/blog/amazon-sqs-pricing-64kb-rule-fifo-vs-standard
	// (June 2026); https://aws.amazon.com/sqs/pricing/
	SQSFIFORequest, SQSRequest float64
	// SNS FIFO topics: publish $0.30 per million requests (64 KiB each)
	// (factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols,
	// June 2026) plus $0.017 per GiB of payload published; each delivery
	// to an SQS subscription $0.01 per million plus $0.001 per GiB. The two
	// payload rates and the delivery rate are the FIFO table of
	// https://aws.amazon.com/sns/pricing/ as remembered, not found in the
	// stored copies: verify. The queue side of an SNS delivery is one SQS
	// FIFO request per message (SQSFIFORequest).
	SNSFIFOPublish, SNSFIFOPublishGiB, SNSFIFODelivery, SNSFIFODeliveryGiB float64
}{
	DynamoDBWrite: 0.625e-6, DynamoDBRead: 0.125e-6,
	StreamsRead:  0.02 / 100_000,
	KinesisInGiB: 0.08, KinesisOutGiB: 0.04, KinesisPutUnit: 0.014e-6,
	SQSFIFORequest: 0.50e-6, SQSRequest: 0.40e-6,
	SNSFIFOPublish: 0.30e-6, SNSFIFOPublishGiB: 0.017, SNSFIFODelivery: 0.01e-6, SNSFIFODeliveryGiB: 0.001,
}

const gib = 1 << 30

// billed is what AWS bills for a set of calls, in its own units.
type billed struct {
	WriteUnits, ReadUnits float64 // DynamoDB request units
	StreamReads           float64 // DynamoDB Streams GetRecords calls
	KinesisRecords        float64 // records put
	KinesisInKiB          float64 // records put, each rounded up to 1 KiB
	KinesisPutUnits       float64 // records put, in 25 KB units (provisioned)
	KinesisOutBytes       float64 // data read by GetRecords
	SQSSends              float64 // FIFO send requests (64 KiB chunks)
	SQSOther              float64 // every other SQS request
	SQSMessages           float64 // messages sent
	SQSMessageBytes       float64 // their bodies
}

func (b billed) minus(o billed) billed {
	return billed{
		b.WriteUnits - o.WriteUnits, b.ReadUnits - o.ReadUnits, b.StreamReads - o.StreamReads,
		b.KinesisRecords - o.KinesisRecords, b.KinesisInKiB - o.KinesisInKiB, b.KinesisPutUnits - o.KinesisPutUnits,
		b.KinesisOutBytes - o.KinesisOutBytes, b.SQSSends - o.SQSSends, b.SQSOther - o.SQSOther,
		b.SQSMessages - o.SQSMessages, b.SQSMessageBytes - o.SQSMessageBytes,
	}
}

// dollars is what b costs at list prices, by line; Kinesis on on-demand.
func (b billed) dollars() map[string]float64 {
	return map[string]float64{
		"DynamoDB writes":  b.WriteUnits * prices.DynamoDBWrite,
		"DynamoDB reads":   b.ReadUnits * prices.DynamoDBRead,
		"DynamoDB Streams": b.StreamReads * prices.StreamsRead,
		"Kinesis in":       b.KinesisInKiB * 1024 / gib * prices.KinesisInGiB,
		"Kinesis out":      b.KinesisOutBytes / gib * prices.KinesisOutGiB,
		"SQS":              b.SQSSends*prices.SQSFIFORequest + b.SQSOther*prices.SQSRequest,
	}
}

// snsFIFODollars is what the same workload would cost through an SNS FIFO
// topic per producer with each subscriber's SQS FIFO queue subscribed:
// one Publish per event, one delivery per message, and the queue's
// request for each delivered message. Reading the queues costs the same
// either way and is left out of both.
func snsFIFODollars(events, deliveries, messageBytes float64) float64 {
	chunks := math.Max(1, math.Ceil(messageBytes/deliveries/(64<<10)))
	publish := events * (chunks*prices.SNSFIFOPublish + messageBytes/deliveries/gib*prices.SNSFIFOPublishGiB)
	deliver := deliveries*(prices.SNSFIFODelivery+chunks*prices.SQSFIFORequest) + messageBytes/gib*prices.SNSFIFODeliveryGiB
	return publish + deliver
}

// report renders b per delivery, and its cost per million deliveries.
func (b billed) report(deliveries, events float64) (string, float64, float64) {
	per := func(x float64) float64 { return x / deliveries }
	lines := []string{fmt.Sprintf("  billed per delivery: DynamoDB %.3f WRU %.3f RRU, Streams %.4f GetRecords, Kinesis %.3f records %.3f KiB-in (%.3f PUT units) %.0f B-out, SQS %.3f FIFO requests %.4f other (%.0f B per message)",
		per(b.WriteUnits), per(b.ReadUnits), per(b.StreamReads), per(b.KinesisRecords), per(b.KinesisInKiB), per(b.KinesisPutUnits),
		per(b.KinesisOutBytes), per(b.SQSSends), per(b.SQSOther), b.SQSMessageBytes/math.Max(1, b.SQSMessages))}
	d := b.dollars()
	var names []string
	total := 0.0
	for k, v := range d {
		names = append(names, k)
		total += v
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.3f", k, d[k]/deliveries*1e6))
	}
	sns := snsFIFODollars(events, deliveries, b.SQSMessageBytes) / deliveries * 1e6
	lines = append(lines, fmt.Sprintf("  $ per million deliveries (us-east-1 list, 2026-12-03): fanout %.3f (%s); SNS FIFO -> SQS FIFO %.3f",
		total/deliveries*1e6, strings.Join(parts, ", "), sns))
	return strings.Join(lines, "\n"), total / deliveries * 1e6, sns
}

// meter adds up what the calls of the clients it is installed on bill,
// from each call's typed input and output. Calls answered without a
// request (the KCL adapter's Kinesis-shaped reads of DynamoDB Streams)
// bill nothing here; the DynamoDB Streams call they make does. Safe for
// concurrent use.
type meter struct {
	mu sync.Mutex
	b  billed
}

type sentKey struct{}

func (m *meter) snapshot() billed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b
}

// Middleware installs m on an SDK client's stack (aws.Config.APIOptions).
func (m *meter) Middleware(stack *middleware.Stack) error {
	err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("bench-meter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			sent := new(bool)
			out, md, err := next.HandleInitialize(middleware.WithStackValue(ctx, sentKey{}, sent), in)
			if *sent {
				m.add(in.Parameters, out.Result, err)
			}
			return out, md, err
		}), middleware.Before)
	if err != nil {
		return err
	}
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("bench-meter-sent",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if sent, ok := middleware.GetStackValue(ctx, sentKey{}).(*bool); ok {
				*sent = true
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

func kib(n int) float64       { return math.Max(1, math.Ceil(float64(n)/1024)) }
func readUnits(n int) float64 { return math.Max(1, math.Ceil(float64(n)/4096)) }
func consistency(c *bool) float64 {
	if c != nil && *c {
		return 1
	}
	return 0.5
}

func (m *meter) add(input, output any, err error) {
	// A refused conditional write is billed like the write.
	var ccf *ddbtypes.ConditionalCheckFailedException
	failedCondition := errors.As(err, &ccf)
	if err != nil && !failedCondition {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.b
	switch in := input.(type) {
	case *dynamodb.PutItemInput:
		b.WriteUnits += kib(itemSize(in.Item))
	case *dynamodb.UpdateItemInput, *dynamodb.DeleteItemInput:
		b.WriteUnits++ // leases, checkpoints, claims: items under 1 KB
	case *dynamodb.BatchWriteItemInput:
		for _, reqs := range in.RequestItems {
			for _, r := range reqs {
				if r.PutRequest != nil {
					b.WriteUnits += kib(itemSize(r.PutRequest.Item))
				} else {
					b.WriteUnits++
				}
			}
		}
	case *dynamodb.TransactWriteItemsInput:
		for _, it := range in.TransactItems {
			if it.Put != nil {
				b.WriteUnits += 2 * kib(itemSize(it.Put.Item))
			} else {
				b.WriteUnits += 2
			}
		}
	case *dynamodb.GetItemInput:
		size := 0
		if out, ok := output.(*dynamodb.GetItemOutput); ok && out != nil {
			size = itemSize(out.Item)
		}
		b.ReadUnits += readUnits(size) * consistency(in.ConsistentRead)
	case *dynamodb.QueryInput:
		if out, ok := output.(*dynamodb.QueryOutput); ok && out != nil {
			b.ReadUnits += readUnits(itemsSize(out.Items)) * consistency(in.ConsistentRead)
		}
	case *dynamodb.ScanInput:
		if out, ok := output.(*dynamodb.ScanOutput); ok && out != nil {
			b.ReadUnits += readUnits(itemsSize(out.Items)) * consistency(in.ConsistentRead)
		}
	case *dynamodbstreams.GetRecordsInput:
		b.StreamReads++
	case *kinesis.PutRecordsInput:
		out, _ := output.(*kinesis.PutRecordsOutput)
		for i, r := range in.Records {
			if out != nil && i < len(out.Records) && out.Records[i].ErrorCode != nil {
				continue
			}
			m.b.putRecord(len(r.Data) + len(*r.PartitionKey))
		}
	case *kinesis.PutRecordInput:
		m.b.putRecord(len(in.Data) + len(*in.PartitionKey))
	case *kinesis.GetRecordsInput:
		if out, ok := output.(*kinesis.GetRecordsOutput); ok && out != nil {
			for _, r := range out.Records {
				b.KinesisOutBytes += float64(len(r.Data))
			}
		}
	case *sqs.SendMessageBatchInput:
		size := 0
		for _, e := range in.Entries {
			size += len(*e.MessageBody)
		}
		b.SQSSends += math.Max(1, math.Ceil(float64(size)/(64<<10)))
		b.SQSMessages += float64(len(in.Entries))
		b.SQSMessageBytes += float64(size)
	case *sqs.SendMessageInput:
		b.SQSSends += math.Max(1, math.Ceil(float64(len(*in.MessageBody))/(64<<10)))
		b.SQSMessages++
		b.SQSMessageBytes += float64(len(*in.MessageBody))
	default:
		if strings.HasPrefix(fmt.Sprintf("%T", input), "*sqs.") {
			b.SQSOther++
		}
		// DynamoDB and Kinesis control-plane calls (DescribeTable,
		// ListShards, GetShardIterator, ...) and STS bill nothing.
	}
}

func (b *billed) putRecord(size int) {
	b.KinesisRecords++
	b.KinesisInKiB += kib(size)
	b.KinesisPutUnits += math.Max(1, math.Ceil(float64(size)/(25<<10)))
}

// itemSize is a DynamoDB item's billed size: attribute names plus values
// (numbers about one byte per two digits, containers 3 bytes plus one per
// element).
func itemSize(item map[string]ddbtypes.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k) + valueSize(v)
	}
	return n
}

func itemsSize(items []map[string]ddbtypes.AttributeValue) int {
	n := 0
	for _, it := range items {
		n += itemSize(it)
	}
	return n
}

func valueSize(v ddbtypes.AttributeValue) int {
	switch v := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return len(v.Value)
	case *ddbtypes.AttributeValueMemberN:
		return len(v.Value)/2 + 1
	case *ddbtypes.AttributeValueMemberB:
		return len(v.Value)
	case *ddbtypes.AttributeValueMemberSS:
		n := 0
		for _, s := range v.Value {
			n += len(s)
		}
		return n
	case *ddbtypes.AttributeValueMemberNS:
		n := 0
		for _, s := range v.Value {
			n += len(s)/2 + 1
		}
		return n
	case *ddbtypes.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *ddbtypes.AttributeValueMemberM:
		return 3 + len(v.Value) + itemSize(v.Value)
	default: // BOOL, NULL
		return 1
	}
}
