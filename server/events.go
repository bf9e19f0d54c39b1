package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// Limits of POST /events. They are Kinesis PutRecords limits, so a request
// the API accepts is one the stream can take.
const (
	// maxEventsBodyBytes is the PutRecords request size limit (5 MiB).
	maxEventsBodyBytes = 5 << 20
	// maxBatchEvents is the PutRecords record count limit.
	maxBatchEvents = 500
	// producerLookups is how many producer agents one request looks up at
	// once: enough to check a 500-event batch from many producers quickly,
	// few enough not to burst the Agents table.
	producerLookups = 8
)

// eventIn is an event as posted. Pointers tell a missing field from an
// empty one; for the optional timestamp and eventId, null means missing.
type eventIn struct {
	EventID   *string         `json:"eventId"`
	AgentID   *string         `json:"agentId"`
	Timestamp *string         `json:"timestamp"`
	EventType *string         `json:"eventType"`
	Data      json.RawMessage `json:"data"`
}

// eventsAccepted is the 202 answer of POST /events: one receipt per event
// in input order, an array even when one object was posted.
type eventsAccepted struct {
	Events []event.Receipt `json:"events"`
}

// postEvents serves POST /events. The body is one event object or an array
// of 1 to 500. All or nothing: any invalid event (400), unknown producer
// (404) or oversized event (413) rejects the request and nothing is
// published. Absent timestamps are filled in with the time of receipt,
// absent eventIds with a random UUID; timestamps are normalised to UTC
// milliseconds. 202 only once every event is durably in Kinesis; 503 (with
// Retry-After) when Kinesis cannot take them. A producer that retries after
// a 503 or a lost answer should set eventIds itself: the first attempt may
// have landed, and only a repeated eventId lets delivery drop the copy.
func (h *api) postEvents(w http.ResponseWriter, r *http.Request) {
	n, status := h.acceptEvents(w, r)
	h.cfg.Metrics.EventsPosted(postOutcome(status), n)
}

// postOutcome is the metrics outcome of a POST /events answered status.
func postOutcome(status int) string {
	switch {
	case status == http.StatusAccepted:
		return metrics.OutcomeAccepted
	case status == http.StatusNotFound:
		return metrics.OutcomeUnknownProducer
	case status == http.StatusRequestEntityTooLarge:
		return metrics.OutcomeTooLarge
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return metrics.OutcomeForbidden
	case status >= 500:
		return metrics.OutcomeUnavailable
	}
	return metrics.OutcomeInvalid
}

// countEvents is how many events a rejected body holds: the length of an
// array, else one.
func countEvents(body []byte) int {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err == nil && len(raws) > 0 {
		return len(raws)
	}
	return 1
}

// acceptEvents answers POST /events and returns how many events the
// request held and the status it answered.
func (h *api) acceptEvents(w http.ResponseWriter, r *http.Request) (int, int) {
	body, err := readBody(w, r, maxEventsBodyBytes)
	if err != nil {
		return 1, h.writeError(w, r, err)
	}
	events, err := parseEvents(body, time.Now())
	if err != nil {
		return countEvents(body), h.writeError(w, r, err)
	}
	if err := h.checkProducers(r.Context(), events); err != nil {
		return len(events), h.writeError(w, r, err)
	}

	// Once publishing starts, a client hanging up must not cut it short: a
	// half-published batch is worse than a finished one. The request
	// deadline still applies.
	ctx := context.WithoutCancel(r.Context())
	if dl, ok := r.Context().Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	receipts, err := h.pub.Publish(ctx, events)
	if err == nil && len(receipts) != len(events) {
		err = fmt.Errorf("publisher returned %d receipts for %d events", len(receipts), len(events))
	}
	if err != nil {
		return len(events), h.writeError(w, r, fmt.Errorf("publish %d events: %w", len(events), err), publishFields(events)...)
	}
	out := eventsAccepted{Events: make([]event.Receipt, len(events))}
	for i, rc := range receipts {
		out.Events[i] = event.Receipt{EventID: events[i].EventID, ShardID: rc.ShardID, SequenceNumber: rc.SequenceNumber}
	}
	writeJSON(w, http.StatusAccepted, out)
	return len(events), http.StatusAccepted
}

