package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/fanout/fanout/auth"
)

// tokenVerifier answers Verify from a table of tokens (the real verifier is
// tested in package auth and end to end over a test STS).
type tokenVerifier map[string]error

func (v tokenVerifier) Verify(_ context.Context, token string) (auth.Principal, error) {
	if err, ok := v[token]; ok {
		return auth.Principal{}, err
	}
	p, err := auth.ParsePrincipal(token) // the other tokens are the caller's ARN
	if err != nil {
		return auth.Principal{}, &auth.Error{Msg: "bad token"}
	}
	return p, nil
}

// TestAuthenticate: how authentication outcomes map to answers, and that
// the token never reaches the log.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	const secret = "fanout-v1.c2VjcmV0"
	v := tokenVerifier{
		secret:     &auth.Error{Msg: "STS refused the bearer token"},
		"identity": &auth.Error{Msg: "fanout cannot let this identity act", Identified: true},
		"down":     fmt.Errorf("%w: connection refused", auth.ErrUnavailable),
	}
	f := newFixture(t, Config{Auth: Auth{Verifier: v}}, "p")
	for _, tc := range []struct {
		name, header string
		status       int
		says         string
	}{
		{"no header", "", 401, "missing bearer token"},
		{"basic auth", "Basic dXNlcjpwYXNz", 401, "missing bearer token"},
		{"empty bearer", "Bearer ", 401, "missing bearer token"},
		{"refused", "Bearer " + secret, 401, "STS refused"},
		{"identity that cannot act", "Bearer identity", 403, "cannot let this identity act"},
		{"STS down", "Bearer down", 503, "STS is unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/agents/p", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			checkErrorContains(t, rec, tc.status, tc.says)
			if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.status == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	for _, e := range f.logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), secret) {
			t.Errorf("the token is in the log: %s %v", e.Message, e.ContextMap())
		}
	}
}

// TestAuthorize: who may do what, per endpoint, as the handlers decide it
// (end to end in app/auth_test.go).
func TestAuthorize(t *testing.T) {
	t.Parallel()
	const (
		owner  = "arn:aws:sts::123456789012:assumed-role/p/session" // agent p is role p of 123456789012
		other  = "arn:aws:iam::123456789012:user/q"
		admin  = "arn:aws:sts::999999999999:assumed-role/ops/ci"
		reader = "arn:aws:sts::123456789012:assumed-role/l/s" // agent l
	)
	ops, _ := auth.ParsePrincipal("arn:aws:iam::999999999999:role/ops")
	f := newFixture(t, Config{Auth: Auth{Verifier: tokenVerifier{}, Admins: []auth.Principal{ops}}}, "p", "l")
	event := `{"agentId":"p","eventType":"t","data":1}`
	for _, tc := range []struct {
		caller, method, path, body string
		status                     int
	}{
		{owner, "POST", "/agents", `{"resourceArn":"arn:aws:iam::123456789012:role/path/p"}`, 200},
		{other, "POST", "/agents", `{"resourceArn":"arn:aws:iam::123456789012:role/p"}`, 403},
		{admin, "POST", "/agents", `{"resourceArn":"arn:aws:iam::123456789012:role/x"}`, 200},
		{owner, "GET", "/agents/p", "", 200},
		{other, "GET", "/agents/p", "", 403},
		{admin, "GET", "/agents/p", "", 200},
		{reader, "PUT", "/agents/l/subscriptions/p", "", 204},
		{owner, "PUT", "/agents/l/subscriptions/p", "", 403},
		{admin, "PUT", "/agents/l/subscriptions/p", "", 204},
		{owner, "GET", "/agents/l/subscriptions", "", 403},
		{reader, "GET", "/agents/l/subscriptions", "", 200},
		{owner, "DELETE", "/agents/l/subscriptions/p", "", 403},
		{reader, "DELETE", "/agents/l/subscriptions/p", "", 204},
		{reader, "GET", "/agents/p/subscribers-policy", "", 403},
		{owner, "GET", "/agents/p/subscribers-policy", "", 200},
		{reader, "PUT", "/agents/p/subscribers-policy", `{"allow":["*"]}`, 403},
		{admin, "PUT", "/agents/p/subscribers-policy", `{"allow":["*"]}`, 200},
		{owner, "POST", "/events", event, 202},
		{reader, "POST", "/events", event, 403},
		{admin, "POST", "/events", event, 202},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tc.caller)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s %s as %s: %d %s, want %d", tc.method, tc.path, tc.caller, rec.Code, rec.Body, tc.status)
		}
	}
	if n := len(f.pub.published()); n != 2 {
		t.Errorf("%d publishes reached the stream, want 2 (the refused one must not)", n)
	}
}

