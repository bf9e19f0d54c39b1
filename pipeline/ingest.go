package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
// Ingest commits in groups: one committer puts records while events
// arrive, and everything that arrives while a PutRecords call is in flight
// goes in the next call, each producer's waiting events — from any number
// of concurrent Publish calls — packed into as few records as the record
// size limit allows (a JSON array per record). Nothing waits when Ingest is
// idle: the first event starts a call at once. Under load a record carries
// many events, which cuts Kinesis payload units and the aggregator's reads.
//
// A producer has at most one record in flight: its next record is formed
// and sent only after the previous one was accepted or given up, so a
// retried record can never land behind a later one and per-producer order
// (the order in which its events reached Publish) survives partial
// PutRecords failures. Records of different producers share calls.
type Ingest struct {
	kc       recordsPutter
	stream   string
	retryFor time.Duration
	// recordLimit bounds a packed record: maxRecordBytes (tests lower it).
	recordLimit int

	mu sync.Mutex
	// queues holds each producer with events waiting or a record to put;
	// order lists them first-seen, so records go out in arrival order.
	queues  map[string]*producerQueue
	order   []string
	running bool          // a committer goroutine runs
	wake    chan struct{} // new events for a committer waiting out a backoff
}

// NewIngest returns an Ingest writing to stream through kc.
func NewIngest(kc recordsPutter, stream string) *Ingest {
	return &Ingest{
		kc: kc, stream: stream, retryFor: ingestRetryFor, recordLimit: maxRecordBytes,
		queues: map[string]*producerQueue{}, wake: make(chan struct{}, 1),
	}
}

// publishRequest is one Publish call waiting for its events.
type publishRequest struct {
	receipts []event.Receipt
	events   []event.Event
	left     int   // events not yet accepted
	err      error // why it failed; set once, before done closes
	done     chan struct{}
}

// over reports whether req is answered (all in, or failed).
func (r *publishRequest) over() bool { return r.left == 0 || r.err != nil }

// fail answers req with err unless it is answered already.
func (r *publishRequest) fail(err error) {
	if !r.over() {
		r.err = err
		close(r.done)
	}
}

// queuedEvent is one event of a request, encoded, waiting for a record.
type queuedEvent struct {
	req  *publishRequest
	idx  int // in req.events
	data []byte
}

// producerQueue is a producer's events not yet in a record, and its one
// record being put (or waiting to be retried).
type producerQueue struct {
	waiting []queuedEvent
	head    *pendingRecord
}

// pendingRecord is one record to put: a producer's chunk of events,
// possibly of several requests.
type pendingRecord struct {
	producer  string
	data      []byte
	events    []queuedEvent
	attempts  int
	deadline  time.Time // given up when refused after it
	notBefore time.Time // backing off until then
	lastErr   error
}

// live reports whether any request in r still waits for it.
func (r *pendingRecord) live() bool {
	for _, e := range r.events {
		if !e.req.over() {
			return true
		}
	}
	return false
}

