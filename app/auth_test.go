package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fanout/fanout/app"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/awstest"
)

// iamEnv is an env whose fanout runs FANOUT_AUTH=iam with STS at a test
// STS that knows several callers (the emulator's answers one identity for
// everyone).
type iamEnv struct {
	*env
	sts       *awstest.STS
	adminRole string // the role ARN in FANOUT_ADMINS
	admin     awstest.Identity
}

func newIAMEnv(t testing.TB) *iamEnv {
	t.Helper()
	e := newEnv(t)
	s := awstest.NewSTS(t)
	s.AddDefault("arn:aws:iam::000000000000:user/fanout") // fanout's own credentials
	ops := awstest.Name(t, "ops")
	ie := &iamEnv{env: e, sts: s, adminRole: "arn:aws:iam::999999999999:role/" + ops,
		admin: s.Add(t, "arn:aws:sts::999999999999:assumed-role/"+ops+"/ci-run")}
	e.cfg.Auth = app.AuthIAM
	e.cfg.Admins = []string{ie.adminRole}
	e.awsCfg = s.Endpoint(t, e.awsCfg)
	return ie
}

// caller is one identity of the test STS and a client signing as it.
type caller struct {
	id     awstest.Identity
	client *client.Client
	sqs    *sqs.Client
}

func (e *iamEnv) caller(t testing.TB, s *service, id awstest.Identity) caller {
	t.Helper()
	cfg := e.sts.Config(t, id)
	return caller{id: id, client: client.New(client.Config{URL: s.url, AWS: cfg}), sqs: sqs.NewFromConfig(cfg)}
}

// roleCaller is a session of a fresh role of account, and that role's ARN
// with path (which its sessions' ARNs lack).
func (e *iamEnv) roleCaller(t testing.TB, s *service, account, name string) (caller, string) {
	t.Helper()
	role := awstest.Name(t, name)
	c := e.caller(t, s, e.sts.Add(t, "arn:aws:sts::"+account+":assumed-role/"+role+"/session-1"))
	return c, "arn:aws:iam::" + account + ":role/team/" + role
}

// rawCall sends a request with the given Authorization header (none when
// empty) and returns the status, the error message and the headers.
func rawCall(t *testing.T, method, url, authorization string, body any) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb.Error, resp.Header
}

// wantRefused fails the test unless err is an answer with status whose
// message holds every part.
func wantRefused(t *testing.T, what string, err error, status int, parts ...string) {
	t.Helper()
	if got := client.StatusOf(err); got != status {
		t.Errorf("%s: %v, want status %d", what, err, status)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: message %q does not say %q", what, err, p)
		}
	}
}

