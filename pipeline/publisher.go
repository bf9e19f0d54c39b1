package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/kcl"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// SQS limits on one SendMessageBatch call.
const (
	maxBatchEntries = 10
	// maxBatchBytes is SQS's limit on the bodies of one batch together
	// (1 MiB since 2025; each message is far smaller: event.MaxBytes).
	// A message larger than that would go alone.
	maxBatchBytes = 1 << 20
)

// sendConcurrency is how many lanes (one subscriber's events of one
// producer) one shard's batch sends at once: as many as the aggregator's
// writes, so that a shard's publisher keeps pace with its aggregator.
const sendConcurrency = 32

// messageSender is satisfied by *store.Store: one SendMessageBatch call,
// returning its per-entry failures; store.ErrQueueMissing when the queue
// does not exist.
type messageSender interface {
	SendMessages(ctx context.Context, queueURL string, msgs []store.QueueMessage) ([]store.BatchFailure, error)
}

// Publisher sends each new SubscriberEvents item to its subscriber's SQS
// FIFO queue. It is safe for concurrent use by the record processors of
// several shards.
type Publisher struct {
	// agents finds a subscriber's queue before each send: *store.Store
	// remembers found agents (they never change), so that costs no call.
	agents agentGetter
	sender messageSender
	dead   *deadLetters
	watch  *Watchdog
	rec    Recorder
	log    *zap.Logger
}

// PublisherDeps is what a Publisher reads and writes. *store.Store serves
// every field; tests give wrappers that fail on purpose.
type PublisherDeps struct {
	Agents      agentGetter
	Queues      messageSender
	DeadLetters deadLetterer
	// Metrics counts deliveries (and their latency) and dead letters; nil
	// counts nothing.
	Metrics Recorder
}

// NewPublisher returns a Publisher over deps.
func NewPublisher(deps PublisherDeps, log *zap.Logger) *Publisher {
	watch := NewWatchdog(log)
	rec := recorder(deps.Metrics)
	return &Publisher{
		agents: deps.Agents,
		sender: deps.Queues,
		dead:   &deadLetters{store: deps.DeadLetters, stage: metrics.StagePublisher, watch: watch, rec: rec, log: log},
		watch:  watch,
		rec:    rec,
		log:    log,
	}
}

// Stuck returns the calls the publisher has been retrying for longer than
// StuckAfter.
func (p *Publisher) Stuck() []Stuck { return p.watch.Stuck() }

// pendingEvent is an event to deliver and where the stream record of its
// item was.
type pendingEvent struct {
	event store.SubscriberEvent
	seq   string
}

// Handle delivers every event of the new items of one stream-shard batch
// (or sets it aside) and returns nil; it returns an error only when ctx
// is cancelled first, and then nothing may be checkpointed (kcl.Handler).
// An item is a one-event item or a packed run of one producer's events;
// both come in one stream during a rolling update.
func (p *Publisher) Handle(ctx context.Context, shardID string, records []types.Record) error {
	lanes := map[[2]string][]pendingEvent{} // {subscriber, producer} -> its events, in stream order
	var order [][2]string
	for _, r := range records {
		seq := aws.ToString(r.SequenceNumber)
		ch, err := kcl.DecodeChange(r.Data)
		if err != nil {
			if err := p.dead.put(ctx, shardID, seq, "", r.Data, metrics.ReasonUnparsable, "stream record: "+err.Error()+reasonCannotRedrive); err != nil {
				return err
			}
			continue
		}
		if ch.EventName != "INSERT" { // TTL expiry (REMOVE) and the like
			continue
		}
		events, err := store.DecodeEventImage(ch.NewImage)
		if err != nil {
			if err := p.dead.put(ctx, shardID, seq, "", r.Data, metrics.ReasonUnparsable, "stream image: "+err.Error()+reasonCannotRedrive); err != nil {
				return err
			}
			continue
		}
		for _, e := range events {
			lane := [2]string{e.SubscriberID, e.AgentID}
			if _, ok := lanes[lane]; !ok {
				order = append(order, lane)
			}
			lanes[lane] = append(lanes[lane], pendingEvent{event: e, seq: seq})
		}
	}
	// A lane is one subscriber's events of one producer: one message
	// group of one queue, the unit of FIFO order. Lanes go concurrently
	// (a subscriber's producers too), each strictly in order. That never
	// costs a producer a call: its events fill batches of their own,
	// ceil(n/10) calls for n small events where batches shared with other
	// producers could only need as many or more. A subscriber of several
	// producers may pay one partly filled batch per producer instead of
	// one overall, sent at the same time rather than after one another.
	return forEachLimit(ctx, order, sendConcurrency, func(ctx context.Context, lane [2]string) error {
		return p.deliver(ctx, shardID, lane[0], lanes[lane])
	})
}

