// Package metrics is fanout's Prometheus registry: the definition of every
// metric the service exports, typed methods the other packages record
// through, the GET /metrics handler, and the CloudWatch Embedded Metric
// Format lines that deploy/'s alarms read (emf.go). It owns its own
// registry (never the client library's global one), so several tasks in
// one process (the tests) each export their own figures.
//
// Label values are bounded sets: routes, statuses, AWS operations, shard
// ids, stages and reason classes. Never agent ids, event ids or anything a
// caller chooses.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Names of the metrics. They are stable: dashboards, alarms and the
// README's "Operating it" table use them.
const (
	HTTPRequests           = "fanout_http_requests_total"
	HTTPRequestDuration    = "fanout_http_request_duration_seconds"
	EventsPosted           = "fanout_events_posted_total"
	Deliveries             = "fanout_deliveries_total"
	DeliveryLatency        = "fanout_delivery_latency_seconds"
	DeadLetters            = "fanout_dead_letters_total"
	DuplicatesDropped      = "fanout_duplicates_dropped_total"
	EventsFiltered         = "fanout_events_filtered_total"
	AWSRequests            = "fanout_aws_requests_total"
	AWSRetries             = "fanout_aws_retries_total"
	AWSEntriesFailed       = "fanout_aws_entries_failed_total"
	CacheLookups           = "fanout_cache_lookups_total"
	LeasesHeld             = "fanout_kcl_leases_held"
	LeaseRenewals          = "fanout_kcl_lease_renewals_total"
	RecordsRead            = "fanout_kcl_records_total"
	RecordBytesRead        = "fanout_kcl_record_bytes_total"
	GetRecordsDuration     = "fanout_kcl_get_records_duration_seconds"
	ProcessRecordsDuration = "fanout_kcl_process_records_duration_seconds"
	IteratorAge            = "fanout_shard_iterator_age_seconds"
	RecordAge              = "fanout_shard_record_age_seconds"
	ReplaysStarted         = "fanout_replays_started_total"
	ReplaysFinished        = "fanout_replays_finished_total"
	ReplayMessages         = "fanout_replay_messages_total"
)

// Outcomes of events posted to the API (EventsPosted's outcome label).
const (
	OutcomeAccepted        = "accepted"
	OutcomeInvalid         = "invalid"
	OutcomeUnknownProducer = "unknown_producer"
	OutcomeTooLarge        = "too_large"
	OutcomeUnavailable     = "unavailable"
	OutcomeForbidden       = "forbidden"
)

// Outcomes of one AWS request attempt (AWSRequests' outcome label).
const (
	AWSOk        = "ok"
	AWSError     = "error"
	AWSThrottled = "throttled"
)

// Final states of a replay (ReplaysFinished' state label): those of
// package store's Replay.
const (
	ReplayDone      = "done"
	ReplayFailed    = "failed"
	ReplayCancelled = "cancelled"
)

// Workers, stages and caches: the values of the worker, stage and cache
// labels.
const (
	WorkerAggregator = "aggregator"
	WorkerPublisher  = "publisher"

	StageAggregator = "aggregator"
	StagePublisher  = "publisher"

	CacheAgents      = "agents"
	CacheSubscribers = "subscribers"
	CacheProducers   = "producers"
)

// Kind is a metric's Prometheus type.
type Kind string

// The kinds of metric fanout defines.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
)

// Definition describes one metric: what the README documents and what
// deploy/ may alarm on.
type Definition struct {
	Name   string
	Kind   Kind
	Help   string
	Labels []string
	// Buckets are a histogram's upper bounds, in the metric's unit.
	Buckets []float64
}

