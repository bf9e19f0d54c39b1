package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

func TestRegisterAgent(t *testing.T) {
	t.Parallel()
	const (
		arn          = "arn:aws:iam::123456789012:role/reader"
		principalMsg = "SQS rejected the queue policy for principal " + arn + ": it must be an existing IAM role, user or account"
	)
	tests := []struct {
		name        string
		contentType string
		body        string
		registerErr error
		status      int
		wantErr     []string // parts of the error message; nil on success
		registers   bool     // whether RegisterAgent must be called
	}{
		{name: "ok", contentType: "application/json", body: `{"resourceArn":"` + arn + `"}`, status: 200, registers: true},
		{name: "charset utf-8", contentType: "application/json; charset=UTF-8", body: `{"resourceArn":"` + arn + `"}`, status: 200, registers: true},
		{name: "no content type", body: `{"resourceArn":"` + arn + `"}`, status: 200, registers: true},
		{name: "whitespace around", contentType: "application/json", body: "\n {\"resourceArn\":\"" + arn + "\"}\n", status: 200, registers: true},
		{name: "missing", contentType: "application/json", body: `{}`, status: 400, wantErr: []string{"resourceArn is required"}},
		{name: "empty", contentType: "application/json", body: `{"resourceArn":""}`, status: 400, wantErr: []string{"resourceArn is required"}},
		{name: "null", contentType: "application/json", body: `{"resourceArn":null}`, status: 400, wantErr: []string{"resourceArn is required"}},
		{name: "not an IAM principal", contentType: "application/json", body: `{"resourceArn":"arn:aws:sts::123456789012:assumed-role/r/s"}`, status: 400, wantErr: []string{arnHint, "STS"}},
		{name: "wrong type", contentType: "application/json", body: `{"resourceArn":42}`, status: 400, wantErr: []string{"resourceArn must be a JSON string, got number"}},
		{name: "body not an object", contentType: "application/json", body: `["x"]`, status: 400, wantErr: []string{"must be a JSON object, got array"}},
		{name: "unknown field", contentType: "application/json", body: `{"resourceArn":"` + arn + `","name":"x"}`, status: 400, wantErr: []string{`unknown field "name"`}},
		{name: "malformed", contentType: "application/json", body: `{"resourceArn":"x",}`, status: 400, wantErr: []string{"malformed JSON at byte"}},
		{name: "truncated", contentType: "application/json", body: `{"resourceArn":"x"`, status: 400, wantErr: []string{"malformed JSON"}},
		{name: "trailing data", contentType: "application/json", body: `{"resourceArn":"` + arn + `"} {}`, status: 400, wantErr: []string{"unexpected data after the JSON value"}},
		{name: "empty body", contentType: "application/json", body: ``, status: 400, wantErr: []string{"request body is empty"}},
		{name: "blank body", contentType: "application/json", body: " \n", status: 400, wantErr: []string{"request body is empty"}},
		{name: "wrong content type", contentType: "text/plain", body: `{"resourceArn":"` + arn + `"}`, status: 415, wantErr: []string{`"text/plain"`, "application/json"}},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `resourceArn=x`, status: 415, wantErr: []string{"application/json"}},
		{name: "bad charset", contentType: "application/json; charset=latin1", body: `{"resourceArn":"` + arn + `"}`, status: 415, wantErr: []string{"UTF-8"}},
		{name: "unparsable content type", contentType: "application/json; ===", body: `{"resourceArn":"` + arn + `"}`, status: 415, wantErr: []string{"application/json"}},
		{name: "too large", contentType: "application/json", body: `{"resourceArn":"` + strings.Repeat("a", maxAgentBodyBytes) + `"}`, status: 413, wantErr: []string{"larger than 65536 bytes"}},
		{name: "store retry later", contentType: "application/json", body: `{"resourceArn":"` + arn + `"}`, registerErr: fmt.Errorf("create queue: %w", store.ErrRetryLater), status: 503, wantErr: []string{"retry later"}, registers: true},
		{name: "store failure", contentType: "application/json", body: `{"resourceArn":"` + arn + `"}`, registerErr: errors.New("dynamodb: connection refused"), status: 503, wantErr: []string{"service unavailable, retry later"}, registers: true},
		{name: "invalid principal", contentType: "application/json", body: `{"resourceArn":"` + arn + `"}`, registerErr: fmt.Errorf("create queue agents-1.fifo for agent 1: %w", &store.PrincipalError{Msg: principalMsg}), status: 400, wantErr: []string{principalMsg}, registers: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{})
			f.agents.registerErr = tc.registerErr
			rec := f.do(t, http.MethodPost, "/agents", tc.contentType, strings.NewReader(tc.body))
			checkStatus(t, rec, tc.status)
			registered, _ := f.agents.calls()
			if got := len(registered) > 0; got != tc.registers {
				t.Errorf("RegisterAgent called: %v, want %v (calls %q)", got, tc.registers, registered)
			}
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
				if tc.status == 503 && rec.Header().Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				return
			}
			if len(registered) != 1 || registered[0] != arn {
				t.Errorf("RegisterAgent calls = %q, want [%q]", registered, arn)
			}
			a, err := f.store.RegisterAgent(t.Context(), arn) // the agent the call registered: registering is idempotent
			if err != nil {
				t.Fatal(err)
			}
			want := `{"agentId":"` + a.ID + `","queueUrl":"` + a.QueueURL + `","resourceArn":"` + arn + `","createdAt":"2025-07-01T12:00:00.123Z"}`
			if got := strings.TrimSpace(rec.Body.String()); got != want {
				t.Errorf("body = %s, want %s", got, want)
			}
		})
	}
}

func TestGetAgent(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", event.MaxAgentIDLen+1)
	tests := []struct {
		name    string
		id      string
		err     error // Agent fails with it
		status  int
		wantErr []string
		lookups int
	}{
		{name: "found", id: "a1", status: 200, lookups: 1},
		{name: "missing", id: "nope", status: 404, wantErr: []string{`agent "nope" not found`, "POST /agents"}, lookups: 1},
		{name: "too long to exist", id: long, status: 404, wantErr: []string{"longer than 256"}, lookups: 0},
		{name: "store failure", id: "a1", err: errors.New("throttled"), status: 503, wantErr: []string{"service unavailable, retry later"}, lookups: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "a1")
			if tc.err != nil {
				f.agents.errFor[tc.id] = tc.err
			}
			rec := f.do(t, http.MethodGet, "/agents/"+tc.id, "", nil)
			if _, looked := f.agents.calls(); len(looked) != tc.lookups {
				t.Errorf("Agent called %d times, want %d", len(looked), tc.lookups)
			}
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
				return
			}
			checkStatus(t, rec, tc.status)
			var got agentJSON
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			want := agentJSON{AgentID: "a1", QueueURL: "https://sqs.example/agents-a1.fifo",
				ResourceARN: "arn:aws:iam::123456789012:role/a1", CreatedAt: "2025-07-01T12:00:00.000Z"}
			if got != want {
				t.Errorf("agent = %+v, want %+v", got, want)
			}
		})
	}
}
