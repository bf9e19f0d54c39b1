package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// apiError is an answer decided by the server: a status and a message the
// caller can act on. cause, when set, is the underlying error (it makes
// errors.Is work, e.g. for store.ErrNotFound) and is never shown.
type apiError struct {
	status int
	msg    string
	cause  error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *apiError) Unwrap() error { return e.cause }

// badRequest is a 400 with the message msg.
func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// agentNotFound is the 404 for a missing agent; role says which one
// ("listener", "producer" or "").
func agentNotFound(role, agentID string, cause error) *apiError {
	if role != "" {
		role += " "
	}
	if len(agentID) > event.MaxAgentIDLen {
		return &apiError{
			status: http.StatusNotFound,
			msg:    fmt.Sprintf("%sagent id is longer than %d characters, so no such agent exists", role, event.MaxAgentIDLen),
			cause:  cause,
		}
	}
	return &apiError{
		status: http.StatusNotFound,
		msg:    fmt.Sprintf("%sagent %q not found; register it with POST /agents", role, agentID),
		cause:  cause,
	}
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers r with err. It is the one place that maps outcomes to
// status codes:
//   - *apiError: its own status and message (4xx decided by the handlers,
//     503 for readiness);
//   - store.ErrNotFound: 404;
//   - store.ErrInvalidPrincipal: 400 with the message of its
//     *store.PrincipalError, which says what to fix;
//   - event.ErrTooLarge: 413;
//   - event.ErrUnavailable: 503 "event stream unavailable, retry later";
//   - anything else (store.ErrRetryLater, AWS or timeout failures): 503
//     "service unavailable, retry later".
//
// Every 503 carries Retry-After. Failures that are not the caller's are
// logged here, once, with fields (agent_id, producer_id) naming what was
// involved; handlers do not log them again. It returns the status written.
func (h *api) writeError(w http.ResponseWriter, r *http.Request, err error, fields ...zap.Field) int {
	if ae, ok := errors.AsType[*apiError](err); ok {
		if ae.status == http.StatusServiceUnavailable {
			h.setRetryAfter(w)
		}
		writeJSON(w, ae.status, errorBody{ae.msg})
		return ae.status
	}
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{"not found"})
		return http.StatusNotFound
	}
	if pe, ok := errors.AsType[*store.PrincipalError](err); ok {
		writeJSON(w, http.StatusBadRequest, errorBody{pe.Msg})
		return http.StatusBadRequest
	}
	if errors.Is(err, event.ErrTooLarge) {
		// postEvents checks sizes before publishing, so this means its
		// limit and the pipeline's have drifted apart.
		h.log.Warn("event passed the size check but the pipeline refused it", append(fields, requestIDField(r.Context()), zap.Error(err))...)
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{"an event does not fit in a Kinesis record; make data smaller"})
		return http.StatusRequestEntityTooLarge
	}

	msg := "service unavailable, retry later"
	if errors.Is(err, event.ErrUnavailable) {
		msg = "event stream unavailable, retry later"
	}
	fields = append(fields, requestIDField(r.Context()), zap.Error(err))
	switch {
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		h.log.Info("request cancelled by the client", fields...)
	case errors.Is(err, store.ErrRetryLater), errors.Is(err, event.ErrUnavailable):
		h.log.Warn("request failed, caller told to retry", fields...)
	default:
		h.log.Error("request failed", fields...)
	}
	h.setRetryAfter(w)
	writeJSON(w, http.StatusServiceUnavailable, errorBody{msg})
	return http.StatusServiceUnavailable
}

func (h *api) setRetryAfter(w http.ResponseWriter) {
	secs := int(math.Ceil(h.cfg.RetryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
}

// writeJSON answers with status and v as JSON. v must be encodable (the
// server's own response types are), so an encoding failure is a bug. HTML
// characters are left unescaped: answers are read by programs and people
// with curl, never embedded in pages.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("server: encode %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // a failed write means the client left; nothing to do
}

// notFound answers paths that match no route.
func (h *api) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, &apiError{
		status: http.StatusNotFound,
		msg:    fmt.Sprintf("no endpoint %s %s; the endpoints are listed in the README's API section", r.Method, r.URL.Path),
	})
}

// methodNotAllowed answers a known path asked with a method it does not
// serve. chi drops its Allow header once a custom 405 handler is set, so
// the allowed methods are found again by matching the path in mux.
func (h *api) methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		h.writeError(w, r, &apiError{
			status: http.StatusMethodNotAllowed,
			msg:    fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")),
		})
	}
}
