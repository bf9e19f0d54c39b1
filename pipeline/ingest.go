package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/backoff"
)

// Kinesis limits on one PutRecords call and one record.
const (
	maxPutRecords      = 500
	maxPutRecordsBytes = 5 << 20
	// maxRecordBytes is Kinesis' 1 MiB record limit (data plus partition
	// key); 1 KiB is left for the partition key.
	maxRecordBytes = 1<<20 - 1<<10
)

// ingestRetryFor bounds how long Publish retries records Kinesis refused
// (throttling, internal errors) before answering event.ErrUnavailable: long enough
// to ride out a throttled second or two, short enough for an HTTP client.
const ingestRetryFor = 10 * time.Second

// recordsPutter is the part of *kinesis.Client Ingest calls.
type recordsPutter interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// Ingest writes producers' events into the Kinesis stream. It is safe for
// concurrent use.
//
// Events of one producer in one call are packed into as few records as
// possible (a JSON array per record, each under the record size limit) and a
// producer's records are written one after another, so a retried record can
// never land behind a later one: per-producer order survives partial
// PutRecords failures. Packing also cuts Kinesis payload units and the
// aggregator's reads.
type Ingest struct {
	kc       recordsPutter
	stream   string
	retryFor time.Duration
	// recordLimit bounds a packed record: maxRecordBytes (tests lower it).
	recordLimit int
}

// NewIngest returns an Ingest writing to stream through kc.
func NewIngest(kc recordsPutter, stream string) *Ingest {
	return &Ingest{kc: kc, stream: stream, retryFor: ingestRetryFor, recordLimit: maxRecordBytes}
}

// pendingRecord is one record to put: a producer's chunk of events.
type pendingRecord struct {
	producer string
	data     []byte
	events   []int // indexes in the Publish call of the events it holds
}

// Publish puts events into the stream and returns, in order, where each one
// landed. It returns only when every event is in Kinesis; otherwise an error
// wrapping event.ErrUnavailable (some events may then be in the stream: a retry
// with the same eventIds is deduplicated downstream). Every event must have
// its EventID and Timestamp set.
func (in *Ingest) Publish(ctx context.Context, events []event.Event) ([]event.Receipt, error) {
	queues, err := packRecords(events, in.recordLimit)
	if err != nil {
		return nil, err
	}
	receipts := make([]event.Receipt, len(events))
	deadline := time.Now().Add(in.retryFor)
	for attempt := 0; len(queues) > 0; attempt++ {
		// The head record of each producer goes in this round; the next
		// one of that producer only after it is in.
		heads := make([]*pendingRecord, 0, len(queues))
		for _, q := range queues {
			heads = append(heads, q[0])
		}
		done, err := in.putRound(ctx, heads, receipts, events)
		if err != nil && !errors.Is(err, errRetryable) {
			return nil, err
		}
		next := queues[:0]
		for _, q := range queues {
			if done[q[0]] {
				q = q[1:]
			}
			if len(q) > 0 {
				next = append(next, q)
			}
		}
		queues = next
		if len(queues) == 0 {
			break
		}
		if len(done) == 0 { // no progress: back off
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("stream %s: %d records not accepted after %d attempts: %w (%v)", in.stream, len(queues), attempt+1, event.ErrUnavailable, err)
			}
			if !backoff.Sleep(ctx, backoff.Delay(attempt)) {
				return nil, fmt.Errorf("stream %s: %w: %v", in.stream, event.ErrUnavailable, ctx.Err())
			}
		}
	}
	return receipts, nil
}

var errRetryable = errors.New("retryable")

// putRound puts recs with as few PutRecords calls as the limits allow and
// reports which were accepted, filling their events' receipts.
func (in *Ingest) putRound(ctx context.Context, recs []*pendingRecord, receipts []event.Receipt, events []event.Event) (map[*pendingRecord]bool, error) {
	done := map[*pendingRecord]bool{}
	var lastErr error
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && n < maxPutRecords && size+len(recs[n].data)+len(recs[n].producer) <= maxPutRecordsBytes {
			size += len(recs[n].data) + len(recs[n].producer)
			n++
		}
		batch := recs[:n]
		recs = recs[n:]
		input := &kinesis.PutRecordsInput{StreamName: aws.String(in.stream), Records: make([]types.PutRecordsRequestEntry, len(batch))}
		for i, r := range batch {
			input.Records[i] = types.PutRecordsRequestEntry{Data: r.data, PartitionKey: aws.String(r.producer)}
		}
		out, err := in.kc.PutRecords(ctx, input)
		if err != nil {
			if ctx.Err() != nil {
				return done, fmt.Errorf("stream %s: %w: %v", in.stream, event.ErrUnavailable, err)
			}
			lastErr = err
			continue
		}
		for i, res := range out.Records {
			if i >= len(batch) || res.ErrorCode != nil {
				if res.ErrorCode != nil {
					lastErr = fmt.Errorf("%s: %s", aws.ToString(res.ErrorCode), aws.ToString(res.ErrorMessage))
				}
				continue
			}
			r := batch[i]
			done[r] = true
			for _, j := range r.events {
				receipts[j] = event.Receipt{EventID: events[j].EventID, ShardID: aws.ToString(res.ShardId), SequenceNumber: aws.ToString(res.SequenceNumber)}
			}
		}
	}
	if lastErr != nil {
		return done, fmt.Errorf("%w: %v", errRetryable, lastErr)
	}
	return done, nil
}

// packRecords groups events by producer, keeping their order, into records
// of at most limit bytes: a lone event is written as an object (exactly
// what a producer putting straight into Kinesis writes), several as an array.
// It returns one queue of records per producer, producers in first-seen order.
func packRecords(events []event.Event, limit int) ([][]*pendingRecord, error) {
	var queues [][]*pendingRecord
	byProducer := map[string]int{}
	var (
		chunkIdx  []int    // indexes of the events of the record being packed
		chunkData [][]byte // and their JSON
	)
	flush := func(producer string) {
		if len(chunkIdx) == 0 {
			return
		}
		r := &pendingRecord{producer: producer, events: chunkIdx, data: event.EncodeRecord(chunkData)}
		q, ok := byProducer[producer]
		if !ok {
			q = len(queues)
			byProducer[producer] = q
			queues = append(queues, nil)
		}
		queues[q] = append(queues[q], r)
		chunkIdx, chunkData = nil, nil
	}
	// Walk producers in first-seen order, each producer's events in order.
	order := []string{}
	idxs := map[string][]int{}
	for i, e := range events {
		if _, ok := idxs[e.AgentID]; !ok {
			order = append(order, e.AgentID)
		}
		idxs[e.AgentID] = append(idxs[e.AgentID], i)
	}
	// Sizes count what event.EncodeRecord adds: an array's two brackets and
	// one comma per event.
	for _, p := range order {
		size := 2
		for _, i := range idxs[p] {
			data, err := json.Marshal(events[i])
			if err != nil {
				return nil, fmt.Errorf("event %d: %w", i, err)
			}
			if len(data)+2 > limit {
				return nil, fmt.Errorf("event %d (%d bytes): %w", i, len(data), event.ErrTooLarge)
			}
			if size+len(data)+1 > limit {
				flush(p)
				size = 2
			}
			chunkIdx, chunkData = append(chunkIdx, i), append(chunkData, data)
			size += len(data) + 1
		}
		flush(p)
	}
	return queues, nil
}
