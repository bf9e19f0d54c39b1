package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/metrics"
)

// emitted is one CloudWatch metric the service's EMF lines publish: a name
// and its dimensions ("k=v", sorted).
type emitted struct {
	name string
	dims string
}

func dimsKey(kv map[string]string) string {
	var parts []string
	for k, v := range kv {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// emittedMetrics runs package metrics' own EMF writer over a registry that
// saw one of everything the alarms and the dashboard watch (each label
// value a constant of package metrics, as the service records it), and
// returns every CloudWatch metric those lines publish, and which of them
// carry distributions (values arrays, from histograms).
func emittedMetrics(t *testing.T) (set map[emitted]bool, distributions map[string]bool) {
	t.Helper()
	m := metrics.New()
	now := time.Now()
	for _, status := range []int{200, 404, 503} {
		m.HTTPRequest("POST", "/events", status, time.Millisecond)
	}
	for _, o := range []string{metrics.OutcomeAccepted, metrics.OutcomeInvalid, metrics.OutcomeUnknownProducer, metrics.OutcomeTooLarge, metrics.OutcomeForbidden, metrics.OutcomeUnavailable} {
		m.EventsPosted(o, 1)
	}
	m.Delivered(now.Add(-time.Second), now)
	m.DuplicateDropped(metrics.StageAggregator)
	m.DeadLettered(metrics.StageAggregator, metrics.ReasonUnparsable)
	m.DeadLettered(metrics.StagePublisher, metrics.ReasonQueueMissing)
	for _, svc := range []string{"Kinesis", "DynamoDB", "DynamoDB Streams", "SQS"} {
		for _, o := range []string{metrics.AWSOk, metrics.AWSError, metrics.AWSThrottled} {
			m.AWSRequest(svc, "Op", o, true)
		}
	}
	for _, op := range [][2]string{{"Kinesis", "PutRecords"}, {"SQS", "SendMessageBatch"}} {
		for _, o := range []string{metrics.AWSError, metrics.AWSThrottled} {
			m.AWSEntriesFailed(op[0], op[1], o, 1)
		}
	}
	for _, c := range []string{metrics.CacheAgents, metrics.CacheSubscribers, metrics.CacheProducers} {
		m.CacheLookup(c, true)
		m.CacheLookup(c, false)
	}
	for _, w := range []string{metrics.WorkerAggregator, metrics.WorkerPublisher} {
		r := m.Worker(w)
		r.LeaseGained("shard-1")
		r.IteratorAge("shard-1", time.Second)
		r.RecordAge("shard-1", time.Second)
	}
	var buf bytes.Buffer
	if err := m.WriteEMF(&buf, "ns", now); err != nil {
		t.Fatal(err)
	}
	set, distributions = map[emitted]bool{}, map[string]bool{}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatalf("EMF line %s: %v", sc.Text(), err)
		}
		var meta struct {
			CloudWatchMetrics []struct {
				Dimensions [][]string
				Metrics    []struct{ Name string }
			}
		}
		if err := json.Unmarshal(doc["_aws"], &meta); err != nil {
			t.Fatal(err)
		}
		for _, dir := range meta.CloudWatchMetrics {
			for _, mt := range dir.Metrics {
				if bytes.HasPrefix(bytes.TrimSpace(doc[mt.Name]), []byte("[")) {
					distributions[mt.Name] = true
				}
				for _, dims := range dir.Dimensions {
					kv := map[string]string{}
					for _, d := range dims {
						var v string
						json.Unmarshal(doc[d], &v)
						kv[d] = v
					}
					set[emitted{mt.Name, dimsKey(kv)}] = true
				}
			}
		}
	}
	return set, distributions
}

// alarmMetric is the metric an alarm, or one series of its metric math,
// reads.
type alarmMetric struct {
	Namespace  any    `yaml:"Namespace"`
	MetricName string `yaml:"MetricName"`
	Dimensions []struct {
		Name  string `yaml:"Name"`
		Value any    `yaml:"Value"`
	} `yaml:"Dimensions"`
}

type alarmProps struct {
	alarmMetric       `yaml:",inline"`
	Statistic         string `yaml:"Statistic"`
	ExtendedStatistic string `yaml:"ExtendedStatistic"`
	Period            int    `yaml:"Period"`
	// Metrics is a metric-math alarm's series and expressions (instead
	// of the fields above).
	Metrics []struct {
		ID         string `yaml:"Id"`
		Expression string `yaml:"Expression"`
		ReturnData *bool  `yaml:"ReturnData"`
		MetricStat *struct {
			Metric alarmMetric `yaml:"Metric"`
			Stat   string      `yaml:"Stat"`
			Period int         `yaml:"Period"`
		} `yaml:"MetricStat"`
	} `yaml:"Metrics"`
}

