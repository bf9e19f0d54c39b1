package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/fanout/fanout/internal/openapitest"
	"github.com/fanout/fanout/metrics"
)

var loadDoc = sync.OnceValues(func() (*openapitest.Checker, error) { return openapitest.New(openAPIDoc) })

// apiDoc is the checker of the embedded document; every answer fixture.do
// gets goes through it, so a status or body a handler gains without the
// document fails the handler's tests.
func apiDoc(t testing.TB) *openapitest.Checker {
	t.Helper()
	c, err := loadDoc()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRoutesMatchOpenAPI: the router's routes and the document's
// operations are the same set, so neither a route nor a documented path
// can be added alone.
func TestRoutesMatchOpenAPI(t *testing.T) {
	apiDoc(t) // the document loads and is valid OpenAPI
	f := newFixture(t, Config{})
	var routes []string
	err := chi.Walk(f.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, op := range documentedOperations() {
		documented = append(documented, op.method+" "+op.path)
		if len(op.statuses) == 0 {
			t.Errorf("%s %s documents no status", op.method, op.path)
		}
	}
	slices.Sort(routes)
	slices.Sort(documented)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in server/openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("server/openapi.json documents %s, which the router does not serve", d)
		}
	}
}

// TestOpenAPIServed: GET /openapi.json answers the kept document.
func TestOpenAPIServed(t *testing.T) {
	f := newFixture(t, Config{})
	rec := f.do(t, "GET", "/openapi.json", "", nil)
	checkStatus(t, rec, http.StatusOK)
	if !bytes.Equal(rec.Body.Bytes(), openAPIDoc) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json = %q (%d bytes), want server/openapi.json as application/json", rec.Header().Get("Content-Type"), rec.Body.Len())
	}
}

// TestUndocumentedAnswerFails: the checker the tests rely on refuses a
// status the document does not list, so the tests above are not vacuous.
func TestUndocumentedAnswerFails(t *testing.T) {
	req := httptest.NewRequest("GET", "/agents/a1", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	if err := apiDoc(t).Check(req, http.StatusTeapot, h, []byte(`{"error":"x"}`)); err == nil {
		t.Error("a 418 from GET /agents/{agentId} passed the check")
	}
	if err := apiDoc(t).Check(req, http.StatusOK, h, []byte(`{"agentId":"a1"}`)); err == nil {
		t.Error("an agent body without queueUrl passed the check")
	}
}

// TestMetricsCountRequestsAndEvents: GET /metrics shows requests by route
// pattern and status (never the path) and posted events by outcome, with
// every documented route's series there from the start.
func TestMetricsCountRequestsAndEvents(t *testing.T) {
	m := metrics.New()
	f := newFixture(t, Config{Metrics: m}, "p1")
	before := scrape(t, f)
	for _, want := range []string{
		`fanout_http_requests_total{method="POST",route="/events",status="202"} 0`,
		`fanout_http_requests_total{method="GET",route="/agents/{agentId}",status="404"} 0`,
		`fanout_events_posted_total{outcome="accepted"} 0`,
		`fanout_events_posted_total{outcome="invalid"} 0`,
	} {
		if !strings.Contains(before, want+"\n") {
			t.Errorf("before any request, /metrics lacks %s", want)
		}
	}

	checkStatus(t, f.doJSON(t, "POST", "/events", `[{"agentId":"p1","eventType":"t","data":1},{"agentId":"p1","eventType":"t","data":2}]`), 202)
	checkStatus(t, f.doJSON(t, "POST", "/events", `[{"agentId":"p1","eventType":"t","data":1},{"agentId":"p1","data":2},{"agentId":"p1","eventType":"t","data":3}]`), 400)
	checkStatus(t, f.doJSON(t, "POST", "/events", `{"agentId":"nobody","eventType":"t","data":1}`), 404)
	checkStatus(t, f.do(t, "GET", "/agents/secret-agent-id", "", nil), 404)
	checkStatus(t, f.do(t, "GET", "/no/such/path", "", nil), 404)

	after := scrape(t, f)
	for _, want := range []string{
		`fanout_http_requests_total{method="POST",route="/events",status="202"} 1`,
		`fanout_http_requests_total{method="POST",route="/events",status="400"} 1`,
		`fanout_http_requests_total{method="GET",route="/agents/{agentId}",status="404"} 1`,
		`fanout_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`fanout_http_request_duration_seconds_count{method="POST",route="/events"} 3`,
		`fanout_events_posted_total{outcome="accepted"} 2`,
		`fanout_events_posted_total{outcome="invalid"} 3`,
		`fanout_events_posted_total{outcome="unknown_producer"} 1`,
	} {
		if !strings.Contains(after, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range []string{"secret-agent-id", "/no/such/path"} {
		if strings.Contains(after, leak) {
			t.Errorf("/metrics names %q: a label holds a path", leak)
		}
	}
}

func scrape(t *testing.T, f *fixture) string {
	t.Helper()
	rec := f.do(t, "GET", "/metrics", "", nil)
	checkStatus(t, rec, http.StatusOK)
	return rec.Body.String()
}

// TestMetricsCountForbiddenEvents: events a caller may not publish (not
// its own) count as forbidden, and none is published.
func TestMetricsCountForbiddenEvents(t *testing.T) {
	m := metrics.New()
	f := newFixture(t, Config{Metrics: m, Auth: Auth{Verifier: tokenVerifier{}}}, "p", "l")
	req := httptest.NewRequest("POST", "/events", strings.NewReader(`[{"agentId":"p","eventType":"t","data":1},{"agentId":"p","eventType":"t","data":2}]`))
	req.Header.Set("Authorization", "Bearer arn:aws:sts::123456789012:assumed-role/l/s") // agent l, not producer p
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	checkStatus(t, rec, 403)
	if n := len(f.pub.published()); n != 0 {
		t.Errorf("%d publishes for a caller that is not the producer, want none", n)
	}
	if after := scrape(t, f); !strings.Contains(after, `fanout_events_posted_total{outcome="forbidden"} 2`+"\n") {
		t.Errorf("/metrics lacks fanout_events_posted_total{outcome=\"forbidden\"} 2")
	}
}