// Bucket bounds. Alarm thresholds sit on a bound, so a percentile read from
// bucket counts (emf.go) is exact at the threshold.
var (
	// latencyBuckets: a delivery normally takes 0.1-0.5 s (two KCL hops of
	// ~200 ms polling); the tail shows a stuck shard or a lease move.
	latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	// requestBuckets: most API calls are one DynamoDB round trip; the top
	// bound is the 30 s request timeout.
	requestBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// kclBuckets: one GetRecords or one batch's processing.
	kclBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// Metrics is fanout's registry and its metrics. Its methods are safe for
// concurrent use. A nil *Metrics records nothing, so tests of other
// packages may pass none.
type Metrics struct {
	reg  *prometheus.Registry
	defs []Definition

	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	eventsPosted    *prometheus.CounterVec
	deliveries      prometheus.Counter
	deliveryLatency prometheus.Histogram
	deadLetters     *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	filtered        prometheus.Counter
	awsRequests     *prometheus.CounterVec
	awsRetries      *prometheus.CounterVec
	awsEntries      *prometheus.CounterVec
	cacheLookups    *prometheus.CounterVec
	leasesHeld      *prometheus.GaugeVec
	leaseRenewals   *prometheus.CounterVec
	recordsRead     *prometheus.CounterVec
	bytesRead       *prometheus.CounterVec
	getRecordsTime  *prometheus.HistogramVec
	processTime     *prometheus.HistogramVec
	iteratorAge     *prometheus.GaugeVec
	recordAge       *prometheus.GaugeVec
	replaysStarted  prometheus.Counter
	replaysFinished *prometheus.CounterVec
	replayMessages  prometheus.Counter

	emf *emfState

	mu     sync.Mutex
	leases map[string]map[string]bool // worker -> shards held
}

// New returns a registry with every fanout metric, the Go runtime's and
// the process's, and the series whose labels are known in advance at zero.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), leases: map[string]map[string]bool{}, emf: newEMFState()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.httpRequests = m.counterVec(HTTPRequests, "HTTP requests answered, by method, route (the router's pattern, \"unmatched\" for none) and status code.", "method", "route", "status")
	m.httpDuration = m.histogramVec(HTTPRequestDuration, "Time from a request's arrival to its answer, by method and route.", requestBuckets, "method", "route")
	m.eventsPosted = m.counterVec(EventsPosted, "Events in POST /events requests, by outcome: accepted (in Kinesis, 202), invalid (400, 415), unknown_producer (404), too_large (413), forbidden (401, 403: not the caller's events), unavailable (503). Every event of a rejected request counts; a body that is not an event or a list of them counts as one.", "outcome")
	m.deliveries = m.counter(Deliveries, "Messages SQS accepted into subscribers' queues (one per event per subscriber; a re-send after a retry counts again).")
	m.deliveryLatency = m.histogram(DeliveryLatency, "Time from an event's arrival in Kinesis (its acceptance) to SQS accepting its message, per delivered message.", latencyBuckets)
	m.deadLetters = m.counterVec(DeadLetters, "Records and messages set aside in the dead-letter table, by stage (aggregator, publisher) and reason class.", "stage", "reason")
	m.filtered = m.counter(EventsFiltered, "Deliveries a subscription filter turned away (one per event per subscriber whose filter it fails): each cost no SubscriberEvents write and no SQS message.")
	m.duplicates = m.counterVec(DuplicatesDropped, "Events dropped because their producer had already sent that eventId (within 24 h), by stage.", "stage")
	m.awsRequests = m.counterVec(AWSRequests, "AWS API request attempts (retries included: what AWS bills and throttles), by service, operation and outcome (ok, error, throttled).", "service", "operation", "outcome")
	m.awsRetries = m.counterVec(AWSRetries, "AWS API request attempts that were retries of an earlier attempt, by service and operation.", "service", "operation")
	m.awsEntries = m.counterVec(AWSEntriesFailed, "Entries of AWS batch calls (Kinesis PutRecords, SQS SendMessageBatch) that AWS failed one by one in an answer that succeeded as a whole (which fanout_aws_requests_total counts ok), by service, operation and outcome (throttled, error); the caller resends or sets aside each.", "service", "operation", "outcome")
	m.cacheLookups = m.counterVec(CacheLookups, "Cache lookups, by cache (agents: the store's agents, API and publisher; subscribers: the aggregator's subscriber lists; producers: the aggregator's check of producers without subscribers) and result (hit, miss).", "cache", "result")
	m.leasesHeld = m.gaugeVec(LeasesHeld, "Shard leases this task holds, by worker (aggregator: Kinesis shards, publisher: DynamoDB stream shards).", "worker")
	m.leaseRenewals = m.counterVec(LeaseRenewals, "Lease renewals by this task, by worker.", "worker")
	m.recordsRead = m.counterVec(RecordsRead, "Records read from the worker's stream and handed to the pipeline, by worker.", "worker")
	m.bytesRead = m.counterVec(RecordBytesRead, "Bytes of record data read from the worker's stream, by worker.", "worker")
	m.getRecordsTime = m.histogramVec(GetRecordsDuration, "Duration of one GetRecords read, by worker.", kclBuckets, "worker")
	m.processTime = m.histogramVec(ProcessRecordsDuration, "Time the pipeline took to make one batch durable (and wait out the read interval), by worker.", kclBuckets, "worker")
	m.iteratorAge = m.gaugeVec(IteratorAge, "How far the shard's reader is behind the stream's newest record, as the stream reports it (Kinesis MillisBehindLatest; always 0 for the publisher: DynamoDB Streams reports none), by worker and shard.", "worker", "shard_id")
	m.recordAge = m.gaugeVec(RecordAge, "Age of the newest record of the shard's latest batch when the pipeline took it (0 after an empty read: caught up), by worker and shard.", "worker", "shard_id")
	m.replaysStarted = m.counter(ReplaysStarted, "Replays this task began to run: claimed when new, or taken over from a task that stopped (a replay taken over counts on each task that ran it).")
	m.replaysFinished = m.counterVec(ReplaysFinished, "Replays that ended while this task ran them, by final state: done and failed (this task ended them), cancelled (DELETE seen at its next batch; a replay cancelled while no task ran it is not counted).", "state")
	m.replayMessages = m.counter(ReplayMessages, "Messages SQS accepted for replays (one per event re-delivered; a resend after a take-over counts again).")

	for _, s := range []string{ReplayDone, ReplayFailed, ReplayCancelled} {
		m.replaysFinished.WithLabelValues(s)
	}
	for _, o := range []string{OutcomeAccepted, OutcomeInvalid, OutcomeUnknownProducer, OutcomeTooLarge, OutcomeForbidden, OutcomeUnavailable} {
		m.eventsPosted.WithLabelValues(o)
	}
	for _, w := range []string{WorkerAggregator, WorkerPublisher} {
		m.leasesHeld.WithLabelValues(w)
		m.leaseRenewals.WithLabelValues(w)
		m.recordsRead.WithLabelValues(w)
		m.bytesRead.WithLabelValues(w)
		m.getRecordsTime.WithLabelValues(w)
		m.processTime.WithLabelValues(w)
	}
	for _, c := range []string{CacheAgents, CacheSubscribers, CacheProducers} {
		m.cacheLookups.WithLabelValues(c, "hit")
		m.cacheLookups.WithLabelValues(c, "miss")
	}
	m.duplicates.WithLabelValues(StageAggregator)
	for stage, reasons := range deadLetterReasons() {
		for _, r := range reasons {
			m.deadLetters.WithLabelValues(stage, r)
		}
	}
	return m
}

