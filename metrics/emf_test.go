package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// emfDoc is one EMF line as CloudWatch reads it.
type emfDoc struct {
	AWS struct {
		Timestamp         int64
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name, Unit string }
		}
	} `json:"_aws"`
	fields map[string]json.RawMessage
}

func parseEMF(t *testing.T, out []byte) []emfDoc {
	t.Helper()
	var docs []emfDoc
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d emfDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("EMF line %q: %v", sc.Text(), err)
		}
		if err := json.Unmarshal(sc.Bytes(), &d.fields); err != nil {
			t.Fatal(err)
		}
		if len(d.AWS.CloudWatchMetrics) != 1 || len(d.AWS.CloudWatchMetrics[0].Metrics) != 1 {
			t.Fatalf("EMF line %s: want one directive with one metric", sc.Text())
		}
		// Every dimension and the metric are members of the root, as the
		// specification requires.
		dir := d.AWS.CloudWatchMetrics[0]
		for _, dims := range dir.Dimensions {
			for _, k := range dims {
				if _, ok := d.fields[k]; !ok {
					t.Errorf("EMF line %s lacks its dimension %s", sc.Text(), k)
				}
			}
		}
		if _, ok := d.fields[dir.Metrics[0].Name]; !ok {
			t.Errorf("EMF line %s lacks its metric's value", sc.Text())
		}
		docs = append(docs, d)
	}
	return docs
}

// values returns the values written for metric name with the given
// dimension values, over all docs.
func values(t *testing.T, docs []emfDoc, name string, dims map[string]string) []float64 {
	t.Helper()
	var out []float64
next:
	for _, d := range docs {
		if d.AWS.CloudWatchMetrics[0].Metrics[0].Name != name {
			continue
		}
		for k, v := range dims {
			var got string
			json.Unmarshal(d.fields[k], &got)
			if got != v {
				continue next
			}
		}
		raw := d.fields[name]
		var one float64
		if err := json.Unmarshal(raw, &one); err == nil {
			out = append(out, one)
			continue
		}
		var many []float64
		if err := json.Unmarshal(raw, &many); err != nil {
			t.Fatalf("%s value %s: %v", name, raw, err)
		}
		if len(many) > emfMaxValues {
			t.Errorf("%s: %d values in one document, EMF takes at most %d", name, len(many), emfMaxValues)
		}
		out = append(out, many...)
	}
	return out
}

func sum(vs []float64) float64 {
	var s float64
	for _, v := range vs {
		s += v
	}
	return s
}

