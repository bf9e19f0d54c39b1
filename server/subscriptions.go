package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// subscriptionsJSON is the answer of GET /agents/{listenerId}/subscriptions.
type subscriptionsJSON struct {
	ListenerID    string             `json:"listenerId"`
	Subscriptions []subscriptionJSON `json:"subscriptions"` // never null
}

type subscriptionJSON struct {
	ProducerID string `json:"producerId"`
	CreatedAt  string `json:"createdAt"`
}

// subscribe serves PUT /agents/{listenerId}/subscriptions/{producerId}:
// 204 once the listener follows the producer (also when it already did),
// 404 naming whichever agent does not exist, 403 unless the caller is the
// listener or an admin, and 403 naming the producer's subscribers-policy
// when that does not allow the listener (for admins too: the policy is
// the producer's word on who reads its events). An agent may subscribe to
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
	producer, err := h.lookupAgent(r.Context(), "producer", producerID)
	if err == nil {
		err = h.checkPolicy(r.Context(), producer, listener)
	}
	if err == nil {
		err = h.subs.Subscribe(r.Context(), producerID, listenerID)
	}
	if err == nil {
		// A policy narrowed while this ran may have listed the subscribers
		// before this one was written: read it again, and undo.
		if err = h.checkPolicy(r.Context(), producer, listener); err != nil {
			if uerr := h.subs.Unsubscribe(context.WithoutCancel(r.Context()), producerID, listenerID); uerr != nil {
				err = fmt.Errorf("undo subscription of %s to %s that the policy no longer allows: %w", listenerID, producerID, uerr)
			}
		}
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
		out.Subscriptions = append(out.Subscriptions, subscriptionJSON{ProducerID: s.ProducerID, CreatedAt: formatTime(s.CreatedAt)})
	}
	writeJSON(w, http.StatusOK, out)
}
