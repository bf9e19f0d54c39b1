package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/store"
)

// deadLetters reads and discards dead letters. *store.Store satisfies it.
type deadLetters interface {
	ListDeadLetters(ctx context.Context, q store.DeadLetterQuery) ([]store.DeadLetter, string, error)
	DeadLetter(ctx context.Context, id string) (store.DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, id string) error
}

// redriver re-injects a dead letter. *pipeline.Redriver satisfies it: the
// error wraps store.ErrCannotRedrive or store.ErrNotYet when the
// caller must act first.
type redriver interface {
	Redrive(ctx context.Context, id string) (store.DeadLetter, error)
}

// deadLetterJSON is one dead letter as the API shows it.
type deadLetterJSON struct {
	ID           string `json:"id"`
	Stage        string `json:"stage"`
	ProducerID   string `json:"producerId,omitempty"`
	SubscriberID string `json:"subscriberId,omitempty"`
	Reason       string `json:"reason"`
	ShardID      string `json:"shardId"`
	Seq          string `json:"sequenceNumber"`
	CreatedAt    string `json:"createdAt"`
	RedrivenAt   string `json:"redrivenAt,omitempty"`
	DataBytes    int    `json:"dataBytes"`
	Truncated    bool   `json:"truncated"`
	// Data is the record or message as it was, as text (it may not be
	// JSON: an unparsable record is kept byte for byte).
	Data *string `json:"data,omitempty"`
}

func newDeadLetterJSON(d store.DeadLetter, withData bool) deadLetterJSON {
	out := deadLetterJSON{ID: d.ID, Stage: d.Stage, ProducerID: d.ProducerID, SubscriberID: d.SubscriberID, Reason: d.Reason,
		ShardID: d.ShardID, Seq: d.Seq, CreatedAt: formatTime(d.At), DataBytes: d.DataBytes, Truncated: d.Truncated}
	if !d.RedrivenAt.IsZero() {
		out.RedrivenAt = formatTime(d.RedrivenAt)
	}
	if withData {
		s := string(d.Data)
		out.Data = &s
	}
	return out
}

// listDeadLetters serves GET /deadletters?stage=&producerId=&subscriberId=&limit=&cursor=:
// newest first, with the next page's cursor. Admins see all; an agent sees
// its own (subscriberId must be its id).
func (h *api) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	q := store.DeadLetterQuery{Stage: qs.Get("stage"), ProducerID: qs.Get("producerId"), SubscriberID: qs.Get("subscriberId"), Cursor: qs.Get("cursor")}
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxDeadLetterPage {
			h.writeError(w, r, badRequest("limit=%q: use a whole number from 1 to %d", v, store.MaxDeadLetterPage))
			return
		}
		q.Limit = n
	}
	if q.Stage != "" && q.Stage != "aggregator" && q.Stage != "publisher" {
		h.writeError(w, r, badRequest("stage=%q: use aggregator or publisher", q.Stage))
		return
	}
	if !callerOf(r.Context()).admin {
		if q.SubscriberID == "" {
			h.writeError(w, r, &apiError{status: http.StatusForbidden, msg: "only admins (FANOUT_ADMINS) list every dead letter; an agent lists its own with ?subscriberId=<its agentId>"})
			return
		}
		if _, err := h.listener(r.Context(), q.SubscriberID, "read its dead letters"); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	page, next, err := h.dead.ListDeadLetters(r.Context(), q)
	if errors.Is(err, store.ErrBadCursor) {
		h.writeError(w, r, badRequest("cursor is not one this listing returned; start again without it"))
		return
	}
	if err != nil {
		h.writeError(w, r, fmt.Errorf("list dead letters: %w", err))
		return
	}
	out := struct {
		DeadLetters []deadLetterJSON `json:"deadLetters"`
		Next        string           `json:"next,omitempty"`
	}{DeadLetters: make([]deadLetterJSON, 0, len(page)), Next: next}
	for _, d := range page {
		out.DeadLetters = append(out.DeadLetters, newDeadLetterJSON(d, false))
	}
	writeJSON(w, http.StatusOK, out)
}

// deadLetterID is the {id} of the path, unescaped (ids hold '/': send them
// as %2F).
func deadLetterID(r *http.Request) string {
	id := chi.URLParam(r, "id")
	if u, err := url.PathUnescape(id); err == nil {
		return u
	}
	return id
}

// getDeadLetter serves GET /deadletters/{id}: the letter with its data, to
// admins and to the subscriber it is for.
func (h *api) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	id := deadLetterID(r)
	d, err := h.dead.DeadLetter(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		h.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("dead letter %q not found; list them with GET /deadletters", id), cause: err})
		return
	}
	if err != nil {
		h.writeError(w, r, fmt.Errorf("get dead letter %s: %w", id, err), zap.String("dead_letter_id", id))
		return
	}
	if !callerOf(r.Context()).admin {
		// Not the subscriber's: answered as absent, so ids reveal nothing.
		if d.SubscriberID == "" {
			h.writeError(w, r, &apiError{status: http.StatusForbidden, msg: "only admins (FANOUT_ADMINS) read dead letters that belong to no subscriber"})
			return
		}
		if _, err := h.listener(r.Context(), d.SubscriberID, "read its dead letters"); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, newDeadLetterJSON(d, true))
}

// redriveDeadLetter serves POST /deadletters/{id}/redrive (admins): 200
// with the letter once it is back in its stage (also when it had been
// already: nothing is sent twice), 409 when it cannot be redriven or its
// cause is still there.
func (h *api) redriveDeadLetter(w http.ResponseWriter, r *http.Request) {
	if !callerOf(r.Context()).admin {
		h.writeError(w, r, &apiError{status: http.StatusForbidden, msg: "only admins (FANOUT_ADMINS) redrive dead letters"})
		return
	}
	id := deadLetterID(r)
	d, err := h.redriver.Redrive(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("dead letter %q not found; list them with GET /deadletters", id), cause: err})
	case errors.Is(err, store.ErrCannotRedrive), errors.Is(err, store.ErrNotYet):
		h.writeError(w, r, &apiError{status: http.StatusConflict, msg: fmt.Sprintf("dead letter %s: %v", id, err)})
	case err != nil:
		h.writeError(w, r, fmt.Errorf("redrive dead letter %s: %w", id, err), zap.String("dead_letter_id", id))
	default:
		writeJSON(w, http.StatusOK, newDeadLetterJSON(d, false))
	}
}

// deleteDeadLetter serves DELETE /deadletters/{id} (admins): 204, also
// when it was gone.
func (h *api) deleteDeadLetter(w http.ResponseWriter, r *http.Request) {
	if !callerOf(r.Context()).admin {
		h.writeError(w, r, &apiError{status: http.StatusForbidden, msg: "only admins (FANOUT_ADMINS) delete dead letters"})
		return
	}
	id := deadLetterID(r)
	if err := h.dead.DeleteDeadLetter(r.Context(), id); err != nil {
		h.writeError(w, r, fmt.Errorf("delete dead letter %s: %w", id, err), zap.String("dead_letter_id", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
