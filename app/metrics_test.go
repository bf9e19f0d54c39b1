package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// scrapeMetrics reads GET /metrics of s.
func scrapeMetrics(t testing.TB, s *service) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := apiClient.Get(s.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series is one metric's value with the given labels (a subset of its
// labels; the first match counts): a counter's or gauge's value, a
// histogram's sample count.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// metricCheck is one expectation on a scrape.
type metricCheck struct {
	name    string
	labels  []string
	atLeast float64
}

func (c metricCheck) String() string {
	return fmt.Sprintf("%s%v >= %g", c.name, c.labels, c.atLeast)
}

// unmet returns what the scrape lacks of checks.
func unmet(fams map[string]*dto.MetricFamily, checks ...metricCheck) []string {
	var out []string
	for _, c := range checks {
		v, ok := series(fams, c.name, c.labels...)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("no series %s%v", c.name, c.labels))
		case v < c.atLeast:
			out = append(out, fmt.Sprintf("%s%v = %g, want at least %g", c.name, c.labels, v, c.atLeast))
		}
	}
	return out
}

// checkMetrics fails t for each check the scrape does not meet.
func checkMetrics(t testing.TB, fams map[string]*dto.MetricFamily, checks ...metricCheck) {
	t.Helper()
	for _, u := range unmet(fams, checks...) {
		t.Errorf("/metrics: %s", u)
	}
}

