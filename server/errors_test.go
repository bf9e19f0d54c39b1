package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		cancelled  bool // the request's context is cancelled (client gone)
		status     int
		msg        string
		retryAfter bool
		logLevel   zapcore.Level // level of the one log entry; 0 (info) with logs=false means none
		logs       bool
	}{
		{name: "api error", err: badRequest("eventType is required"), status: 400, msg: "eventType is required"},
		{name: "wrapped api error", err: fmt.Errorf("ctx: %w", agentNotFound("producer", "p", store.ErrNotFound)), status: 404, msg: `producer agent "p" not found; register it with POST /agents`},
		{name: "api 503", err: &apiError{status: 503, msg: "not ready: x"}, status: 503, msg: "not ready: x", retryAfter: true},
		{name: "invalid principal", err: fmt.Errorf("register agent a: create queue agents-a.fifo: %w", &store.PrincipalError{Msg: "principal arn:aws-cn:iam::123456789012:root is in partition aws-cn but fanout runs in partition aws"}), status: 400, msg: "principal arn:aws-cn:iam::123456789012:root is in partition aws-cn but fanout runs in partition aws"},
		{name: "bare not found", err: fmt.Errorf("agent a: %w", store.ErrNotFound), status: 404, msg: "not found"},
		{name: "retry later", err: fmt.Errorf("queue a: %w", store.ErrRetryLater), status: 503, msg: "service unavailable, retry later", retryAfter: true, logs: true, logLevel: zapcore.WarnLevel},
		{name: "stream unavailable", err: fmt.Errorf("stream s: %w", event.ErrUnavailable), status: 503, msg: "event stream unavailable, retry later", retryAfter: true, logs: true, logLevel: zapcore.WarnLevel},
		{name: "event too large", err: fmt.Errorf("event 2: %w", event.ErrTooLarge), status: 413, msg: "an event does not fit in a Kinesis record; make data smaller", logs: true, logLevel: zapcore.WarnLevel},
		{name: "unexpected", err: errors.New("AccessDenied"), status: 503, msg: "service unavailable, retry later", retryAfter: true, logs: true, logLevel: zapcore.ErrorLevel},
		{name: "client gone", err: fmt.Errorf("get: %w", context.Canceled), cancelled: true, status: 503, msg: "service unavailable, retry later", retryAfter: true, logs: true, logLevel: zapcore.InfoLevel},
		{name: "timeout", err: fmt.Errorf("get: %w", context.DeadlineExceeded), status: 503, msg: "service unavailable, retry later", retryAfter: true, logs: true, logLevel: zapcore.ErrorLevel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.DebugLevel)
			h := &api{cfg: Config{}.withDefaults(), log: zap.New(core)}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancelled {
				cancel()
			}
			defer cancel()
			rec := httptest.NewRecorder()
			r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/x", nil)
			h.writeError(rec, r, tc.err, zap.String("agent_id", "a"))
			checkStatus(t, rec, tc.status)
			if got := errorMessage(t, rec); got != tc.msg {
				t.Errorf("message = %q, want %q", got, tc.msg)
			}
			if got := rec.Header().Get("Retry-After"); (got != "") != tc.retryAfter {
				t.Errorf("Retry-After = %q, want set: %v", got, tc.retryAfter)
			} else if tc.retryAfter && got != "2" {
				t.Errorf("Retry-After = %q, want 2 (defaultRetryAfter)", got)
			}
			entries := logs.All()
			if !tc.logs {
				if len(entries) != 0 {
					t.Errorf("logged %d entries for a client error, want none", len(entries))
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("logged %d entries, want exactly 1", len(entries))
			}
			e := entries[0]
			if e.Level != tc.logLevel {
				t.Errorf("logged at %s, want %s", e.Level, tc.logLevel)
			}
			fields := e.ContextMap()
			if fields["agent_id"] != "a" || fields["error"] != tc.err.Error() {
				t.Errorf("log fields = %v, want agent_id=a and error=%q", fields, tc.err)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, path string
		status       int
		allow        string
		wantErr      []string
	}{
		{http.MethodGet, "/nope", 404, "", []string{"no endpoint GET /nope"}},
		{http.MethodGet, "/agents/", 404, "", []string{"no endpoint"}},
		{http.MethodGet, "/agents/a/subscriptions/b/c", 404, "", []string{"no endpoint"}},
		{http.MethodGet, "/events", 405, "POST", []string{"method GET is not allowed on /events; use POST"}},
		{http.MethodDelete, "/agents", 405, "POST", []string{"method DELETE"}},
		{http.MethodPost, "/agents/a", 405, "GET", []string{"use GET"}},
		{http.MethodPost, "/agents/a/subscriptions/b", 405, "PUT, DELETE", []string{"use PUT or DELETE"}},
		{http.MethodPost, "/healthz", 405, "GET", []string{"use GET"}},
		{"PATCH", "/agents/a/subscriptions", 405, "GET", []string{"method PATCH"}},
		{"BREW", "/healthz", 405, "GET", []string{"method BREW"}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "a", "b")
			rec := f.do(t, tc.method, tc.path, "", nil)
			checkErrorContains(t, rec, tc.status, tc.wantErr...)
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "a")
	f.agents.panics = true
	req := httptest.NewRequest(http.MethodGet, "/agents/a", nil)
	req.Header.Set(requestIDHeader, "req-42")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	checkErrorContains(t, rec, 500, "internal error", "req-42")
	panics := f.logs.FilterMessage("handler panicked").All()
	if len(panics) != 1 || panics[0].Level != zapcore.ErrorLevel {
		t.Fatalf("panic log entries = %v, want one at error", panics)
	}
	if got := panics[0].ContextMap()["request_id"]; got != "req-42" {
		t.Errorf("panic logged with request_id %v, want req-42", got)
	}
	// The request log still sees the 500.
	reqs := f.logs.FilterMessage("http request").All()
	if len(reqs) != 1 || reqs[0].ContextMap()["status"] != int64(500) {
		t.Errorf("request log entries = %v, want one with status 500", reqs)
	}
}

func TestRequestLogAndID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"caller's id kept", "abc-123", true},
		{"no id", "", false},
		{"unsafe id replaced", "bad id\x01", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "a")
			req := httptest.NewRequest(http.MethodGet, "/agents/a", nil)
			if tc.sent != "" {
				req.Header.Set(requestIDHeader, tc.sent)
			}
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			id := rec.Header().Get(requestIDHeader)
			if tc.keep && id != tc.sent {
				t.Errorf("request id = %q, want the caller's %q", id, tc.sent)
			}
			if !tc.keep && (id == "" || id == tc.sent) {
				t.Errorf("request id = %q, want a new one", id)
			}
			entries := f.logs.FilterMessage("http request").All()
			if len(entries) != 1 {
				t.Fatalf("%d request log entries, want 1", len(entries))
			}
			e := entries[0]
			if e.Level != zapcore.InfoLevel {
				t.Errorf("request logged at %s, want info", e.Level)
			}
			m := e.ContextMap()
			want := map[string]any{"method": "GET", "path": "/agents/a", "route": "/agents/{agentId}", "status": int64(200), "request_id": id}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("log field %s = %v, want %v", k, m[k], v)
				}
			}
			if d, ok := m["duration_ms"].(float64); !ok || d < 0 {
				t.Errorf("duration_ms = %v, want a non-negative number", m["duration_ms"])
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{RequestTimeout: 50 * time.Millisecond}, "a")
	f.agents.block = true
	start := time.Now()
	rec := f.do(t, http.MethodGet, "/agents/a", "", nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("request took %s with a 50ms RequestTimeout", d)
	}
	checkErrorContains(t, rec, 503, "service unavailable, retry later")
}

func TestWriteJSONLeavesHTMLUnescaped(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusBadRequest, errorBody{"it must end in role/<name> & more"})
	if got, want := rec.Body.String(), `{"error":"it must end in role/<name> & more"}`+"\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}
