package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// replays records and reads replays; each task's pipeline.Replayer runs
// them. *store.Store satisfies it.
type replays interface {
	CreateReplay(ctx context.Context, r store.Replay) error
	Replay(ctx context.Context, subscriber, id string) (store.Replay, error)
	CancelReplay(ctx context.Context, subscriber, id string, at time.Time) (store.Replay, error)
}

// replayRequestJSON is the body of POST /agents/{listenerId}/replays.
type replayRequestJSON struct {
	From       string `json:"from"`
	To         string `json:"to"`
	ProducerID string `json:"producerId"`
}

// maxReplayBody bounds that body: two timestamps and an agent id.
const maxReplayBody = 4 << 10

// replayJSON is a replay as the API shows it.
type replayJSON struct {
	ReplayID   string             `json:"replayId"`
	ListenerID string             `json:"listenerId"`
	State      string             `json:"state"`
	From       string             `json:"from"`
	To         string             `json:"to"`
	ProducerID string             `json:"producerId,omitempty"`
	CreatedAt  string             `json:"createdAt"`
	UpdatedAt  string             `json:"updatedAt"`
	Progress   replayProgressJSON `json:"progress"`
	Errors     []string           `json:"errors"` // never null
	ErrorCount int                `json:"errorCount"`
}

type replayProgressJSON struct {
	// Sent of Found: events re-delivered of those read so far.
	Sent          int    `json:"sent"`
	Found         int    `json:"found"`
	LastTimestamp string `json:"lastTimestamp,omitempty"`
}

func newReplayJSON(r store.Replay) replayJSON {
	out := replayJSON{ReplayID: r.ID, ListenerID: r.SubscriberID, State: r.State, From: formatTime(r.From), To: formatTime(r.To),
		ProducerID: r.ProducerID, CreatedAt: formatTime(r.CreatedAt), UpdatedAt: formatTime(r.UpdatedAt),
		Progress: replayProgressJSON{Sent: r.Sent, Found: r.Found, LastTimestamp: r.LastTimestamp},
		Errors:   append([]string{}, r.Errors...), ErrorCount: r.ErrorCount}
	return out
}

// parseReplayWindow checks a replay request against now: from is
// required, within the log's retention; to defaults to now, is after from
// and not in the future. Errors are 400s saying what to send.
func parseReplayWindow(in replayRequestJSON, now time.Time) (from, to time.Time, err error) {
	parse := func(name, v string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, badRequest("%s=%q is not an RFC 3339 time; send e.g. %q", name, v, now.Add(-time.Hour).UTC().Format(event.TimeLayout))
		}
		return t.UTC().Truncate(time.Millisecond), nil
	}
	if strings.TrimSpace(in.From) == "" {
		return from, to, badRequest("from is required: the RFC 3339 time the replay starts at, e.g. %q", now.Add(-time.Hour).UTC().Format(event.TimeLayout))
	}
	if from, err = parse("from", in.From); err != nil {
		return from, to, err
	}
	to = now.UTC().Truncate(time.Millisecond)
	if in.To != "" {
		if to, err = parse("to", in.To); err != nil {
			return from, to, err
		}
		if to.After(now) {
			return from, to, badRequest("to=%s is in the future; leave it out to replay up to now (later events are delivered live)", in.To)
		}
	}
	oldest := now.Add(-store.EventRetention)
	switch {
	case from.After(now):
		return from, to, badRequest("from=%s is in the future; a replay re-delivers events already published", in.From)
	case !from.Before(to):
		return from, to, badRequest("from=%s is not before to=%s; the window is from (included) to to (excluded)", formatTime(from), formatTime(to))
	case from.Before(oldest):
		return from, to, badRequest("from=%s is older than the log's retention: events are kept %s (7 days), so from must be after %s",
			in.From, store.EventRetention, oldest.UTC().Format(event.TimeLayout))
	}
	return from, to, nil
}

// postReplay serves POST /agents/{listenerId}/replays: 202 with the
// replay (state running) once it is recorded; a task's replayer then
// re-delivers the window. 400 for a bad window or producer, 404 for an
// unknown listener, 403 unless the listener itself or an admin.
func (h *api) postReplay(w http.ResponseWriter, r *http.Request) {
	listenerID := chi.URLParam(r, "listenerId")
	fields := []zap.Field{zap.String("agent_id", listenerID)}
	if _, err := h.listener(r.Context(), listenerID, "replay its events"); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	body, err := readBody(w, r, maxReplayBody)
	if err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	var in replayRequestJSON
	if err := decodeStrict(body, &in); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	now := time.Now()
	from, to, err := parseReplayWindow(in, now)
	if err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	if in.ProducerID != "" {
		if _, err := h.agents.Agent(r.Context(), in.ProducerID); errors.Is(err, store.ErrNotFound) || len(in.ProducerID) > event.MaxAgentIDLen {
			h.writeError(w, r, badRequest("producerId %q is not a registered agent; leave it out to replay every producer", in.ProducerID), fields...)
			return
		} else if err != nil {
			h.writeError(w, r, fmt.Errorf("look up producer %s: %w", in.ProducerID, err), fields...)
			return
		}
	}
	rep := store.Replay{SubscriberID: listenerID, ID: uuid.NewString(), From: from, To: to, ProducerID: in.ProducerID,
		CreatedAt: now.UTC().Truncate(time.Millisecond)}
	if err := h.replays.CreateReplay(r.Context(), rep); err != nil {
		h.writeError(w, r, fmt.Errorf("create replay of %s: %w", listenerID, err), fields...)
		return
	}
	rep.State, rep.UpdatedAt = store.ReplayRunning, rep.CreatedAt
	writeJSON(w, http.StatusAccepted, newReplayJSON(rep))
}

// getReplay serves GET /agents/{listenerId}/replays/{replayId}: its state,
// progress and errors.
func (h *api) getReplay(w http.ResponseWriter, r *http.Request) {
	h.replayAction(w, r, "read its replays", func(ctx context.Context, listenerID, id string) (store.Replay, error) {
		return h.replays.Replay(ctx, listenerID, id)
	})
}

// cancelReplay serves DELETE /agents/{listenerId}/replays/{replayId}: 200
// with the replay, cancelled unless it had ended already (so a second
// DELETE changes nothing). The batch in flight, at most 10 messages, may
// still arrive.
func (h *api) cancelReplay(w http.ResponseWriter, r *http.Request) {
	h.replayAction(w, r, "cancel its replays", func(ctx context.Context, listenerID, id string) (store.Replay, error) {
		return h.replays.CancelReplay(ctx, listenerID, id, time.Now())
	})
}

// replayAction authorizes a request on one replay, does it and answers
// with the replay, or 404 when the listener has no such replay.
func (h *api) replayAction(w http.ResponseWriter, r *http.Request, what string, do func(ctx context.Context, listenerID, id string) (store.Replay, error)) {
	listenerID, id := chi.URLParam(r, "listenerId"), chi.URLParam(r, "replayId")
	fields := []zap.Field{zap.String("agent_id", listenerID), zap.String("replay_id", id)}
	if _, err := h.listener(r.Context(), listenerID, what); err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	rep, err := do(r.Context(), listenerID, id)
	if errors.Is(err, store.ErrNotFound) {
		h.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("listener %s has no replay %q; start one with POST /agents/%s/replays", listenerID, id, listenerID), cause: err}, fields...)
		return
	}
	if err != nil {
		h.writeError(w, r, fmt.Errorf("replay %s of %s: %w", id, listenerID, err), fields...)
		return
	}
	writeJSON(w, http.StatusOK, newReplayJSON(rep))
}
