package server

import (
	"context"
	"net/http"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// requestIDHeader carries the request id in both directions: a caller (or
// a proxy) may set it, and every answer has it.
const requestIDHeader = "X-Request-Id"

// validRequestID is what an incoming request id must look like to be kept;
// anything else is replaced so that logs stay clean.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:=+/-]{1,128}$`)

type requestIDKey struct{}

// withRequestID gives every request an id: the caller's X-Request-Id when
// it is sane, else a new UUID. The id is echoed in the answer and logged.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// requestIDField is the log field of the request id in ctx.
func requestIDField(ctx context.Context) zap.Field {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return zap.String("request_id", id)
}

// logRequests logs every finished request at info: method, path, route,
// status, bytes, duration_ms and request_id.
func (h *api) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // the handler wrote nothing: net/http sends 200
			}
			h.log.Info("http request",
				zap.String("method", r.Method),
				zap.String("path", r.URL.Path),
				zap.String("route", chi.RouteContext(r.Context()).RoutePattern()),
				zap.Int("status", status),
				zap.Int("bytes", ww.BytesWritten()),
				zap.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				requestIDField(r.Context()),
			)
		}()
		next.ServeHTTP(ww, r)
	})
}

// unmatchedRoute is the route label of requests that match no route, so
// that probes of random paths cannot grow the metrics.
const unmatchedRoute = "unmatched"

// countRequests records every answered request in the metrics by method,
// route pattern (never the path: it holds agent ids) and status.
func (h *api) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww, ok := w.(middleware.WrapResponseWriter)
		if !ok {
			ww = middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		}
		defer func() {
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = unmatchedRoute
			}
			h.cfg.Metrics.HTTPRequest(r.Method, route, status, time.Since(start))
		}()
		next.ServeHTTP(ww, r)
	})
}

// recoverPanics turns a panic in a handler into a logged 500 (when nothing
// has been written yet), so that one bad request cannot kill the process.
// http.ErrAbortHandler is passed on: it is net/http's way to abort a reply.
func (h *api) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww, ok := w.(middleware.WrapResponseWriter)
		if !ok {
			ww = middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("handler panicked",
				zap.Any("panic", v), zap.Stack("stack"),
				zap.String("method", r.Method), zap.String("path", r.URL.Path),
				requestIDField(r.Context()))
			if ww.Status() == 0 {
				writeJSON(ww, http.StatusInternalServerError, errorBody{
					"internal error; report request id " + ww.Header().Get(requestIDHeader),
				})
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

// withTimeout bounds the work of one request by Config.RequestTimeout.
func (h *api) withTimeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