// alarmRead is one metric an alarm reads, with its statistic ("p99" for a
// percentile, "" for the others) and period.
type alarmRead struct {
	alarmMetric
	percentile string
	period     int
}

// reads returns the metrics alarm id reads: its own, or every series of
// its metric math, which must feed the one expression it returns.
func (p alarmProps) reads(t *testing.T, id string) []alarmRead {
	t.Helper()
	if len(p.Metrics) == 0 {
		return []alarmRead{{p.alarmMetric, p.ExtendedStatistic, p.Period}}
	}
	if p.MetricName != "" || p.Statistic != "" || p.Period != 0 {
		t.Errorf("%s has both Metrics and MetricName, Statistic or Period", id)
	}
	var reads []alarmRead
	var returned []string
	for _, m := range p.Metrics {
		if m.ReturnData == nil || *m.ReturnData {
			returned = append(returned, m.Expression)
		}
		if m.MetricStat == nil {
			continue
		}
		pct := ""
		if strings.HasPrefix(m.MetricStat.Stat, "p") {
			pct = m.MetricStat.Stat
		}
		reads = append(reads, alarmRead{m.MetricStat.Metric, pct, m.MetricStat.Period})
	}
	if len(returned) != 1 || returned[0] == "" {
		t.Fatalf("%s returns %q, want one expression over its series", id, returned)
	}
	for _, m := range p.Metrics {
		if m.MetricStat != nil && !regexp.MustCompile(`\b`+regexp.QuoteMeta(m.ID)+`\b`).MatchString(returned[0]) {
			t.Errorf("%s reads %s (id %s) but its expression %q does not use it", id, m.MetricStat.Metric.MetricName, m.ID, returned[0])
		}
	}
	return reads
}

// emfNamespace is what the task sets FANOUT_EMF_NAMESPACE to (a !Sub).
func emfNamespace(t *testing.T, tmpl template) string {
	t.Helper()
	_, c := fanoutTask(t, tmpl)
	ns, ok := sub(c.env["FANOUT_EMF_NAMESPACE"])
	if !ok {
		t.Fatalf("task sets FANOUT_EMF_NAMESPACE = %v, want a !Sub naming the stack: the alarms and dashboard read that namespace", c.env["FANOUT_EMF_NAMESPACE"])
	}
	return ns
}

// TestAlarmsReadEmittedMetrics: every alarm reads a metric, with
// dimensions, that the service's EMF lines really publish in the namespace
// the task writes, at EMF's one-minute resolution; percentiles only of
// distributions; a metric-math alarm's every series. The five figures
// the issue names each have an alarm, throttles counting batch entries.
func TestAlarmsReadEmittedMetrics(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	ns := emfNamespace(t, tmpl)
	set, distributions := emittedMetrics(t)

	watched := map[string]bool{}
	for id, res := range tmpl.Resources {
		if res.Type != "AWS::CloudWatch::Alarm" {
			continue
		}
		var p alarmProps
		decode(t, res, &p)
		for _, r := range p.reads(t, id) {
			if got, ok := sub(r.Namespace); !ok || got != ns {
				t.Errorf("%s: Namespace %v, want !Sub %s (FANOUT_EMF_NAMESPACE): only the service's own metrics", id, r.Namespace, ns)
			}
			kv := map[string]string{}
			for _, d := range r.Dimensions {
				kv[d.Name] = fmt.Sprint(d.Value)
			}
			if !set[emitted{r.MetricName, dimsKey(kv)}] {
				t.Errorf("%s reads %s with dimensions {%s}, which the service does not emit (see metrics.EMFDimensions)", id, r.MetricName, dimsKey(kv))
			}
			if r.percentile != "" && !distributions[r.MetricName] {
				t.Errorf("%s takes %s of %s, which is not a distribution", id, r.percentile, r.MetricName)
			}
			if r.period <= 0 || r.period%int(metrics.EMFInterval.Seconds()) != 0 {
				t.Errorf("%s: Period %d s of %s is not a multiple of the EMF interval %s", id, r.period, r.MetricName, metrics.EMFInterval)
			}
			watched[r.MetricName+"/"+r.percentile+"/"+dimsKey(kv)] = true
		}
	}
	for _, want := range []string{
		metrics.DeliveryLatency + "/p99/",
		metrics.RecordAge + "//worker=aggregator",
		metrics.RecordAge + "//worker=publisher",
		metrics.DeadLetters + "//",
		metrics.HTTPRequests + "//status_class=5xx",
		metrics.AWSRequests + "//outcome=throttled",
		metrics.AWSEntriesFailed + "//outcome=throttled",
	} {
		if !watched[want] {
			t.Errorf("no alarm on %s", want)
		}
	}
}

