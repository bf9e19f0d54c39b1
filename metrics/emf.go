package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// EMFInterval is how often a task writes its EMF lines: CloudWatch's
// standard resolution, and the period of every alarm in deploy/.
const EMFInterval = time.Minute

// EMF limits (CloudWatch Embedded Metric Format specification): at most
// 100 values per metric in one document. A histogram's observations of one
// interval are written as at most emfMaxSamples values (emfMaxDocs
// documents); past that they are scaled down proportionally, which keeps
// percentiles (what alarms read) and loses the exact count (read
// Deliveries for that).
const (
	emfMaxValues  = 100
	emfMaxDocs    = 10
	emfMaxSamples = emfMaxValues * emfMaxDocs
)

// emfMetric is one metric written as EMF: the dimensions it keeps (every
// other label is aggregated away, to keep CloudWatch's custom metrics few
// and bounded) and how gauges aggregate.
type emfMetric struct {
	name string
	dims []string
	// rollups are further dimension sets (subsets of dims) CloudWatch also
	// publishes the values under: [] is the total over all of dims.
	rollups [][]string
	unit    string
	// maxOf: a gauge's value is the maximum over the dropped labels (lag
	// per worker is its worst shard); otherwise values are summed.
	maxOf bool
}

// StatusClass is the EMF-only dimension of HTTPRequests: the status code's
// class (2xx, 4xx, 5xx), so that 5xx is one CloudWatch metric.
const StatusClass = "status_class"

// emfMetrics are the metrics CloudWatch gets: those deploy/'s alarms and
// dashboard read. The rest are for Prometheus scrapers.
func emfMetrics() []emfMetric {
	return []emfMetric{
		{name: DeliveryLatency, unit: "Seconds"},
		{name: HTTPRequestDuration, unit: "Seconds"},
		{name: HTTPRequests, dims: []string{StatusClass}, unit: "Count"},
		{name: EventsPosted, dims: []string{"outcome"}, unit: "Count"},
		{name: Deliveries, unit: "Count"},
		{name: DeadLetters, dims: []string{"stage"}, rollups: [][]string{{}}, unit: "Count"},
		{name: DuplicatesDropped, unit: "Count"},
		{name: AWSRequests, dims: []string{"service", "outcome"}, rollups: [][]string{{"outcome"}}, unit: "Count"},
		{name: AWSRetries, dims: []string{"service"}, unit: "Count"},
		{name: AWSEntriesFailed, dims: []string{"service", "outcome"}, rollups: [][]string{{"outcome"}}, unit: "Count"},
		{name: RecordAge, dims: []string{"worker"}, unit: "Seconds", maxOf: true},
		{name: IteratorAge, dims: []string{"worker"}, unit: "Seconds", maxOf: true},
		{name: LeasesHeld, dims: []string{"worker"}, unit: "Count"},
		{name: CacheLookups, dims: []string{"cache", "result"}, unit: "Count"},
	}
}

// EMFDimensions returns, for every metric written as EMF, the dimension
// sets its CloudWatch metrics have (deploy's tests hold the alarms and the
// dashboard to them).
func EMFDimensions() map[string][][]string {
	out := map[string][][]string{}
	for _, e := range emfMetrics() {
		out[e.name] = e.dimensionSets()
	}
	return out
}

func (e emfMetric) dimensionSets() [][]string {
	sets := [][]string{slices.Clone(e.dims)}
	for _, r := range e.rollups {
		sets = append(sets, slices.Clone(r))
	}
	return sets
}

// emfState remembers what the last WriteEMF wrote of each counter and
// histogram, so that each line carries the interval's increase.
type emfState struct {
	mu       sync.Mutex
	counters map[string]float64   // name + dimension values -> last cumulative value
	buckets  map[string][]float64 // name + dimension values -> last cumulative bucket counts
}

func newEMFState() *emfState {
	return &emfState{counters: map[string]float64{}, buckets: map[string][]float64{}}
}

// WriteEMF writes one CloudWatch Embedded Metric Format document per line
// to w for the metrics deploy/ reads, in namespace, stamped now: a
// counter's increase since the previous call (since the start on the
// first), a gauge's current value, a histogram's observations since the
// previous call as values at their buckets' upper bounds (the top bucket
// at the highest finite bound). Calls must not overlap.
func (m *Metrics) WriteEMF(w io.Writer, namespace string, now time.Time) error {
	families, err := m.reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	m.emf.mu.Lock()
	defer m.emf.mu.Unlock()
	enc := json.NewEncoder(w)
	for _, e := range emfMetrics() {
		f, ok := byName[e.name]
		if !ok {
			continue // a vector with no series yet
		}
		for _, doc := range m.emf.documents(e, f, namespace, now) {
			if err := enc.Encode(doc); err != nil {
				return fmt.Errorf("write EMF: %w", err)
			}
		}
	}
	return nil
}