// parseEvents decodes and validates the body of POST /events, filling in
// defaults (now for absent timestamps). The error is a 400 or 413 naming
// the first bad event by its index.
func parseEvents(body []byte, now time.Time) ([]event.Event, error) {
	var raws []json.RawMessage
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil, badRequest("request body is empty; send a JSON event object or an array of 1 to %d of them", maxBatchEvents)
	case trimmed[0] == '[':
		if err := decodeStrict(body, &raws); err != nil {
			return nil, err
		}
	case trimmed[0] == '{':
		raws = []json.RawMessage{trimmed}
	default:
		return nil, badRequest("request body must be a JSON event object or an array of 1 to %d of them", maxBatchEvents)
	}
	switch {
	case len(raws) == 0:
		return nil, badRequest("request body is an empty array; send 1 to %d events", maxBatchEvents)
	case len(raws) > maxBatchEvents:
		return nil, badRequest("request body holds %d events; send at most %d per request (the Kinesis PutRecords limit)", len(raws), maxBatchEvents)
	}

	events := make([]event.Event, len(raws))
	firstWithID := make(map[string]int, len(raws))
	for i, raw := range raws {
		ev, err := parseEvent(raw, now)
		if err != nil {
			return nil, prefixError(fmt.Sprintf("event %d: ", i), err)
		}
		if j, dup := firstWithID[ev.EventID]; dup {
			return nil, badRequest("event %d: eventId %q is also the eventId of event %d; each event needs its own", i, ev.EventID, j)
		}
		firstWithID[ev.EventID] = i
		events[i] = ev
	}
	return events, nil
}

// parseEvent decodes one event and validates it with the rules every event
// follows, posted or put straight into Kinesis (event.Event.Normalize).
func parseEvent(raw json.RawMessage, now time.Time) (event.Event, error) {
	if trimmed := bytes.TrimLeft(raw, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return event.Event{}, badRequest("must be a JSON object")
	}
	var in eventIn
	if err := decodeStrict(raw, &in); err != nil {
		return event.Event{}, err
	}
	// Only the API can tell a missing field from an empty one.
	if len(in.Data) == 0 {
		return event.Event{}, badRequest("data is required: any JSON value (null is allowed)")
	}
	if in.EventID != nil && *in.EventID == "" {
		return event.Event{}, badRequest("eventId must be 1 to %d characters of A-Z a-z 0-9 . _ : -", event.MaxIDLen)
	}
	if in.Timestamp != nil && *in.Timestamp == "" {
		return event.Event{}, badRequest("timestamp must be RFC 3339, e.g. 2025-07-01T12:00:00.000Z")
	}
	ev := event.Event{
		AgentID:   deref(in.AgentID),
		EventType: deref(in.EventType),
		Timestamp: deref(in.Timestamp),
		EventID:   deref(in.EventID),
		Data:      in.Data,
	}
	if err := ev.Normalize(now); err != nil {
		if errors.Is(err, event.ErrTooLarge) {
			return event.Event{}, &apiError{status: http.StatusRequestEntityTooLarge, msg: "too large: " + err.Error()}
		}
		return event.Event{}, badRequest("%s", err.Error())
	}
	if ev.EventID == "" {
		ev.EventID, ev.GeneratedID = uuid.NewString(), true
	}
	return ev, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkProducers looks up every distinct producer of events (a few at a
// time). It returns a 404 naming the first event whose producer does not
// exist, else the first lookup failure, else a 403 naming the first event
// whose producer the caller may not act for, else nil.
func (h *api) checkProducers(ctx context.Context, events []event.Event) error {
	firstEvent := map[string]int{}
	var ids []string
	for i, ev := range events {
		if _, ok := firstEvent[ev.AgentID]; !ok {
			firstEvent[ev.AgentID] = i
			ids = append(ids, ev.AgentID)
		}
	}
	errs := make([]error, len(ids))
	agents := make([]store.Agent, len(ids))
	sem := make(chan struct{}, producerLookups)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			agents[i], errs[i] = h.lookupAgent(ctx, "producer", id)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, store.ErrNotFound) {
			return prefixError(fmt.Sprintf("event %d: ", firstEvent[ids[i]]), err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, a := range agents {
		if err := mayActFor(ctx, a, "publish its events"); err != nil {
			return prefixError(fmt.Sprintf("event %d: nothing was published: ", firstEvent[ids[i]]), err)
		}
	}
	return nil
}

// prefixError puts prefix before the message of an *apiError; other errors
// are returned as they are.
func prefixError(prefix string, err error) error {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return &apiError{status: ae.status, msg: prefix + ae.msg, cause: ae.cause}
	}
	return err
}

// publishFields names the producers of a failed publish in the log.
func publishFields(events []event.Event) []zap.Field {
	fields := []zap.Field{zap.Int("events", len(events))}
	if all := events[0].AgentID; allSame(events, all) {
		fields = append(fields, zap.String("producer_id", all))
	}
	return fields
}

func allSame(events []event.Event, agentID string) bool {
	for _, ev := range events {
		if ev.AgentID != agentID {
			return false
		}
	}
	return true
}