// TestSubscribersPolicy: the default lets the producer's account in; a
// policy lets in what it names ("*", accounts, principals, an account root
// for its account); narrowing it ends and reports what it no longer allows.
func TestSubscribersPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		allow    []string
		listener string
		want     bool
	}{
		{nil, "arn:aws:iam::123456789012:role/l", true},
		{nil, "arn:aws:iam::210987654321:role/l", false},
		{[]string{"*"}, "arn:aws:iam::210987654321:user/u", true},
		{[]string{"210987654321"}, "arn:aws:iam::210987654321:role/any/path/l", true},
		{[]string{"arn:aws:iam::210987654321:role/l"}, "arn:aws:iam::210987654321:role/team/l", true},
		{[]string{"arn:aws:iam::210987654321:role/l"}, "arn:aws:iam::210987654321:role/m", false},
		{[]string{"arn:aws:iam::210987654321:root"}, "arn:aws:iam::210987654321:user/u", true},
		{[]string{"arn:aws:iam::210987654321:user/u"}, "arn:aws:iam::210987654321:root", false},
		{[]string{}, "arn:aws:iam::123456789012:role/l", false},
	} {
		p := subscribersPolicy{allow: tc.allow, set: tc.allow != nil}
		if tc.allow == nil {
			p.allow = []string{"123456789012"} // the default of a producer of that account
		}
		if got := p.allows(tc.listener); got != tc.want {
			t.Errorf("policy %v allows %s = %v, want %v", tc.allow, tc.listener, got, tc.want)
		}
	}

	f := newFixture(t, Config{}, "p", "l")
	checkStatus(t, f.doJSON(t, "PUT", "/agents/l/subscriptions/p", ""), 204)
	rec := f.doJSON(t, "PUT", "/agents/p/subscribers-policy", `{"allow":["210987654321"]}`)
	checkStatus(t, rec, 200)
	if want := `"ended":[{"listenerId":"l","resourceArn":"arn:aws:iam::123456789012:role/l"}]`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("narrowing answered %s, want it to report %s", rec.Body, want)
	}
	checkErrorContains(t, f.doJSON(t, "PUT", "/agents/l/subscriptions/p", ""), 403, "producer p", "allows 210987654321", "PUT /agents/p/subscribers-policy")
	for _, body := range []string{`{}`, `{"allow":["12"]}`, `{"allow":["arn:aws:iam::123456789012:group/g"]}`, `{"allow":"*"}`} {
		checkStatus(t, f.doJSON(t, "PUT", "/agents/p/subscribers-policy", body), 400)
	}
}

// narrowingAgents narrows producer p's subscribers-policy to no one right
// after a subscribe has read it: the race a concurrent PUT of the policy
// can win.
type narrowingAgents struct {
	*recordingAgents
	reads int
}

func (a *narrowingAgents) SubscribersPolicy(ctx context.Context, id string) ([]string, bool, error) {
	allow, set, err := a.recordingAgents.SubscribersPolicy(ctx, id)
	if a.reads++; a.reads == 1 {
		if err := a.recordingAgents.SetSubscribersPolicy(ctx, id, []string{}); err != nil {
			return nil, false, err
		}
	}
	return allow, set, err
}

// TestSubscribeRacingANarrowedPolicy: a subscription whose policy was
// narrowed while it was being written is undone and refused, so the PUT of
// the policy, which may have listed the subscribers before it was written,
// cannot leave it behind.
func TestSubscribeRacingANarrowedPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "p", "l")
	agents := &narrowingAgents{recordingAgents: f.agents}
	h := New(Config{}, Deps{Agents: agents, Subscriptions: f.subs, Events: f.pub, Ready: f.ready, DeadLetters: f.store, Redriver: refusingRedriver{}}, zap.NewNop())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/agents/l/subscriptions/p", nil))
	checkErrorContains(t, rec, 403, "producer p")
	subs, err := f.store.Subscribers(context.Background(), "p")
	if err != nil || len(subs) != 1 || subs[0].DeletedAt.IsZero() {
		t.Errorf("subscriptions of p = %+v, %v; want the one written, ended again", subs, err)
	}
}