// deliver sends one lane's events in order, a batch at a time: the next
// batch goes only when every entry of the previous one is in the queue or
// set aside.
func (p *Publisher) deliver(ctx context.Context, shardID, sub string, events []pendingEvent) error {
	log := p.log.With(zap.String("subscriber_id", sub), zap.String("shard_id", shardID))
	for len(events) > 0 {
		msgs := make([]store.QueueMessage, 0, maxBatchEntries)
		size := 0
		for len(msgs) < len(events) && len(msgs) < maxBatchEntries {
			m := newMessage(events[len(msgs)].event, len(msgs))
			if len(msgs) > 0 && size+len(m.Body) > maxBatchBytes {
				break
			}
			size += len(m.Body)
			msgs = append(msgs, m)
		}
		if err := p.send(ctx, log, shardID, sub, events[:len(msgs)], msgs); err != nil {
			return err
		}
		events = events[len(msgs):]
	}
	return nil
}

// send delivers one batch, in order. It retries what fails because SQS
// (or the way to it) fails, for as long as it takes; sets aside at once
// what SQS refuses as invalid or cannot place (no agent, no queue); and
// sets aside an entry, or finds it by sending the batch one message at a
// time, once it has failed maxEntryAttempts times for a reason of its own.
func (p *Publisher) send(ctx context.Context, log *zap.Logger, shardID, sub string, events []pendingEvent, msgs []store.QueueMessage) error {
	byID := map[string]pendingEvent{}
	for i, m := range msgs {
		byID[m.ID] = events[i]
	}
	c := p.watch.track(shardID, "send messages to subscriber "+sub+" from event "+events[0].event.EventID,
		zap.String("subscriber_id", sub), zap.String("event_id", events[0].event.EventID), zap.String("seq", events[0].seq), zap.Int("messages", len(msgs)))
	defer c.done()
	own := 0                     // failures of the whole call that were not the service's
	ownEntry := map[string]int{} // likewise per entry
	for attempt := 0; len(msgs) > 0; attempt++ {
		agent, err := p.agents.Agent(ctx, sub)
		if errors.Is(err, store.ErrNotFound) {
			return p.setAside(ctx, shardID, msgs, byID, metrics.ReasonUnknownAgent, fmt.Sprintf("subscriber agent %s does not exist; nothing to redrive to: delete this letter", sub))
		}
		var failed []store.BatchFailure
		if err == nil {
			failed, err = p.sender.SendMessages(ctx, agent.QueueURL, msgs)
		}
		switch {
		case errors.Is(err, store.ErrQueueMissing):
			// The queue was deleted under the agent: its events wait in
			// the dead letters; nobody else's are held up.
			return p.setAside(ctx, shardID, msgs, byID, metrics.ReasonQueueMissing, fmt.Sprintf("queue %s does not exist: recreate it (a FIFO queue of that name, with the agent's policy), then redrive this letter (POST /deadletters/{id}/redrive)", agent.QueueURL))
		case errors.Is(err, store.ErrBatchTooLong) && len(msgs) > 1:
			// The queue takes less than maxBatchBytes (an endpoint or
			// queue with the older 256 KiB limit): halves, in order.
			c.done()
			half := len(msgs) / 2
			for _, part := range [][]store.QueueMessage{msgs[:half], msgs[half:]} {
				pending := make([]pendingEvent, len(part))
				for i, m := range part {
					pending[i] = byID[m.ID]
				}
				if err := p.send(ctx, log, shardID, sub, pending, part); err != nil {
					return err
				}
			}
			return nil
		case errors.Is(err, store.ErrRejected):
			// SQS refused the call as invalid: resending cannot help.
			return p.setAside(ctx, shardID, msgs, byID, metrics.ReasonRejected, "SQS refused the batch: "+err.Error()+reasonRedrive)
		case err != nil && !store.ServiceFault(err):
			if own++; own >= maxEntryAttempts {
				if len(msgs) == 1 {
					return p.setAside(ctx, shardID, msgs, byID, metrics.ReasonGaveUp, fmt.Sprintf("sending failed %d times: %v", own, err)+reasonRedrive)
				}
				// One entry may be at fault: send them one at a time, in
				// order, each with attempts of its own.
				c.done()
				for _, m := range msgs {
					if err := p.send(ctx, log, shardID, sub, []pendingEvent{byID[m.ID]}, []store.QueueMessage{m}); err != nil {
						return err
					}
				}
				return nil
			}
			fallthrough
		case err != nil:
			// Whole call failed: resend all of it; deduplication ids make
			// the entries SQS did take harmless.
			if err := c.failed(ctx, attempt, err); err != nil {
				return err
			}
			continue
		}
		failedIDs := map[string]store.BatchFailure{}
		for _, f := range failed {
			failedIDs[f.ID] = f
		}
		p.delivered(msgs, byID, failedIDs)
		if len(failed) == 0 {
			return nil
		}
		var again, invalid, gaveUpOn []store.QueueMessage
		warnOrderHazard(log, msgs, failedIDs)
		for _, m := range msgs {
			f, ok := failedIDs[m.ID]
			switch {
			case !ok:
			case store.ServiceFaultCode(f.Code):
				// Throttling, KMS or SQS failing: retried, whatever
				// SenderFault says.
				again = append(again, m)
			case f.SenderFault:
				invalid = append(invalid, m)
			default:
				if ownEntry[m.ID]++; ownEntry[m.ID] >= maxEntryAttempts {
					gaveUpOn = append(gaveUpOn, m)
					continue
				}
				again = append(again, m)
			}
		}
		for _, aside := range []struct {
			class string
			msgs  []store.QueueMessage
		}{{metrics.ReasonRejected, invalid}, {metrics.ReasonGaveUp, gaveUpOn}} {
			if len(aside.msgs) == 0 {
				continue
			}
			f := failedIDs[aside.msgs[0].ID]
			if err := p.setAside(ctx, shardID, aside.msgs, byID, aside.class, "SQS refused the message: "+f.Code+": "+f.Message+reasonRedrive); err != nil {
				return err
			}
		}
		msgs = again
		if len(msgs) > 0 {
			if err := c.failed(ctx, attempt, fmt.Errorf("%d entries failed: %s: %s", len(msgs), failedIDs[msgs[0].ID].Code, failedIDs[msgs[0].ID].Message)); err != nil {
				return err
			}
		}
	}
	return nil
}