// Publish puts events into the stream and returns, in order, where each one
// landed. It returns only when every event is in Kinesis; otherwise an error
// wrapping event.ErrUnavailable (some events may then be in the stream: a retry
// with the same eventIds is deduplicated downstream). A record that is given
// up fails exactly the requests with events in it. When ctx ends first,
// Publish returns at once; its events not yet sent are dropped. Every
// event must have its EventID and Timestamp set.
func (in *Ingest) Publish(ctx context.Context, events []event.Event) ([]event.Receipt, error) {
	encoded, err := encodeEvents(events, in.recordLimit)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return []event.Receipt{}, nil
	}
	req := &publishRequest{receipts: make([]event.Receipt, len(events)), events: events, left: len(events), done: make(chan struct{})}
	in.mu.Lock()
	for i, e := range events {
		q, ok := in.queues[e.AgentID]
		if !ok {
			q = &producerQueue{}
			in.queues[e.AgentID] = q
			in.order = append(in.order, e.AgentID)
		}
		q.waiting = append(q.waiting, queuedEvent{req: req, idx: i, data: encoded[i]})
	}
	if !in.running {
		in.running = true
		// The committer serves every request, so it must outlive this
		// one's ctx; each call is bounded by retryFor instead.
		go in.commit(context.WithoutCancel(ctx))
	} else {
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
	in.mu.Unlock()

	select {
	case <-req.done:
	case <-ctx.Done():
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	req.fail(fmt.Errorf("stream %s: %w: %v", in.stream, event.ErrUnavailable, ctx.Err()))
	if req.err != nil {
		return nil, req.err
	}
	return req.receipts, nil
}

// commit puts rounds of records until no producer has anything waiting.
func (in *Ingest) commit(ctx context.Context) {
	for {
		in.mu.Lock()
		recs, wait, idle := in.nextRound(time.Now())
		if idle {
			in.running = false
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		if len(recs) == 0 { // every record backs off: wait, or for new events
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-in.wake:
			}
			t.Stop()
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, in.retryFor)
		done, err := in.putRound(cctx, recs)
		cancel()
		in.mu.Lock()
		in.settle(recs, done, err, time.Now())
		in.mu.Unlock()
	}
}

// nextRound returns the records to put now: each producer's record, formed
// from its waiting events if it has none, unless it backs off. wait is the
// shortest backoff left when no record is ready; idle says nothing waits
// at all. Called with in.mu held.
func (in *Ingest) nextRound(now time.Time) (recs []*pendingRecord, wait time.Duration, idle bool) {
	wait = backoff.Max
	order := in.order[:0]
	for _, p := range in.order {
		q := in.queues[p]
		if q.head != nil && !q.head.live() {
			q.head = nil // everyone waiting for it gave up
		}
		if q.head == nil {
			q.head = in.formRecord(p, q, now)
		}
		if q.head == nil {
			delete(in.queues, p)
			continue
		}
		order = append(order, p)
		if d := q.head.notBefore.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		recs = append(recs, q.head)
	}
	clear(in.order[len(order):])
	in.order = order
	return recs, wait, len(in.order) == 0
}

// formRecord takes q's waiting events, in order, into one record of at most
// in.recordLimit bytes, skipping events of requests already answered; nil
// when none wait. Sizes count what event.EncodeRecord adds: an array's two
// brackets and one comma per event.
func (in *Ingest) formRecord(producer string, q *producerQueue, now time.Time) *pendingRecord {
	r := &pendingRecord{producer: producer, deadline: now.Add(in.retryFor)}
	size, n := 2, 0
	for ; n < len(q.waiting); n++ {
		e := q.waiting[n]
		if e.req.over() {
			continue
		}
		if len(r.events) > 0 && size+len(e.data)+1 > in.recordLimit {
			break
		}
		r.events = append(r.events, e)
		size += len(e.data) + 1
	}
	q.waiting = q.waiting[n:]
	if len(r.events) == 0 {
		return nil
	}
	chunk := make([][]byte, len(r.events))
	for i, e := range r.events {
		chunk[i] = e.data
	}
	r.data = event.EncodeRecord(chunk)
	return r
}

// settle records a round's outcome: accepted records answer their events;
// refused ones are retried at once when the round made progress, after a
// backoff when it made none, and given up past their deadline, failing
// their requests. Called with in.mu held.
func (in *Ingest) settle(recs []*pendingRecord, done map[*pendingRecord]types.PutRecordsResultEntry, err error, now time.Time) {
	// A round without progress backs off as one, so the records it
	// carried are retried together, in one call.
	attempts := 0
	for _, r := range recs {
		attempts = max(attempts, r.attempts)
	}
	retryAt := now.Add(backoff.Delay(attempts))
	for _, r := range recs {
		q := in.queues[r.producer]
		res, ok := done[r]
		if ok {
			q.head = nil
			for _, e := range r.events {
				if e.req.over() {
					continue
				}
				e.req.receipts[e.idx] = event.Receipt{EventID: e.req.events[e.idx].EventID, ShardID: aws.ToString(res.ShardId), SequenceNumber: aws.ToString(res.SequenceNumber)}
				if e.req.left--; e.req.left == 0 {
					close(e.req.done)
				}
			}
			continue
		}
		r.attempts++
		r.lastErr = err
		switch {
		case now.After(r.deadline):
			q.head = nil
			gaveUp := fmt.Errorf("stream %s producer %s: record of %d events not accepted after %d attempts: %w (%v)", in.stream, r.producer, len(r.events), r.attempts, event.ErrUnavailable, r.lastErr)
			for _, e := range r.events {
				e.req.fail(gaveUp)
			}
		case len(done) > 0:
			r.notBefore = now
		default:
			r.notBefore = retryAt
		}
	}
}

// putRound puts recs with as few PutRecords calls as the limits allow and
// reports which were accepted, with where they landed, and the last error
// of those that were not.
func (in *Ingest) putRound(ctx context.Context, recs []*pendingRecord) (map[*pendingRecord]types.PutRecordsResultEntry, error) {
	done := map[*pendingRecord]types.PutRecordsResultEntry{}
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
			done[batch[i]] = res
		}
	}
	return done, lastErr
}

// encodeEvents returns each event's JSON, or event.ErrTooLarge naming the
// first event that could not fit in a record of limit bytes.
func encodeEvents(events []event.Event, limit int) ([][]byte, error) {
	out := make([][]byte, len(events))
	for i, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if len(data)+2 > limit {
			return nil, fmt.Errorf("event %d (%d bytes): %w", i, len(data), event.ErrTooLarge)
		}
		out[i] = data
	}
	return out, nil
}