// TestEMFCountersAreIncreases: each write carries what a counter gained
// since the last one (all of it the first time), summed over the labels
// EMF drops; HTTP statuses become their class.
func TestEMFCountersAreIncreases(t *testing.T) {
	m := New()
	m.HTTPRequest("GET", "/a", 503, time.Millisecond)
	m.HTTPRequest("POST", "/b", 500, time.Millisecond)
	m.HTTPRequest("GET", "/a", 200, time.Millisecond)
	m.DeadLettered(StagePublisher, ReasonQueueMissing)
	m.DeadLettered(StagePublisher, ReasonRejected)

	var buf bytes.Buffer
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if err := m.WriteEMF(&buf, "fanout-test", now); err != nil {
		t.Fatal(err)
	}
	docs := parseEMF(t, buf.Bytes())
	if got := sum(values(t, docs, HTTPRequests, map[string]string{StatusClass: "5xx"})); got != 2 {
		t.Errorf("5xx = %g, want 2", got)
	}
	if got := sum(values(t, docs, DeadLetters, map[string]string{"stage": StagePublisher})); got != 2 {
		t.Errorf("publisher dead letters = %g, want 2", got)
	}
	if got := sum(values(t, docs, DeadLetters, map[string]string{"stage": StageAggregator})); got != 0 {
		t.Errorf("aggregator dead letters = %g, want a 0 data point", got)
	}
	for _, d := range docs {
		dir := d.AWS.CloudWatchMetrics[0]
		if dir.Namespace != "fanout-test" || d.AWS.Timestamp != now.UnixMilli() {
			t.Errorf("document in %q at %d, want fanout-test at %d", dir.Namespace, d.AWS.Timestamp, now.UnixMilli())
		}
	}

	m.HTTPRequest("GET", "/a", 503, time.Millisecond)
	buf.Reset()
	if err := m.WriteEMF(&buf, "fanout-test", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	docs = parseEMF(t, buf.Bytes())
	if got := sum(values(t, docs, HTTPRequests, map[string]string{StatusClass: "5xx"})); got != 1 {
		t.Errorf("second write: 5xx = %g, want the increase 1", got)
	}
	if got := sum(values(t, docs, DeadLetters, map[string]string{"stage": StagePublisher})); got != 0 {
		t.Errorf("second write: publisher dead letters = %g, want 0", got)
	}
}

// TestEMFHistogramsAreDistributions: a histogram's observations since the
// last write go out as values at their buckets' upper bounds, so
// CloudWatch's p99 of them is the bucket bound p99 falls in; past
// emfMaxSamples they are scaled down, keeping each bucket's share.
func TestEMFHistogramsAreDistributions(t *testing.T) {
	m := New()
	accepted := time.Now()
	for range 98 {
		m.Delivered(accepted.Add(-200*time.Millisecond), accepted) // bucket 0.25
	}
	m.Delivered(accepted.Add(-3*time.Second), accepted) // bucket 5
	m.Delivered(accepted.Add(-time.Hour), accepted)     // over the top bound
	m.Delivered(time.Time{}, accepted)                  // counted, not timed
	var buf bytes.Buffer
	if err := m.WriteEMF(&buf, "ns", accepted); err != nil {
		t.Fatal(err)
	}
	docs := parseEMF(t, buf.Bytes())
	got := values(t, docs, DeliveryLatency, nil)
	if len(got) != 100 {
		t.Fatalf("%d latency values, want 100", len(got))
	}
	counts := map[float64]int{}
	for _, v := range got {
		counts[v]++
	}
	if counts[0.25] != 98 || counts[5] != 1 || counts[300] != 1 {
		t.Errorf("latency values by bound %v, want 98 at 0.25, 1 at 5, 1 at 300 (the top bound)", counts)
	}
	if d := sum(values(t, docs, Deliveries, nil)); d != 101 {
		t.Errorf("deliveries = %g, want 101", d)
	}

	for range 5000 {
		m.Delivered(accepted.Add(-70*time.Millisecond), accepted) // bucket 0.1
	}
	for range 100 {
		m.Delivered(accepted.Add(-20*time.Second), accepted) // bucket 30
	}
	buf.Reset()
	if err := m.WriteEMF(&buf, "ns", accepted); err != nil {
		t.Fatal(err)
	}
	got = values(t, parseEMF(t, buf.Bytes()), DeliveryLatency, nil)
	counts = map[float64]int{}
	for _, v := range got {
		counts[v]++
	}
	if len(got) != emfMaxSamples || counts[0.1] != 980 || counts[30] != 20 {
		t.Errorf("scaled latency values: %d, by bound %v; want %d: 980 at 0.1 and 20 at 30", len(got), counts, emfMaxSamples)
	}
}

// TestEMFLagIsWorstShard: a worker's lag is its worst shard's.
func TestEMFLagIsWorstShard(t *testing.T) {
	m := New()
	w := m.Worker(WorkerPublisher)
	w.LeaseGained("s1")
	w.LeaseGained("s2")
	w.RecordAge("s1", 2*time.Second)
	w.RecordAge("s2", 7*time.Second)
	m.Worker(WorkerAggregator).RecordAge("k1", time.Second)
	var buf bytes.Buffer
	if err := m.WriteEMF(&buf, "ns", time.Now()); err != nil {
		t.Fatal(err)
	}
	docs := parseEMF(t, buf.Bytes())
	if got := values(t, docs, RecordAge, map[string]string{"worker": WorkerPublisher}); len(got) != 1 || got[0] != 7 {
		t.Errorf("publisher record age %v, want [7]", got)
	}
	if got := values(t, docs, LeasesHeld, map[string]string{"worker": WorkerPublisher}); len(got) != 1 || got[0] != 2 {
		t.Errorf("publisher leases %v, want [2]", got)
	}
	w.LeaseLost("s2")
	buf.Reset()
	m.WriteEMF(&buf, "ns", time.Now())
	if got := values(t, parseEMF(t, buf.Bytes()), RecordAge, map[string]string{"worker": WorkerPublisher}); len(got) != 1 || got[0] != 2 {
		t.Errorf("after losing s2, publisher record age %v, want [2]", got)
	}
}

// TestNamesCarryUnits: counters end in _total, histograms of time in
// _seconds, and every metric is fanout's; every EMF metric is defined.
func TestNamesCarryUnits(t *testing.T) {
	defined := map[string]bool{}
	for _, d := range New().Definitions() {
		defined[d.Name] = true
		if !strings.HasPrefix(d.Name, "fanout_") {
			t.Errorf("%s does not start with fanout_", d.Name)
		}
		switch d.Kind {
		case Counter:
			if !strings.HasSuffix(d.Name, "_total") {
				t.Errorf("counter %s does not end in _total", d.Name)
			}
		case Histogram:
			if !strings.HasSuffix(d.Name, "_seconds") && !strings.HasSuffix(d.Name, "_bytes") {
				t.Errorf("histogram %s names no unit", d.Name)
			}
		}
		if d.Help == "" {
			t.Errorf("%s has no help", d.Name)
		}
	}
	for name := range EMFDimensions() {
		if !defined[name] {
			t.Errorf("EMF writes %s, which is not defined", name)
		}
	}
}
