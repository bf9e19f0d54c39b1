package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

const (
	// maxAgentBodyBytes bounds POST /agents bodies: an ARN is at most a few
	// hundred bytes, so anything near this is not a registration.
	maxAgentBodyBytes = 64 << 10
)

// agentJSON is an agent as the API shows it.
type agentJSON struct {
	AgentID     string `json:"agentId"`
	QueueURL    string `json:"queueUrl"`
	ResourceARN string `json:"resourceArn"`
	CreatedAt   string `json:"createdAt"`
}

func newAgentJSON(a store.Agent) agentJSON {
	return agentJSON{AgentID: a.ID, QueueURL: a.QueueURL, ResourceARN: a.ResourceARN, CreatedAt: formatTime(a.CreatedAt)}
}

// formatTime writes t in the API's layout (event.TimeLayout: UTC,
// milliseconds, truncated).
func formatTime(t time.Time) string { return t.UTC().Format(event.TimeLayout) }

// registerAgent serves POST /agents {"resourceArn": "..."}: 200 with the
// agent of that ARN, created with its queue when new; 403 when the ARN is
// not the caller's own principal and the caller is no admin.
func (h *api) registerAgent(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxAgentBodyBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var req struct {
		ResourceARN *string `json:"resourceArn"`
	}
	if err := decodeStrict(body, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.ResourceARN == nil {
		h.writeError(w, r, badRequest("resourceArn is required"))
		return
	}
	if err := validateResourceARN(*req.ResourceARN); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := mayRegister(r.Context(), *req.ResourceARN); err != nil {
		h.writeError(w, r, err)
		return
	}
	a, err := h.agents.RegisterAgent(r.Context(), *req.ResourceARN)
	if err != nil {
		h.writeError(w, r, fmt.Errorf("register agent for %s: %w", *req.ResourceARN, err), zap.String("resource_arn", *req.ResourceARN))
		return
	}
	writeJSON(w, http.StatusOK, newAgentJSON(a))
}

// getAgent serves GET /agents/{agentId}: 200 with the agent, or 404; 403
// unless the caller is the agent or an admin.
func (h *api) getAgent(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "agentId")
	a, err := h.lookupAgent(r.Context(), "", id)
	if err == nil {
		err = mayActFor(r.Context(), a, "read it")
	}
	if err != nil {
		h.writeError(w, r, err, zap.String("agent_id", id))
		return
	}
	writeJSON(w, http.StatusOK, newAgentJSON(a))
}

// lookupAgent returns agent id, or a 404 naming it in its role
// ("listener", "producer" or "" for none) when it does not exist.
func (h *api) lookupAgent(ctx context.Context, role, id string) (store.Agent, error) {
	if id == "" || len(id) > event.MaxAgentIDLen {
		return store.Agent{}, agentNotFound(role, id, store.ErrNotFound)
	}
	a, err := h.agents.Agent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Agent{}, agentNotFound(role, id, err)
	}
	if err != nil {
		return store.Agent{}, fmt.Errorf("look up agent %s: %w", id, err)
	}
	return a, nil
}