// TestDashboardReadsEmittedMetrics: every graph of the CloudWatch
// dashboard reads a metric the service emits.
func TestDashboardReadsEmittedMetrics(t *testing.T) {
	t.Parallel()
	tmpl := loadTemplate(t, templatePath)
	ns := emfNamespace(t, tmpl)
	set, distributions := emittedMetrics(t)
	res, ok := tmpl.Resources["Dashboard"]
	if !ok || res.Type != "AWS::CloudWatch::Dashboard" {
		t.Fatal("no AWS::CloudWatch::Dashboard named Dashboard")
	}
	var p struct {
		DashboardBody map[string][]any `yaml:"DashboardBody"`
	}
	decode(t, res, &p)
	args := p.DashboardBody["Fn::Sub"]
	if len(args) != 2 {
		t.Fatalf("DashboardBody = %v, want !Sub [body, {Ns: ...}]", p.DashboardBody)
	}
	body, _ := args[0].(string)
	if v, _ := args[1].(map[string]any); fmt.Sprint(v["Ns"]) != fmt.Sprint(map[string]any{"Fn::Sub": ns}) {
		t.Errorf("dashboard Ns = %v, want !Sub %s", v["Ns"], ns)
	}
	body = strings.NewReplacer("${Ns}", "NS", "${AWS::Region}", "us-east-1").Replace(body)
	var dash struct {
		Widgets []struct {
			Properties struct {
				Title   string  `json:"title"`
				Metrics [][]any `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(body), &dash); err != nil {
		t.Fatalf("dashboard body is not JSON: %v", err)
	}
	graphed := map[string]bool{}
	for _, w := range dash.Widgets {
		for _, row := range w.Properties.Metrics {
			var strs []string
			stat := ""
			for _, v := range row {
				switch v := v.(type) {
				case string:
					strs = append(strs, v)
				case map[string]any:
					stat, _ = v["stat"].(string)
				}
			}
			if len(strs) < 2 || strs[0] != "NS" || len(strs)%2 != 0 {
				t.Errorf("%q: metric %v: want [${Ns}, name, dimension, value, ...]", w.Properties.Title, row)
				continue
			}
			kv := map[string]string{}
			for i := 2; i+1 < len(strs); i += 2 {
				kv[strs[i]] = strs[i+1]
			}
			if !set[emitted{strs[1], dimsKey(kv)}] {
				t.Errorf("%q graphs %s {%s}, which the service does not emit", w.Properties.Title, strs[1], dimsKey(kv))
			}
			if strings.HasPrefix(stat, "p") && !distributions[strs[1]] {
				t.Errorf("%q takes %s of %s, which is not a distribution", w.Properties.Title, stat, strs[1])
			}
			graphed[strs[1]] = true
		}
	}
	for name := range metrics.EMFDimensions() {
		if !graphed[name] {
			t.Errorf("the dashboard graphs nothing of %s, which the service writes to CloudWatch (and pays for)", name)
		}
	}
}

// TestGrafanaDashboard: every query of deploy/grafana/fanout.json reads
// metrics GET /metrics serves, and every fanout metric is on it.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana/fanout.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/fanout.json: %v", err)
	}
	defined := map[string]metrics.Definition{}
	for _, d := range metrics.New().Definitions() {
		defined[d.Name] = d
	}
	name := regexp.MustCompile(`\bfanout_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && defined[b].Kind == metrics.Histogram {
						base = b
					}
				}
				d, ok := defined[base]
				if !ok {
					t.Errorf("panel %q queries %s, which fanout does not export", p.Title, n)
					continue
				}
				if d.Kind == metrics.Histogram && base == n {
					t.Errorf("panel %q queries histogram %s without _bucket, _sum or _count", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	var missing []string
	for n := range defined {
		if !used[n] {
			missing = append(missing, n)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("grafana/fanout.json shows nothing of %v", missing)
	}
}