// waitMetrics scrapes s until every check holds (the workers count a
// batch only after its read interval), failing t with what is still
// missing at the deadline. It returns the last scrape.
func waitMetrics(t testing.TB, s *service, checks ...metricCheck) map[string]*dto.MetricFamily {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	var missing []string
	deadline := time.Now().Add(deliveryTimeout)
	for {
		fams = scrapeMetrics(t, s)
		if missing = unmet(fams, checks...); len(missing) == 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, /metrics still has:\n%s", deliveryTimeout, strings.Join(missing, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsAfterRoundTrip: after one round trip (register, subscribe,
// publish, deliver) GET /metrics shows every metric fanout defines, and
// the series of what happened moved.
func TestMetricsAfterRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "metrics")

	fresh := scrapeMetrics(t, s)
	checkMetrics(t, fresh,
		metricCheck{name: metrics.EventsPosted, labels: []string{"outcome", "accepted"}},
		metricCheck{name: metrics.DeadLetters, labels: []string{"stage", "publisher", "reason", metrics.ReasonQueueMissing}},
		metricCheck{name: metrics.CacheLookups, labels: []string{"cache", "subscribers", "result", "miss"}},
		metricCheck{name: metrics.HTTPRequests, labels: []string{"route", "/events", "status", "503"}},
		metricCheck{name: metrics.ReplaysStarted},
		metricCheck{name: metrics.ReplaysFinished, labels: []string{"state", store.ReplayDone}},
		metricCheck{name: metrics.ReplaysFinished, labels: []string{"state", store.ReplayFailed}},
		metricCheck{name: metrics.ReplaysFinished, labels: []string{"state", store.ReplayCancelled}},
		metricCheck{name: metrics.ReplayMessages},
	)
	if v, _ := series(fresh, metrics.EventsPosted, "outcome", "accepted"); v != 0 {
		t.Errorf("a fresh task counts %g accepted events, want 0", v)
	}

	producer, sub, gone := register(t, s, "p"), register(t, s, "s"), register(t, s, "gone")
	subscribe(t, s, sub, producer)
	subscribe(t, s, gone, producer)
	if _, err := e.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(gone.QueueURL)}); err != nil {
		t.Fatal(err)
	}
	e.putRecord(t, producer.ID, "garbage") // set aside by the aggregator: not an event
	publish(t, s, numbered(producer, 0, 3)...)
	publish(t, s, numbered(producer, 3, 1)...) // the producer's second lookup hits the agent cache
	repeat := numbered(producer, 4, 1)
	repeat[0].EventID = "metrics-repeat"
	publish(t, s, repeat...)
	publish(t, s, repeat...)                                                          // the same eventId again: dropped by the aggregator
	mustCall(t, 400, "POST", s.url+"/events", map[string]any{"agentId": producer.ID}) // no eventType, no data
	receive(t, e, sub.QueueURL, deliveryTimeout, count(5))

	fams := waitMetrics(t, s,
		metricCheck{metrics.HTTPRequests, []string{"method", "POST", "route", "/events", "status", "202"}, 2},
		metricCheck{metrics.HTTPRequests, []string{"method", "POST", "route", "/agents", "status", "200"}, 2},
		metricCheck{metrics.HTTPRequests, []string{"method", "PUT", "route", "/agents/{listenerId}/subscriptions/{producerId}", "status", "204"}, 1},
		metricCheck{metrics.HTTPRequestDuration, []string{"method", "POST", "route", "/events"}, 3},
		metricCheck{metrics.EventsPosted, []string{"outcome", "accepted"}, 4},
		metricCheck{metrics.EventsPosted, []string{"outcome", "invalid"}, 1},
		metricCheck{metrics.AWSRequests, []string{"service", "Kinesis", "operation", "PutRecords", "outcome", "ok"}, 2},
		metricCheck{metrics.AWSRequests, []string{"service", "SQS", "operation", "SendMessageBatch", "outcome", "ok"}, 1},
		metricCheck{metrics.AWSRequests, []string{"service", "DynamoDB", "operation", "PutItem", "outcome", "ok"}, 4},
		metricCheck{metrics.AWSRequests, []string{"service", "DynamoDB Streams", "operation", "GetRecords", "outcome", "ok"}, 1},
		metricCheck{metrics.AWSRequests, []string{"service", "Kinesis", "operation", "PutRecords", "outcome", "throttled"}, 0},
		metricCheck{metrics.AWSRetries, []string{"service", "Kinesis", "operation", "PutRecords"}, 0},
		metricCheck{metrics.CacheLookups, []string{"cache", "agents", "result", "hit"}, 1},
		metricCheck{metrics.CacheLookups, []string{"cache", "agents", "result", "miss"}, 1},
		metricCheck{metrics.LeasesHeld, []string{"worker", metrics.WorkerAggregator}, 1},
		metricCheck{metrics.LeasesHeld, []string{"worker", metrics.WorkerPublisher}, 1},
		metricCheck{metrics.LeaseRenewals, []string{"worker", metrics.WorkerAggregator}, 0},
		metricCheck{metrics.RecordsRead, []string{"worker", metrics.WorkerAggregator}, 2},
		// One stream record per item: the 5 events of each subscriber may
		// be packed into one.
		metricCheck{metrics.RecordsRead, []string{"worker", metrics.WorkerPublisher}, 2},
		metricCheck{metrics.RecordBytesRead, []string{"worker", metrics.WorkerAggregator}, 100},
		metricCheck{metrics.GetRecordsDuration, []string{"worker", metrics.WorkerAggregator}, 1},
		metricCheck{metrics.ProcessRecordsDuration, []string{"worker", metrics.WorkerPublisher}, 1},
		metricCheck{metrics.IteratorAge, []string{"worker", metrics.WorkerAggregator}, 0},
		metricCheck{metrics.IteratorAge, []string{"worker", metrics.WorkerPublisher}, 0},
		metricCheck{metrics.Deliveries, nil, 5},
		metricCheck{metrics.DeliveryLatency, nil, 5},
		metricCheck{metrics.DeadLetters, []string{"stage", metrics.StageAggregator, "reason", metrics.ReasonUnparsable}, 1},
		metricCheck{metrics.DeadLetters, []string{"stage", metrics.StagePublisher, "reason", metrics.ReasonQueueMissing}, 5},
		metricCheck{metrics.DuplicatesDropped, []string{"stage", metrics.StageAggregator}, 1},
		metricCheck{metrics.CacheLookups, []string{"cache", metrics.CacheSubscribers, "result", "miss"}, 1},
		metricCheck{metrics.CacheLookups, []string{"cache", metrics.CacheSubscribers, "result", "hit"}, 1},
		metricCheck{metrics.RecordAge, []string{"worker", metrics.WorkerAggregator}, 0},
		metricCheck{metrics.RecordAge, []string{"worker", metrics.WorkerPublisher}, 0},
		metricCheck{"go_goroutines", nil, 1},
	)
	for _, d := range metrics.New().Definitions() {
		if _, ok := fams[d.Name]; !ok {
			t.Errorf("/metrics lacks %s after a round trip", d.Name)
		}
	}
	// Latency: every delivery is timed from its record's arrival in
	// Kinesis, so the sum is positive and under the wait above.
	if h := fams[metrics.DeliveryLatency].GetMetric()[0].GetHistogram(); h.GetSampleSum() <= 0 || h.GetSampleSum() > float64(h.GetSampleCount())*deliveryTimeout.Seconds() {
		t.Errorf("delivery latency sum %gs over %d deliveries: want a positive time below %s each", h.GetSampleSum(), h.GetSampleCount(), deliveryTimeout)
	}
	if v, _ := series(fams, metrics.DuplicatesDropped, "stage", metrics.StageAggregator); v != 1 {
		t.Errorf("duplicates dropped = %g, want 1 (one repeated eventId)", v)
	}
	// Bounded labels: no agent id is a label value.
	body := scrapeText(t, s)
	for _, id := range []string{producer.ID, sub.ID, gone.ID} {
		if strings.Contains(body, id) {
			t.Errorf("/metrics holds agent id %s", id)
		}
	}
}

