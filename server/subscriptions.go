package server

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
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
// 404 naming whichever agent does not exist. An agent may subscribe to
// itself: it then receives its own events, which the original system
// allowed and which creates no loop (delivery never publishes).
func (h *api) subscribe(w http.ResponseWriter, r *http.Request) {
	listenerID, producerID := chi.URLParam(r, "listenerId"), chi.URLParam(r, "producerId")
	fields := []zap.Field{zap.String("agent_id", listenerID), zap.String("producer_id", producerID)}
	if _, err := h.lookupAgent(r.Context(), "listener", listenerID); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	if _, err := h.lookupAgent(r.Context(), "producer", producerID); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	if err := h.subs.Subscribe(r.Context(), producerID, listenerID); err != nil {
		h.writeError(w, r, fmt.Errorf("subscribe %s to %s: %w", listenerID, producerID, err), fields...)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// unsubscribe serves DELETE /agents/{listenerId}/subscriptions/{producerId}:
// 204 once the listener no longer follows the producer (also when it never
// did, or the producer is gone), 404 when the listener does not exist.
func (h *api) unsubscribe(w http.ResponseWriter, r *http.Request) {
	listenerID, producerID := chi.URLParam(r, "listenerId"), chi.URLParam(r, "producerId")
	fields := []zap.Field{zap.String("agent_id", listenerID), zap.String("producer_id", producerID)}
	if _, err := h.lookupAgent(r.Context(), "listener", listenerID); err != nil {
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
	if _, err := h.lookupAgent(r.Context(), "listener", listenerID); err != nil {
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
