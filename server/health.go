package server

import (
	"context"
	"net/http"
)

type statusJSON struct {
	Status string `json:"status"`
}

// healthz serves GET /healthz, liveness: 200 whenever the process serves
// HTTP. It makes no AWS call, so an AWS outage does not get tasks killed.
func (h *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, statusJSON{"ok"})
}

// readyz serves GET /readyz, readiness: 200 when AWS is reachable and the
// workers run, else 503 with the reason. One check takes at most
// Config.ReadyTimeout.
func (h *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReadyTimeout)
	defer cancel()
	if err := h.ready.Ready(ctx); err != nil {
		h.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, msg: "not ready: " + err.Error(), cause: err})
		return
	}
	writeJSON(w, http.StatusOK, statusJSON{"ready"})
}
