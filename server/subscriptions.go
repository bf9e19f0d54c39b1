package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/filter"
	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/store"
)

// subscriptionsJSON is the answer of GET /agents/{listenerId}/subscriptions.
type subscriptionsJSON struct {
	ListenerID    string             `json:"listenerId"`
	Subscriptions []subscriptionJSON `json:"subscriptions"` // never null
}

type subscriptionJSON struct {
	ProducerID string          `json:"producerId"`
	CreatedAt  string          `json:"createdAt"`
	Filter     json.RawMessage `json:"filter,omitempty"`
}

// subscribeJSON is the optional body of PUT .../subscriptions/{producerId}.
type subscribeJSON struct {
	Filter json.RawMessage `json:"filter"`
}

// maxSubscribeBody bounds the body of a subscribe: a filter and a little.
const maxSubscribeBody = filter.MaxBytes + 1024

// decodeFilter reads the optional body {"filter": {...}} of r: the filter
// as stored (compacted), nil when there is no body or no filter. A filter
// that does not parse is a 400 naming the bad part.
func decodeFilter(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength == 0 {
		return nil, nil
	}
	body, err := readBody(w, r, maxSubscribeBody)
	if ae, ok := errors.AsType[*apiError](err); ok && ae.msg == emptyBodyMsg {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var in subscribeJSON
	if err := decodeStrict(body, &in); err != nil {
		return nil, err
	}
	if len(in.Filter) == 0 || string(in.Filter) == "null" {
		return nil, nil
	}
	p, err := filter.Parse(in.Filter)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	return p.JSON(), nil
}

// subscribe serves PUT /agents/{listenerId}/subscriptions/{producerId}:
// 204 once the listener follows the producer with the body's filter, or
// with none when there is no body (also when it already did), 400 for a
// filter that does not parse, 404 naming whichever agent does not exist,
// 403 unless the caller is the listener or an admin, and 403 naming the
// producer's subscribers-policy when that does not allow the listener (for
// admins too: the policy is the producer's word on who reads its events).
// A repeat with another filter replaces the filter. An agent may subscribe to
// itself: it then receives its own events, which the original system
// allowed and which creates no loop (delivery never publishes).
func (h *api) subscribe(w http.ResponseWriter, r *http.Request) {
	listenerID, producerID := chi.URLParam(r, "listenerId"), chi.URLParam(r, "producerId")
	fields := []zap.Field{zap.String("agent_id", listenerID), zap.String("producer_id", producerID)}
	listener, err := h.listener(r.Context(), listenerID, "manage its subscriptions")
	if err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	f, err := decodeFilter(w, r)
	if err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	producer, err := h.lookupAgent(r.Context(), "producer", producerID)
	if err == nil {
		err = h.endIfRefused(r.Context(), producerID, listenerID, h.checkPolicy(r.Context(), producer, listener))
	}
	if err == nil {
		err = h.subs.Subscribe(r.Context(), producerID, listenerID, f)
	}
	if err == nil {
		// A policy narrowed while this ran may have listed the subscribers
		// before this one was written: read it again, and undo.
		err = h.endIfRefused(r.Context(), producerID, listenerID, h.checkPolicy(r.Context(), producer, listener))
	}
	if err != nil {
		h.writeError(w, r, fmt.Errorf("subscribe %s to %s: %w", listenerID, producerID, err), fields...)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listener looks up agent id as a listener the caller may act for.
func (h *api) listener(ctx context.Context, id, what string) (store.Agent, error) {
	a, err := h.lookupAgent(ctx, "listener", id)
	if err != nil {
		return store.Agent{}, err
	}
	return a, mayActFor(ctx, a, what)
}

// checkPolicy returns nil when producer's subscribers-policy allows
// listener, else the 403 naming it.
func (h *api) checkPolicy(ctx context.Context, producer, listener store.Agent) error {
	p, err := h.readPolicy(ctx, producer)
	if err != nil {
		return err
	}
	if !p.allows(listener.ResourceARN) {
		return notAllowed(producer, listener, p)
	}
	return nil
}

// undoAttempts bounds the tries at ending a subscription the policy
// refuses; each is one conditional UpdateItem.
const undoAttempts = 3

// endIfRefused returns policyErr; when it is the policy refusing the
// listener, it first ends any subscription of the listener to the
// producer (one a narrowing raced with, or one left by an earlier attempt
// whose undo failed), so that a refused subscribe leaves none behind. When
// that fails every attempt, the error says so (503: the caller retries,
// and its retry ends it).
func (h *api) endIfRefused(ctx context.Context, producerID, listenerID string, policyErr error) error {
	if ae, ok := errors.AsType[*apiError](policyErr); !ok || ae.status != http.StatusForbidden {
		return policyErr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.RequestTimeout)
	defer cancel()
	var err error
	for attempt := range undoAttempts {
		if err = h.subs.Unsubscribe(ctx, producerID, listenerID); err == nil {
			return policyErr
		}
		if !backoff.Sleep(ctx, backoff.Delay(attempt)) {
			break
		}
	}
	return fmt.Errorf("end subscription of %s to %s that the policy does not allow: %w", listenerID, producerID, err)
}

// unsubscribe serves DELETE /agents/{listenerId}/subscriptions/{producerId}:
// 204 once the listener no longer follows the producer (also when it never
// did, or the producer is gone), 404 when the listener does not exist.
func (h *api) unsubscribe(w http.ResponseWriter, r *http.Request) {
	listenerID, producerID := chi.URLParam(r, "listenerId"), chi.URLParam(r, "producerId")
	fields := []zap.Field{zap.String("agent_id", listenerID), zap.String("producer_id", producerID)}
	if _, err := h.listener(r.Context(), listenerID, "manage its subscriptions"); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	if len(producerID) > event.MaxAgentIDLen {
		// No such agent can exist, so nothing can follow it: done.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := h.subs.Unsubscribe(r.Context(), producerID, listenerID); err != nil {
		h.writeError(w, r, fmt.Errorf("unsubscribe %s from %s: %w", listenerID, producerID, err), fields...)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listSubscriptions serves GET /agents/{listenerId}/subscriptions: 200 with
// the producers the listener follows (an empty array when none), or 404.
func (h *api) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	listenerID := chi.URLParam(r, "listenerId")
	if _, err := h.listener(r.Context(), listenerID, "list its subscriptions"); err != nil {
		h.writeError(w, r, err, zap.String("agent_id", listenerID))
		return
	}
	subs, err := h.subs.Producers(r.Context(), listenerID)
	if err != nil {
		h.writeError(w, r, fmt.Errorf("list subscriptions of %s: %w", listenerID, err), zap.String("agent_id", listenerID))
		return
	}
	out := subscriptionsJSON{ListenerID: listenerID, Subscriptions: make([]subscriptionJSON, 0, len(subs))}
	for _, s := range subs {
		out.Subscriptions = append(out.Subscriptions, subscriptionJSON{ProducerID: s.ProducerID, CreatedAt: formatTime(s.CreatedAt), Filter: s.Filter})
	}
	writeJSON(w, http.StatusOK, out)
}