// TestAuthRules drives every authorization rule through the production
// wiring with real presigned tokens: each allowed and refused.
func TestAuthRules(t *testing.T) {
	t.Parallel()
	e := newIAMEnv(t)
	s := e.start(t, "auth")
	ctx := context.Background()

	// Without a token: 401 saying how to get one, and nothing else runs.
	status, msg, hdr := rawCall(t, "POST", s.url+"/agents", "", map[string]string{"resourceArn": "arn:aws:iam::111111111111:role/x"})
	if status != 401 || !strings.Contains(msg, "Bearer fanout-v1.") || !strings.Contains(msg, "client") || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %q (WWW-Authenticate %q), want 401 saying how to get a token", status, msg, hdr.Get("WWW-Authenticate"))
	}
	if status, _, _ := rawCall(t, "GET", s.url+"/healthz", "", nil); status != 200 {
		t.Errorf("GET /healthz without a token = %d, want 200 (probes carry no token)", status)
	}

	producer, producerARN := e.roleCaller(t, s, "111111111111", "producer")
	listener, listenerARN := e.roleCaller(t, s, "111111111111", "listener")
	outsider := e.caller(t, s, e.sts.Add(t, "arn:aws:iam::222222222222:user/"+awstest.Name(t, "outsider")))
	admin := e.caller(t, s, e.admin)

	// POST /agents: one's own principal (a role with any path), or anything for an admin.
	p, err := producer.client.Register(ctx, producerARN)
	if err != nil || p.ResourceARN != producerARN {
		t.Fatalf("producer registers its own role: %+v, %v", p, err)
	}
	_, err = listener.client.Register(ctx, producerARN)
	wantRefused(t, "listener registers the producer's role", err, 403, "register only your own principal", "FANOUT_ADMINS")
	_, err = outsider.client.Register(ctx, listenerARN)
	wantRefused(t, "outsider registers the listener's role", err, 403, outsider.id.ARN)
	l, err := admin.client.Register(ctx, listenerARN)
	if err != nil {
		t.Fatalf("admin registers the listener's role: %v", err)
	}
	o, err := outsider.client.Register(ctx, outsider.id.ARN)
	if err != nil {
		t.Fatalf("outsider registers itself: %v", err)
	}

	// GET /agents/{id}: the agent itself or an admin.
	if _, err := producer.client.Agent(ctx, p.AgentID); err != nil {
		t.Errorf("producer reads its agent: %v", err)
	}
	if _, err := admin.client.Agent(ctx, p.AgentID); err != nil {
		t.Errorf("admin reads the producer's agent: %v", err)
	}
	_, err = listener.client.Agent(ctx, p.AgentID)
	wantRefused(t, "listener reads the producer's agent", err, 403, producerARN, "FANOUT_ADMINS")

	// Subscriptions of L: only L or an admin; and only as the producer's
	// policy allows (default: the producer's own account).
	if err := listener.client.Subscribe(ctx, l.AgentID, p.AgentID); err != nil {
		t.Errorf("listener of the producer's account subscribes: %v", err)
	}
	wantRefused(t, "outsider subscribes itself", outsider.client.Subscribe(ctx, o.AgentID, p.AgentID), 403,
		"producer "+p.AgentID, "own account 111111111111", "subscribers-policy")
	wantRefused(t, "admin subscribes the outsider", admin.client.Subscribe(ctx, o.AgentID, p.AgentID), 403, "subscribers-policy")
	wantRefused(t, "outsider subscribes the listener", outsider.client.Subscribe(ctx, l.AgentID, o.AgentID), 403, listenerARN)
	wantRefused(t, "outsider unsubscribes the listener", outsider.client.Unsubscribe(ctx, l.AgentID, p.AgentID), 403, listenerARN)
	_, err = outsider.client.Subscriptions(ctx, l.AgentID)
	wantRefused(t, "outsider lists the listener's subscriptions", err, 403, listenerARN)
	waitFor(t, 10*time.Second, "the listener's subscription listed for it and for an admin", func() bool {
		a, err1 := listener.client.Subscriptions(ctx, l.AgentID)
		b, err2 := admin.client.Subscriptions(ctx, l.AgentID)
		return err1 == nil && err2 == nil && len(a) == 1 && len(b) == 1 && a[0].ProducerID == p.AgentID
	})

	// The subscribers-policy: the producer's (or an admin's) to read and set.
	allow, err := producer.client.SubscribersPolicy(ctx, p.AgentID)
	if err != nil || !slices.Equal(allow, []string{"111111111111"}) {
		t.Errorf("default policy = %v, %v; want the producer's account", allow, err)
	}
	_, err = outsider.client.SubscribersPolicy(ctx, p.AgentID)
	wantRefused(t, "outsider reads the policy", err, 403, producerARN)
	_, err = outsider.client.SetSubscribersPolicy(ctx, p.AgentID, []string{"*"})
	wantRefused(t, "outsider sets the policy", err, 403, producerARN)
	_, err = producer.client.SetSubscribersPolicy(ctx, p.AgentID, []string{"12345"})
	wantRefused(t, "a policy entry that is no account or ARN", err, 400, "allow entry 0", "12-digit account id")
	ended, err := producer.client.SetSubscribersPolicy(ctx, p.AgentID, []string{"111111111111", outsider.id.ARN})
	if err != nil || len(ended) != 0 {
		t.Fatalf("widening the policy: ended %v, %v; want none ended", ended, err)
	}
	if err := outsider.client.Subscribe(ctx, o.AgentID, p.AgentID); err != nil {
		t.Fatalf("outsider subscribes once the policy allows it: %v", err)
	}

	// POST /events: only as the producer of every event (or an admin).
	_, err = listener.client.Publish(ctx, client.Event{AgentID: p.AgentID, EventType: "forged", Data: json.RawMessage(`{"n":-1}`)})
	wantRefused(t, "listener publishes as the producer", err, 403, "event 0", "nothing was published", producerARN)
	_, err = listener.client.Publish(ctx,
		client.Event{AgentID: l.AgentID, EventType: "own", Data: json.RawMessage(`{"n":-1}`)},
		client.Event{AgentID: p.AgentID, EventType: "forged", Data: json.RawMessage(`{"n":-1}`)})
	wantRefused(t, "listener publishes a batch with one event of the producer", err, 403, "event 1", "nothing was published")
	if _, err := producer.client.Publish(ctx, numberedEvents(p.AgentID, 0, 2)...); err != nil {
		t.Fatalf("producer publishes: %v", err)
	}
	if _, err := admin.client.Publish(ctx, numberedEvents(p.AgentID, 2, 1)...); err != nil {
		t.Fatalf("admin publishes as the producer: %v", err)
	}
	// Both subscribers get exactly the producer's three events, in order,
	// and nothing of the refused requests.
	for _, sub := range []struct {
		c     caller
		agent client.Agent
	}{{listener, l}, {outsider, o}} {
		msgs := consume(t, sub.c, sub.agent.QueueURL, 3)
		checkExactlyOnceInOrder(t, sub.agent.AgentID, msgs, map[string]int{p.AgentID: 3})
	}

	// Narrowing the policy ends, and reports, the subscriptions it no longer allows.
	ended, err = producer.client.SetSubscribersPolicy(ctx, p.AgentID, []string{outsider.id.ARN})
	narrowed := time.Now()
	if err != nil || len(ended) != 1 || ended[0].ListenerID != l.AgentID || ended[0].ResourceARN != listenerARN {
		t.Fatalf("narrowing the policy: ended %+v, %v; want the listener's subscription", ended, err)
	}
	waitFor(t, 10*time.Second, "the ended subscription gone from the listing", func() bool {
		subs, err := listener.client.Subscriptions(ctx, l.AgentID)
		return err == nil && len(subs) == 0
	})
	wantRefused(t, "listener subscribes again", listener.client.Subscribe(ctx, l.AgentID, p.AgentID), 403, "allows "+outsider.id.ARN)
	// An event accepted past the propagation bound reaches the outsider and
	// not the listener (both were fanned out from the same records so far).
	waitFor(t, 10*time.Second, "the propagation bound to pass", func() bool { return time.Since(narrowed) > propagationBound })
	if _, err := producer.client.Publish(ctx, numberedEvents(p.AgentID, 3, 1)...); err != nil {
		t.Fatal(err)
	}
	if got := consume(t, outsider, o.QueueURL, 1); dataN(got[0]) != 3 {
		t.Errorf("outsider got %s, want event n=3", got[0].Data)
	}
	if got := receiveOnce(t, e.env, l.QueueURL); len(got) != 0 {
		t.Errorf("the listener got %d events published after its subscription was ended", len(got))
	}
}