// Definitions returns every metric fanout defines (besides the Go
// runtime's go_* and the process's process_*), in definition order.
func (m *Metrics) Definitions() []Definition { return slices.Clone(m.defs) }

// Handler serves the registry in the Prometheus exposition formats (an
// empty one for a nil *Metrics).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry behind Handler, for callers that add
// collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) define(d Definition, c prometheus.Collector) {
	m.reg.MustRegister(c)
	m.defs = append(m.defs, d)
}

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.define(Definition{Name: name, Kind: Counter, Help: help}, c)
	return c
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.define(Definition{Name: name, Kind: Counter, Help: help, Labels: labels}, c)
	return c
}

func (m *Metrics) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	m.define(Definition{Name: name, Kind: Gauge, Help: help, Labels: labels}, g)
	return g
}

func (m *Metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	m.define(Definition{Name: name, Kind: Histogram, Help: help, Buckets: buckets}, h)
	return h
}

func (m *Metrics) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.define(Definition{Name: name, Kind: Histogram, Help: help, Labels: labels, Buckets: buckets}, h)
	return h
}

// HTTPRoute creates the series of one route at zero: its duration, and a
// count for each status it is documented to answer.
func (m *Metrics) HTTPRoute(method, route string, statuses []int) {
	if m == nil {
		return
	}
	m.httpDuration.WithLabelValues(method, route)
	for _, s := range statuses {
		m.httpRequests.WithLabelValues(method, route, strconv.Itoa(s))
	}
}

