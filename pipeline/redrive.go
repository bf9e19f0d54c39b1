package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// letterStore is satisfied by *store.Store.
type letterStore interface {
	DeadLetter(ctx context.Context, id string) (store.DeadLetter, error)
	MarkRedriven(ctx context.Context, id string, at time.Time) error
}

// eventPublisher is satisfied by *Ingest.
type eventPublisher interface {
	Publish(ctx context.Context, events []event.Event) ([]event.Receipt, error)
}

// Redriver re-injects dead letters into the stage they came from. It is
// safe for concurrent use.
type Redriver struct {
	letters letterStore
	agents  agentGetter
	queues  messageSender
	ingest  eventPublisher
	now     func() time.Time
}

// RedriverDeps is what a Redriver reads and writes. *store.Store serves
// every field but Ingest (*Ingest).
type RedriverDeps struct {
	DeadLetters letterStore
	Agents      agentGetter
	Queues      messageSender
	Ingest      eventPublisher
}

// NewRedriver returns a Redriver over deps.
func NewRedriver(deps RedriverDeps) *Redriver {
	return &Redriver{letters: deps.DeadLetters, agents: deps.Agents, queues: deps.Queues, ingest: deps.Ingest, now: time.Now}
}

// Redrive re-injects the dead letter id into its stage and marks it
// redriven; a letter already redriven is returned as it is, nothing sent.
//
//   - publisher: the message goes to the subscriber's queue, behind what
//     the queue holds, with the event's own MessageDeduplicationId, so a
//     redrive SQS saw within 5 minutes is dropped;
//   - aggregator (a record): the record's events go back into Kinesis with
//     their eventIds made explicit (those fanout derived from the record's
//     position included), so the aggregator delivers each once to every
//     subscriber: a second copy is a repeated eventId, dropped.
//
// The error wraps store.ErrNotFound, store.ErrCannotRedrive (saying why) or
// store.ErrNotYet (the queue is still missing); anything else is a failure to
// retry.
func (r *Redriver) Redrive(ctx context.Context, id string) (store.DeadLetter, error) {
	d, err := r.letters.DeadLetter(ctx, id)
	if err != nil || !d.RedrivenAt.IsZero() {
		return d, err
	}
	if d.Truncated {
		return d, fmt.Errorf("%w: only the first %d of its %d bytes were kept; delete it", store.ErrCannotRedrive, len(d.Data), d.DataBytes)
	}
	switch {
	case d.Stage == "publisher" && d.SubscriberID != "":
		err = r.resend(ctx, d)
	case d.Stage == "aggregator" && d.SubscriberID == "":
		err = r.republish(ctx, d)
	default:
		err = fmt.Errorf("%w: it was refused as invalid (%s); delete it", store.ErrCannotRedrive, d.Reason)
	}
	if err != nil {
		return d, err
	}
	d.RedrivenAt = r.now().UTC().Truncate(time.Millisecond)
	if err := r.letters.MarkRedriven(ctx, id, d.RedrivenAt); err != nil {
		return d, fmt.Errorf("redrive dead letter %s: sent, but not marked: %w", id, err)
	}
	return d, nil
}

// resend sends a publisher letter's message to its subscriber's queue.
func (r *Redriver) resend(ctx context.Context, d store.DeadLetter) error {
	var m event.Message
	if err := json.Unmarshal(d.Data, &m); err != nil || m.AgentID == "" || m.EventID == "" {
		return fmt.Errorf("%w: it holds no message (%s); delete it", store.ErrCannotRedrive, d.Reason)
	}
	agent, err := r.agents.Agent(ctx, d.SubscriberID)
	if err != nil {
		return fmt.Errorf("redrive dead letter %s: subscriber %s: %w", d.ID, d.SubscriberID, err)
	}
	failed, err := r.queues.SendMessages(ctx, agent.QueueURL, []store.QueueMessage{{
		ID: "0", GroupID: m.AgentID, DedupID: event.DeduplicationID(m.AgentID, m.EventID), Body: string(d.Data),
	}})
	switch {
	case errors.Is(err, store.ErrQueueMissing):
		return fmt.Errorf("%w: queue %s of subscriber %s still does not exist; recreate it, then redrive", store.ErrNotYet, agent.QueueURL, d.SubscriberID)
	case errors.Is(err, store.ErrRejected):
		return fmt.Errorf("%w: SQS refused the message: %v; delete it", store.ErrCannotRedrive, err)
	case err != nil:
		return fmt.Errorf("redrive dead letter %s: %w", d.ID, err)
	case len(failed) > 0:
		return fmt.Errorf("redrive dead letter %s: SQS failed the message: %s: %s", d.ID, failed[0].Code, failed[0].Message)
	}
	return nil
}

// republish puts an aggregator letter's record back into the stream.
func (r *Redriver) republish(ctx context.Context, d store.DeadLetter) error {
	events, err := event.ParseRecord(d.Data, d.ProducerID, d.ShardID, d.Seq, d.At)
	if err != nil {
		return fmt.Errorf("%w: the record is still not valid: %v; delete it", store.ErrCannotRedrive, err)
	}
	for i := range events {
		events[i].GeneratedID = false // claimed from now on: a second redrive is a repeat
	}
	if _, err := r.ingest.Publish(ctx, events); err != nil {
		return fmt.Errorf("redrive dead letter %s: %w", d.ID, err)
	}
	return nil
}