// propagationBound is how long after its answer a subscription change
// applies to every event (README, API).
const propagationBound = 2 * time.Second

// numberedEvents are n events of producer carrying from, from+1, ... in data.n.
func numberedEvents(producer string, from, n int) []client.Event {
	out := make([]client.Event, n)
	for i := range out {
		out[i] = client.Event{AgentID: producer, EventType: "counted", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, from+i))}
	}
	return out
}

// consume reads n messages from the caller's own queue with the client's
// Consumer, with the caller's own credentials.
func consume(t *testing.T, c caller, queueURL string, n int) []event.Message {
	t.Helper()
	return consumeUntil(t, c, queueURL, func(m []event.Message) bool { return len(m) >= n })
}

// consumeUntil runs a Consumer on the caller's queue until done holds of
// what it received, failing the test after deliveryTimeout.
func consumeUntil(t *testing.T, c caller, queueURL string, done func([]event.Message) bool) []event.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	var got []event.Message
	stopped := make(chan error, 1)
	go func() {
		stopped <- (&client.Consumer{Queue: c.sqs, QueueURL: queueURL}).Run(ctx, func(_ context.Context, m event.Message) error {
			got = append(got, m)
			if done(got) {
				cancel()
			}
			return nil
		})
	}()
	if err := <-stopped; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if !done(got) {
		t.Fatalf("queue %s: timed out after %s with %d messages", queueURL, deliveryTimeout, len(got))
	}
	return got
}