func scrapeText(t testing.TB, s *service) string {
	t.Helper()
	resp, err := apiClient.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// throttlingClient answers the first n Kinesis PutRecords attempts as
// Kinesis does when a shard is over its limit, and passes the rest on:
// the emulator never throttles.
type throttlingClient struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
	remaining atomic.Int32
}

func (c *throttlingClient) Do(req *http.Request) (*http.Response, error) {
	if req.Header.Get("X-Amz-Target") == "Kinesis_20131202.PutRecords" && c.remaining.Add(-1) >= 0 {
		if req.Body != nil {
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
		}
		body := `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}`
		return &http.Response{
			StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amzn-Errortype": {"ProvisionedThroughputExceededException"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       req,
		}, nil
	}
	return c.next.Do(req)
}

// TestMetricsCountThrottlesAndRetries: Kinesis throttling PutRecords twice
// shows as two throttled attempts and two retries of that operation, and
// the events are still accepted (the SDK retried them).
func TestMetricsCountThrottlesAndRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "setup")
	producer := register(t, s, "p")
	s.stop(t)

	throttle := &throttlingClient{next: awshttp.NewBuildableClient()}
	throttle.remaining.Store(2)
	e.awsCfg.HTTPClient = throttle
	s = e.start(t, "throttled")
	publish(t, s, numbered(producer, 0, 1)...)

	fams := scrapeMetrics(t, s)
	checkMetrics(t, fams,
		metricCheck{metrics.AWSRequests, []string{"service", "Kinesis", "operation", "PutRecords", "outcome", "throttled"}, 2},
		metricCheck{metrics.AWSRequests, []string{"service", "Kinesis", "operation", "PutRecords", "outcome", "ok"}, 1},
		metricCheck{metrics.AWSRetries, []string{"service", "Kinesis", "operation", "PutRecords"}, 2},
		metricCheck{metrics.EventsPosted, []string{"outcome", "accepted"}, 1},
	)
	if v, _ := series(fams, metrics.AWSRequests, "service", "Kinesis", "operation", "PutRecords", "outcome", "throttled"); v != 2 {
		t.Errorf("throttled PutRecords attempts = %g, want exactly 2", v)
	}
}

// entryFailingClient answers the first two calls of each batch operation
// (Kinesis PutRecords, SQS SendMessageBatch) as AWS does when it fails
// every entry one by one: a 200 answer whose entries failed, throttled in
// the first call and with an internal error in the second. Nothing of
// those calls is written. Other calls pass through.
type entryFailingClient struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}

	mu     sync.Mutex
	calls  map[string]int // X-Amz-Target -> calls seen
	failed map[string]int // error code -> entries failed with it
}

