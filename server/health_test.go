package server

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.ready.err = errors.New("kinesis unreachable") // liveness must not care
	rec := f.do(t, http.MethodGet, "/healthz", "", nil)
	checkStatus(t, rec, 200)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"status":"ok"}` {
		t.Errorf("body = %s, want {\"status\":\"ok\"}", got)
	}
	if f.ready.calls != 0 {
		t.Errorf("liveness called Ready %d times, want 0", f.ready.calls)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		block   bool
		status  int
		wantErr []string
	}{
		{name: "ready", status: 200},
		{name: "not ready", err: errors.New("aggregator worker stopped"), status: 503, wantErr: []string{"not ready: aggregator worker stopped"}},
		{name: "check times out", block: true, status: 503, wantErr: []string{"not ready:", "deadline exceeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{ReadyTimeout: 50 * time.Millisecond})
			f.ready.err, f.ready.block = tc.err, tc.block
			start := time.Now()
			rec := f.do(t, http.MethodGet, "/readyz", "", nil)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("readyz took %s with a 50ms ReadyTimeout", d)
			}
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
				return
			}
			checkStatus(t, rec, tc.status)
			if got := strings.TrimSpace(rec.Body.String()); got != `{"status":"ready"}` {
				t.Errorf("body = %s, want {\"status\":\"ready\"}", got)
			}
		})
	}
}