// group is the series of one family that share e's dimension values.
type group struct {
	dims    map[string]string
	key     string
	metrics []*dto.Metric
}

func groupBy(e emfMetric, f *dto.MetricFamily) []*group {
	var out []*group
	byKey := map[string]*group{}
	for _, mt := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range mt.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if s, ok := labels["status"]; ok && len(s) == 3 {
			labels[StatusClass] = s[:1] + "xx"
		}
		dims := map[string]string{}
		parts := []string{e.name}
		for _, d := range e.dims {
			dims[d] = labels[d]
			parts = append(parts, d+"="+labels[d])
		}
		key := strings.Join(parts, "\x00")
		g, ok := byKey[key]
		if !ok {
			g = &group{dims: dims, key: key}
			byKey[key] = g
			out = append(out, g)
		}
		g.metrics = append(g.metrics, mt)
	}
	return out
}

// documents returns e's EMF documents for family f; s.mu must be held.
func (s *emfState) documents(e emfMetric, f *dto.MetricFamily, namespace string, now time.Time) []map[string]any {
	var docs []map[string]any
	for _, g := range groupBy(e, f) {
		var values []any
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			var total float64
			for _, mt := range g.metrics {
				total += mt.GetCounter().GetValue()
			}
			delta := total - s.counters[g.key]
			if delta < 0 { // cannot happen within one process; be safe
				delta = total
			}
			s.counters[g.key] = total
			values = []any{delta}
		case dto.MetricType_GAUGE:
			v := math.Inf(-1)
			if !e.maxOf {
				v = 0
			}
			for _, mt := range g.metrics {
				if e.maxOf {
					v = max(v, mt.GetGauge().GetValue())
				} else {
					v += mt.GetGauge().GetValue()
				}
			}
			values = []any{v}
		case dto.MetricType_HISTOGRAM:
			for _, chunk := range s.histogramSamples(g) {
				values = append(values, chunk)
			}
		}
		for _, v := range values {
			doc := map[string]any{
				"_aws": map[string]any{
					"Timestamp": now.UnixMilli(),
					"CloudWatchMetrics": []any{map[string]any{
						"Namespace":  namespace,
						"Dimensions": e.dimensionSets(),
						"Metrics":    []any{map[string]string{"Name": e.name, "Unit": e.unit}},
					}},
				},
				e.name: v,
			}
			for k, dv := range g.dims {
				doc[k] = dv
			}
			docs = append(docs, doc)
		}
	}
	return docs
}

// histogramSamples turns the increase of g's buckets since the last call
// into chunks of at most emfMaxValues values; s.mu must be held.
func (s *emfState) histogramSamples(g *group) [][]float64 {
	var bounds, cum []float64
	for _, mt := range g.metrics {
		h := mt.GetHistogram()
		if bounds == nil {
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			cum = make([]float64, len(bounds)+1)
		}
		for i, b := range h.GetBucket() {
			cum[i] += float64(b.GetCumulativeCount())
		}
		cum[len(bounds)] += float64(h.GetSampleCount())
	}
	if bounds == nil {
		return nil
	}
	last := s.buckets[g.key]
	s.buckets[g.key] = cum
	// Per-bucket increase: cumulative counts differenced across buckets
	// and against the last call.
	counts := make([]float64, len(cum))
	var total float64
	for i := range cum {
		c := cum[i]
		if i > 0 {
			c -= cum[i-1]
		}
		if last != nil {
			p := last[i]
			if i > 0 {
				p -= last[i-1]
			}
			c -= p
		}
		counts[i] = max(c, 0)
		total += counts[i]
	}
	if total == 0 {
		return nil
	}
	values := func(i int) float64 {
		if i < len(bounds) && !math.IsInf(bounds[i], 1) {
			return bounds[i]
		}
		return bounds[len(bounds)-1]
	}
	if total > emfMaxSamples {
		counts = scale(counts, emfMaxSamples)
	}
	var samples []float64
	for i, c := range counts {
		for range int(c) {
			samples = append(samples, values(i))
		}
	}
	var chunks [][]float64
	for len(samples) > 0 {
		n := min(len(samples), emfMaxValues)
		chunks = append(chunks, samples[:n])
		samples = samples[n:]
	}
	return chunks
}

// scale returns counts scaled to sum to n, by largest remainder, so that
// every bucket keeps its share (and a non-empty top bucket stays
// non-empty when its share rounds to at least one).
func scale(counts []float64, n int) []float64 {
	var total float64
	for _, c := range counts {
		total += c
	}
	out := make([]float64, len(counts))
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	sum := 0
	for i, c := range counts {
		exact := c * float64(n) / total
		out[i] = math.Floor(exact)
		sum += int(out[i])
		rems = append(rems, rem{i, exact - out[i]})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for k := 0; sum < n && k < len(rems); k++ {
		out[rems[k].i]++
		sum++
	}
	return out
}