// HTTPRequest records one answered request.
func (m *Metrics) HTTPRequest(method, route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(took.Seconds())
}

// EventsPosted counts n events of one POST /events with its outcome (one
// of the Outcome constants).
func (m *Metrics) EventsPosted(outcome string, n int) {
	if m == nil {
		return
	}
	m.eventsPosted.WithLabelValues(outcome).Add(float64(n))
}

// Delivered records one message SQS accepted, for an event that arrived
// in Kinesis at arrived (zero when unknown: it is counted, not timed).
func (m *Metrics) Delivered(arrived, accepted time.Time) {
	if m == nil {
		return
	}
	m.deliveries.Inc()
	if !arrived.IsZero() {
		m.deliveryLatency.Observe(max(accepted.Sub(arrived), 0).Seconds())
	}
}

// Filtered counts one delivery a subscription filter turned away.
func (m *Metrics) Filtered() {
	if m == nil {
		return
	}
	m.filtered.Inc()
}

// ReplayStarted counts one replay this task began to run.
func (m *Metrics) ReplayStarted() {
	if m == nil {
		return
	}
	m.replaysStarted.Inc()
}

// ReplayFinished counts one replay that ended in state (a Replay state
// constant) while this task ran it.
func (m *Metrics) ReplayFinished(state string) {
	if m == nil {
		return
	}
	m.replaysFinished.WithLabelValues(state).Inc()
}

// Replayed counts n messages SQS accepted for replays.
func (m *Metrics) Replayed(n int) {
	if m == nil {
		return
	}
	m.replayMessages.Add(float64(n))
}

// DuplicateDropped counts one event dropped at stage because its eventId
// was seen before.
func (m *Metrics) DuplicateDropped(stage string) {
	if m == nil {
		return
	}
	m.duplicates.WithLabelValues(stage).Inc()
}

// AWSRequest records one attempt at an AWS operation; retry says it
// repeated an earlier attempt of the same call.
func (m *Metrics) AWSRequest(service, operation, outcome string, retry bool) {
	if m == nil {
		return
	}
	m.awsRequests.WithLabelValues(service, operation, outcome).Inc()
	if retry {
		m.awsRetries.WithLabelValues(service, operation).Inc()
	}
}

// AWSOperation creates the series of one operation fanout calls at zero.
func (m *Metrics) AWSOperation(service, operation string) {
	if m == nil {
		return
	}
	for _, o := range []string{AWSOk, AWSError, AWSThrottled} {
		m.awsRequests.WithLabelValues(service, operation, o)
	}
	m.awsRetries.WithLabelValues(service, operation)
}

// AWSEntryOperation creates the failed-entry series of one batch
// operation at zero.
func (m *Metrics) AWSEntryOperation(service, operation string) {
	if m == nil {
		return
	}
	for _, o := range []string{AWSError, AWSThrottled} {
		m.awsEntries.WithLabelValues(service, operation, o)
	}
}

// AWSEntriesFailed counts n entries of one answer to a batch operation
// that AWS failed, with outcome AWSThrottled or AWSError.
func (m *Metrics) AWSEntriesFailed(service, operation, outcome string, n int) {
	if m == nil {
		return
	}
	m.awsEntries.WithLabelValues(service, operation, outcome).Add(float64(n))
}

// CacheLookup counts one lookup in cache (a Cache constant).
func (m *Metrics) CacheLookup(cache string, hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(cache, result).Inc()
}

// Cache returns the recorder of one cache's lookups.
func (m *Metrics) Cache(cache string) CacheRecorder { return CacheRecorder{m: m, cache: cache} }

// CacheRecorder counts one cache's hits and misses.
type CacheRecorder struct {
	m     *Metrics
	cache string
}

// Lookup counts a hit or a miss.
func (c CacheRecorder) Lookup(hit bool) { c.m.CacheLookup(c.cache, hit) }