func (c *entryFailingClient) Do(req *http.Request) (*http.Response, error) {
	codes := map[string][2]string{
		"Kinesis_20131202.PutRecords": {"ProvisionedThroughputExceededException", "InternalFailure"},
		"AmazonSQS.SendMessageBatch":  {"ThrottlingException", "InternalError"},
	}
	target := req.Header.Get("X-Amz-Target")
	fail, ok := codes[target]
	if !ok {
		return c.next.Do(req)
	}
	c.mu.Lock()
	if c.calls == nil {
		c.calls, c.failed = map[string]int{}, map[string]int{}
	}
	n := c.calls[target]
	c.calls[target]++
	c.mu.Unlock()
	if n >= len(fail) {
		return c.next.Do(req)
	}
	var in struct {
		Records []json.RawMessage
		Entries []struct{ Id string }
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("%s request: %w", target, err)
	}
	code := fail[n]
	var out any
	entries := 0
	if target == "AmazonSQS.SendMessageBatch" {
		failed := []map[string]any{}
		for _, e := range in.Entries {
			failed = append(failed, map[string]any{"Id": e.Id, "Code": code, "Message": "entry failed", "SenderFault": false})
		}
		out, entries = map[string]any{"Successful": []any{}, "Failed": failed}, len(failed)
	} else {
		records := []map[string]any{}
		for range in.Records {
			records = append(records, map[string]any{"ErrorCode": code, "ErrorMessage": "entry failed"})
		}
		out, entries = map[string]any{"FailedRecordCount": len(records), "Records": records}, len(records)
	}
	c.mu.Lock()
	c.failed[code] += entries
	c.mu.Unlock()
	b, _ := json.Marshal(out)
	contentType := "application/x-amz-json-1.1"
	if target == "AmazonSQS.SendMessageBatch" {
		contentType = "application/x-amz-json-1.0"
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {contentType}},
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       req,
	}, nil
}

// failedWith returns how many entries the client failed with code.
func (c *entryFailingClient) failedWith(code string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(c.failed[code])
}

// TestMetricsCountFailedEntries: entries of PutRecords and
// SendMessageBatch that AWS fails one by one inside a 200 answer count as
// failed entries, throttled or error by their code, while the attempts
// themselves count ok; the events still arrive (ingest and publisher
// resend the entries).
func TestMetricsCountFailedEntries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	faults := &entryFailingClient{next: awshttp.NewBuildableClient()}
	e.awsCfg.HTTPClient = faults
	s := e.start(t, "entries")

	fresh := scrapeMetrics(t, s)
	for _, op := range [][2]string{{"Kinesis", "PutRecords"}, {"SQS", "SendMessageBatch"}} {
		for _, o := range []string{metrics.AWSThrottled, metrics.AWSError} {
			if v, ok := series(fresh, metrics.AWSEntriesFailed, "service", op[0], "operation", op[1], "outcome", o); !ok || v != 0 {
				t.Errorf("a fresh task's %s{%s %s %s} = %g (present: %v), want 0", metrics.AWSEntriesFailed, op[0], op[1], o, v, ok)
			}
		}
	}

	producer, sub := register(t, s, "p"), register(t, s, "s")
	subscribe(t, s, sub, producer)
	publish(t, s, numbered(producer, 0, 3)...)
	receive(t, e, sub.QueueURL, deliveryTimeout, count(3))

	fams := waitMetrics(t, s,
		metricCheck{metrics.AWSRequests, []string{"service", "Kinesis", "operation", "PutRecords", "outcome", "ok"}, 3},
		metricCheck{metrics.AWSRequests, []string{"service", "SQS", "operation", "SendMessageBatch", "outcome", "ok"}, 3},
	)
	for _, c := range []struct {
		service, op, outcome, code string
	}{
		{"Kinesis", "PutRecords", metrics.AWSThrottled, "ProvisionedThroughputExceededException"},
		{"Kinesis", "PutRecords", metrics.AWSError, "InternalFailure"},
		{"SQS", "SendMessageBatch", metrics.AWSThrottled, "ThrottlingException"},
		{"SQS", "SendMessageBatch", metrics.AWSError, "InternalError"},
	} {
		want := faults.failedWith(c.code)
		if want == 0 {
			t.Fatalf("the test's client failed no entry with %s", c.code)
		}
		if v, _ := series(fams, metrics.AWSEntriesFailed, "service", c.service, "operation", c.op, "outcome", c.outcome); v != want {
			t.Errorf("%s{%s %s %s} = %g, want %g (entries failed with %s)", metrics.AWSEntriesFailed, c.service, c.op, c.outcome, v, want, c.code)
		}
	}
	for _, op := range [][2]string{{"Kinesis", "PutRecords"}, {"SQS", "SendMessageBatch"}} {
		if v, _ := series(fams, metrics.AWSRequests, "service", op[0], "operation", op[1], "outcome", metrics.AWSThrottled); v != 0 {
			t.Errorf("%s{%s %s throttled} = %g, want 0: the answers were 200s", metrics.AWSRequests, op[0], op[1], v)
		}
	}
}