// TestAuthTokens: every kind of bad token is refused with 401 through the
// production wiring, a token naming a foreign host is never sent there,
// and an STS outage is a 503 with Retry-After.
func TestAuthTokens(t *testing.T) {
	t.Parallel()
	e := newIAMEnv(t)
	s := e.start(t, "tokens")
	ctx := context.Background()
	alice := e.caller(t, s, e.sts.Add(t, "arn:aws:iam::111111111111:user/"+awstest.Name(t, "alice")))
	good, err := alice.client.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := client.New(client.Config{URL: s.url, AWS: e.sts.Config(t, alice.id), Audience: "another-deployment"}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var foreignHits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { foreignHits.Add(1) }))
	defer foreign.Close()
	fu, _ := url.Parse(foreign.URL)

	register := map[string]string{"resourceArn": alice.id.ARN}
	for _, tc := range []struct {
		name, token, says string
	}{
		{"another audience", other, "STS refused"},
		{"expired", awstest.EditToken(t, good, awstest.SetParam("X-Amz-Date", time.Now().Add(-20*time.Minute).UTC().Format("20060102T150405Z"))), "expired"},
		{"tampered signature", awstest.EditToken(t, good, awstest.FlipSignature), "STS refused"},
		{"foreign host", awstest.EditToken(t, good, func(u *url.URL) { u.Host = fu.Host }), "verifies tokens only with STS at " + e.sts.URL},
		{"not a token", "abc", "fanout-v1."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msg, hdr := rawCall(t, "POST", s.url+"/agents", "Bearer "+tc.token, register)
			if status != 401 || !strings.Contains(msg, tc.says) || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("POST /agents: %d %q, want 401 saying %q", status, msg, tc.says)
			}
		})
	}
	if foreignHits.Load() != 0 {
		t.Errorf("the foreign host got %d requests, want none", foreignHits.Load())
	}
	if status, msg, _ := rawCall(t, "POST", s.url+"/agents", "Bearer "+good, register); status != 200 {
		t.Fatalf("the good token: %d %q", status, msg)
	}

	// STS down: a token not yet verified gets 503 with Retry-After (never
	// 401 or 500); one verified before keeps working from the cache.
	fresh := e.caller(t, s, e.sts.Add(t, "arn:aws:iam::111111111111:user/"+awstest.Name(t, "bob")))
	freshToken, _ := fresh.client.Token(ctx)
	e.sts.SetDown(true)
	status, msg, hdr := rawCall(t, "POST", s.url+"/agents", "Bearer "+freshToken, map[string]string{"resourceArn": fresh.id.ARN})
	if status != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(msg, "STS is unavailable") {
		t.Errorf("STS down: %d %q (Retry-After %q), want 503 with Retry-After", status, msg, hdr.Get("Retry-After"))
	}
	if status, msg, _ := rawCall(t, "POST", s.url+"/agents", "Bearer "+good, register); status != 200 {
		t.Errorf("a verified token while STS is down: %d %q, want 200 from the cache", status, msg)
	}
	e.sts.SetDown(false)
	if status, msg, _ := rawCall(t, "POST", s.url+"/agents", "Bearer "+freshToken, map[string]string{"resourceArn": fresh.id.ARN}); status != 200 {
		t.Errorf("STS back: %d %q, want 200", status, msg)
	}
}

// TestClientRoundTrip: a producer and two agents on the client package
// alone, through the production wiring with FANOUT_AUTH=iam: one agent
// relays what it consumes as derived events, the other receives them; the
// events delivered are the same as without authentication.
func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	e := newIAMEnv(t)
	s := e.start(t, "client")
	ctx := context.Background()
	producer, producerARN := e.roleCaller(t, s, "111111111111", "producer")
	relay, relayARN := e.roleCaller(t, s, "111111111111", "relay")
	follower, followerARN := e.roleCaller(t, s, "111111111111", "follower")
	p, err := producer.client.Register(ctx, producerARN)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.client.Register(ctx, relayARN)
	if err != nil {
		t.Fatal(err)
	}
	f, err := follower.client.Register(ctx, followerARN)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.client.Subscribe(ctx, r.AgentID, p.AgentID); err != nil {
		t.Fatal(err)
	}
	if err := follower.client.Subscribe(ctx, f.AgentID, r.AgentID); err != nil {
		t.Fatal(err)
	}

	const n = 20
	rs, err := producer.client.Publish(ctx, numberedEvents(p.AgentID, 0, n)...)
	if err != nil || len(rs) != n {
		t.Fatalf("Publish: %d receipts, %v", len(rs), err)
	}
	relayed := 0
	consumeUntil(t, relay, r.QueueURL, func(msgs []event.Message) bool {
		for ; relayed < len(msgs); relayed++ {
			m := msgs[relayed]
			// The derived event's id comes from the source's: a redelivery
			// relays nothing twice.
			if _, err := relay.client.Publish(ctx, client.Event{AgentID: r.AgentID, EventID: "from-" + m.EventID, EventType: "relayed", Data: m.Data}); err != nil {
				t.Fatalf("relay Publish: %v", err)
			}
		}
		return relayed >= n
	})
	msgs := consume(t, follower, f.QueueURL, n)
	checkExactlyOnceInOrder(t, f.AgentID, msgs, map[string]int{r.AgentID: n})
	for _, m := range msgs {
		if !strings.HasPrefix(m.EventID, "from-") || !slices.ContainsFunc(rs, func(rc event.Receipt) bool { return "from-"+rc.EventID == m.EventID }) {
			t.Errorf("follower got event %s, want one derived from a producer's event", m.EventID)
		}
	}
}