// warnOrderHazard logs when SQS failed an entry but accepted a later entry
// of the same group in one batch: resending the failed one puts it behind
// that later message. SQS is not documented to do this for FIFO queues; if
// it ever does, operators see it here.
func warnOrderHazard(log *zap.Logger, msgs []store.QueueMessage, failed map[string]store.BatchFailure) {
	failedGroup := map[string]bool{}
	for _, m := range msgs {
		if _, ok := failed[m.ID]; ok {
			failedGroup[m.GroupID] = true
		} else if failedGroup[m.GroupID] {
			log.Warn("order hazard: SQS accepted a message after failing an earlier one of its group", zap.String("producer_id", m.GroupID))
			return
		}
	}
}

// delivered counts the messages of msgs SQS accepted (those not in
// failed), timing each from its event's arrival in Kinesis.
func (p *Publisher) delivered(msgs []store.QueueMessage, byID map[string]pendingEvent, failed map[string]store.BatchFailure) {
	now := time.Now()
	for _, m := range msgs {
		if _, ok := failed[m.ID]; !ok {
			p.rec.Delivered(byID[m.ID].event.Arrived, now)
		}
	}
}

// setAside dead-letters the events behind msgs with reason, of reason
// class class.
func (p *Publisher) setAside(ctx context.Context, shardID string, msgs []store.QueueMessage, byID map[string]pendingEvent, class, reason string) error {
	for _, m := range msgs {
		pe := byID[m.ID]
		if err := p.dead.putEvent(ctx, pe.event, shardID, pe.seq, []byte(m.Body), class, reason); err != nil {
			return err
		}
	}
	return nil
}

// newMessage builds the SQS message for e; i is its entry id in the batch.
func newMessage(e store.SubscriberEvent, i int) store.QueueMessage {
	body, _ := json.Marshal(event.NewMessage(e.Event, e.SubscriberID)) // cannot fail: Data is valid JSON from the store
	return store.QueueMessage{
		ID:      strconv.Itoa(i),
		GroupID: e.AgentID,
		DedupID: event.DeduplicationID(e.AgentID, e.EventID),
		Body:    string(body),
	}
}
