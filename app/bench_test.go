package app_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/awstest"
	"github.com/fanout/fanout/store"
)

// BenchmarkEndToEnd measures, on the in-process emulator, the latency from
// POST /events to the message being received by each subscriber, and the
// AWS calls the service makes per delivered message, by operation:
//
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./app
//
// "paced" posts single events at a steady rate (latency as a lightly loaded
// service sees it); "burst" posts arrays of 50 as fast as it can (what
// batching saves under load); "-own-ids" runs set each event's eventId,
// as a producer that retries does, which costs one claim per published
// event. One producer, three subscribers, 1,000 events: 3,000 deliveries
// per run. Numbers go to README.md.
func BenchmarkEndToEnd(b *testing.B) {
	for _, bc := range []struct {
		name     string
		perPost  int
		interval time.Duration
		ownIDs   bool
	}{
		{"paced", 1, 10 * time.Millisecond, false},
		{"burst", 50, 0, false},
		{"paced-own-ids", 1, 10 * time.Millisecond, true},
		{"burst-own-ids", 50, 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				runEndToEnd(b, 1000, bc.perPost, bc.interval, bc.ownIDs)
			}
		})
	}
}

func runEndToEnd(b *testing.B, events, perPost int, interval time.Duration, ownIDs bool) {
	e := newEnv(b)
	s := e.start(b, "bench")
	producer := register(b, s, "p")
	subs := make([]store.Agent, 3)
	for i := range subs {
		subs[i] = register(b, s, fmt.Sprintf("s%d", i))
		subscribe(b, s, subs[i], producer)
	}
	// Warm up: measure a running pipeline, not KCL taking its leases
	// (one per 2 s shard sync) after start.
	publish(b, s, postEvent{AgentID: producer.ID, EventType: "warm-up", Data: map[string]any{}})
	for _, sub := range subs {
		receive(b, e, sub.QueueURL, deliveryTimeout, count(1))
	}
	before := s.app.Calls().Snapshot()

	var mu sync.Mutex
	// latencies: POST to received; toQueue: POST to accepted by SQS
	// (SentTimestamp, ms resolution), the part that is fanout's.
	var latencies, toQueue []time.Duration
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			deadline := time.Now().Add(5 * time.Minute)
			for got < events && time.Now().Before(deadline) {
				msgs, queuedAt := receiveTimed(b, e, sub.QueueURL)
				now := time.Now()
				mu.Lock()
				for i, m := range msgs {
					var d struct{ SentNs int64 }
					json.Unmarshal(m.Data, &d)
					posted := time.Unix(0, d.SentNs)
					latencies = append(latencies, now.Sub(posted))
					toQueue = append(toQueue, queuedAt[i].Sub(posted.Truncate(time.Millisecond)))
				}
				mu.Unlock()
				got += len(msgs)
			}
		}()
	}
	start := time.Now()
	for sent := 0; sent < events; sent += perPost {
		batch := numbered(producer, sent, perPost)
		for i := range batch {
			batch[i].Data["sentNs"] = time.Now().UnixNano()
			if ownIDs {
				batch[i].EventID = fmt.Sprintf("order-%d", sent+i)
			}
		}
		publish(b, s, batch...)
		if interval > 0 {
			time.Sleep(interval) // paces the load generator; nothing waits on it
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := s.app.Calls().Snapshot()
	delivered := len(latencies)
	if delivered != events*len(subs) {
		b.Fatalf("delivered %d messages, want %d", delivered, events*len(subs))
	}

	slices.Sort(latencies)
	slices.Sort(toQueue)
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	pq := func(q float64) time.Duration { return toQueue[int(q*float64(len(toQueue)-1))] }
	b.ReportMetric(float64(p(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "deliveries/s")

	var ops []string
	total := int64(0)
	for op, n := range after {
		if d := n - before[op]; d > 0 {
			ops = append(ops, op)
			total += d
		}
	}
	sort.Strings(ops)
	var lines []string
	for _, op := range ops {
		d := after[op] - before[op]
		lines = append(lines, fmt.Sprintf("  %-36s %6d  %.3f per delivery", op, d, float64(d)/float64(delivered)))
	}
	b.ReportMetric(float64(total)/float64(delivered), "aws-calls/delivery")
	// Printed, not logged: benchmark logs are cut after a few lines.
	fmt.Printf("%s: %d deliveries in %s; latency p50 %s p90 %s p99 %s max %s; of which POST to queued p50 %s p90 %s p99 %s max %s\nAWS calls during the run (%.3f per delivery):\n%s\n",
		b.Name(), delivered, elapsed.Round(time.Millisecond), p(0.5), p(0.9), p(0.99), latencies[len(latencies)-1],
		pq(0.5), pq(0.9), pq(0.99), toQueue[len(toQueue)-1],
		float64(total)/float64(delivered), strings.Join(lines, "\n"))
}

// BenchmarkFanout measures where fanout stands on the issue 10 workloads:
// sustained deliveries/s, latency at a paced 100 events/s, AWS calls and
// billed units per delivery, and $ per million deliveries beside SNS FIFO
// → SQS FIFO for the same workload:
//
//	go test -run '^$' -bench Fanout -benchtime 1x -count 2 ./app
//	FANOUT_BENCH_RTT=10ms go test -run '^$' -bench 'Fanout/hot-1' -benchtime 1x ./app
//
// Every AWS call fanout makes waits a fixed round trip first
// (awstest.RoundTrip), for each duration in FANOUT_BENCH_RTT
// (comma-separated; default "0ms,10ms"): loopback to the emulator has
// none, a task in its own region about 10 ms. The test's own consumer
// reads without it. Each run posts 300-byte events singly: first 300 at
// 100 events/s (latency: POST to SQS SentTimestamp), then 1,000 from 16
// connections as fast as fanout takes them (throughput, calls, units).
func BenchmarkFanout(b *testing.B) {
	rtts := []time.Duration{0, 10 * time.Millisecond}
	if v := os.Getenv("FANOUT_BENCH_RTT"); v != "" {
		rtts = nil
		for _, s := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				b.Fatalf("FANOUT_BENCH_RTT=%q: %v", v, err)
			}
			rtts = append(rtts, d)
		}
	}
	for _, sc := range []benchScenario{
		{name: "hot-1", producers: 1, subscribers: 1},
		{name: "hot-10", producers: 1, subscribers: 10},
		{name: "10x10", producers: 10, subscribers: 10},
	} {
		for _, rtt := range rtts {
			sc.rtt = rtt
			b.Run(fmt.Sprintf("%s/rtt=%s", sc.name, rtt), func(b *testing.B) {
				for b.Loop() {
					runFanout(b, sc)
				}
			})
		}
	}
}

type benchScenario struct {
	name                   string
	producers, subscribers int
	rtt                    time.Duration
}

const (
	benchPacedEvents     = 300
	benchPacedInterval   = 10 * time.Millisecond // 100 events/s
	benchSustainedEvents = 5000
	benchConnections     = 64
	benchEventBytes      = 300
)

func runFanout(b *testing.B, sc benchScenario) {
	e := newEnv(b)
	m := &meter{}
	e.awsCfg = e.awsCfg.Copy()
	e.awsCfg.APIOptions = append(e.awsCfg.APIOptions, m.Middleware, awstest.RoundTrip(sc.rtt))
	s := e.start(b, "bench")
	producers := make([]store.Agent, sc.producers)
	for i := range producers {
		producers[i] = register(b, s, fmt.Sprintf("p%d", i))
	}
	subs := make([]store.Agent, sc.subscribers)
	for i := range subs {
		subs[i] = register(b, s, fmt.Sprintf("s%d", i))
		for _, p := range producers {
			subscribe(b, s, subs[i], p)
		}
	}
	poster := newBenchPoster(s.url)
	// Warm up: one event per producer, so KCL has its leases.
	for _, p := range producers {
		poster.post(b, p.ID, -1)
	}
	benchDrain(b, e, subs, sc.producers)

	// Paced: latency of a lightly loaded pipeline.
	go func() {
		tick := time.NewTicker(benchPacedInterval)
		defer tick.Stop()
		for i := range benchPacedEvents {
			<-tick.C
			poster.post(b, producers[i%len(producers)].ID, i)
		}
	}()
	toQueue, _ := benchDrain(b, e, subs, benchPacedEvents)
	slices.Sort(toQueue)
	pq := func(q float64) time.Duration { return toQueue[int(q*float64(len(toQueue)-1))] }

	// Sustained: 16 connections post single events as fast as fanout
	// answers.
	calls0, units0 := s.app.Calls().Snapshot(), m.snapshot()
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	var accepted time.Time // when the last POST was answered
	var acceptedMu sync.Mutex
	for range benchConnections {
		wg.Go(func() {
			for i := range next {
				poster.post(b, producers[i%len(producers)].ID, i)
			}
			acceptedMu.Lock()
			accepted = time.Now()
			acceptedMu.Unlock()
		})
	}
	go func() {
		for i := range benchSustainedEvents {
			next <- i
		}
		close(next)
	}()
	_, last := benchDrain(b, e, subs, benchSustainedEvents)
	wg.Wait()
	elapsed := last.Sub(start)
	calls, units := s.app.Calls().Snapshot(), m.snapshot().minus(units0)
	deliveries := float64(benchSustainedEvents * len(subs))
	rate := deliveries / elapsed.Seconds()

	var ops []string
	for op, n := range calls {
		if d := n - calls0[op]; d > 0 {
			ops = append(ops, fmt.Sprintf("%s %.3f", op, float64(d)/deliveries))
		}
	}
	sort.Strings(ops)
	costs, fanoutUSD, snsUSD := units.report(deliveries, benchSustainedEvents)
	b.ReportMetric(rate, "deliveries/s")
	b.ReportMetric(float64(pq(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(pq(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(units.WriteUnits/deliveries, "WRU/delivery")
	b.ReportMetric(fanoutUSD, "$/M-deliveries")
	b.ReportMetric(snsUSD, "sns-$/M")
	fmt.Printf("%s: paced %d events at 100/s: POST to queued p50 %s p99 %s max %s\n"+
		"  sustained: %d events -> %.0f deliveries in %s: %.0f deliveries/s (%.0f events/s; POSTs answered at %.0f events/s)\n"+
		"  AWS calls per delivery: %s\n%s\n",
		b.Name(), benchPacedEvents, pq(0.5), pq(0.99), toQueue[len(toQueue)-1],
		benchSustainedEvents, deliveries, elapsed.Round(time.Millisecond), rate, float64(benchSustainedEvents)/elapsed.Seconds(),
		float64(benchSustainedEvents)/accepted.Sub(start).Seconds(),
		strings.Join(ops, ", "), costs)
}

// benchPoster posts single events over keep-alive connections, without
// the OpenAPI check of the tests' client (the load generator should cost
// little).
type benchPoster struct {
	url    string
	client *http.Client
}

func newBenchPoster(url string) *benchPoster {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * benchConnections
	return &benchPoster{url: url + "/events", client: &http.Client{Transport: tr}}
}

// post sends event n of producer as a lone event of about
// benchEventBytes, stamped with its send time; it fails b unless 202.
func (p *benchPoster) post(b *testing.B, producer string, n int) {
	body := fmt.Sprintf(`{"agentId":%q,"eventType":"bench","data":{"n":%d,"sentNs":%d,"pad":%q}}`,
		producer, n, time.Now().UnixNano(), "")
	if pad := benchEventBytes - len(body) - 30; pad > 0 { // 30: eventId and timestamp fanout adds
		body = fmt.Sprintf(`{"agentId":%q,"eventType":"bench","data":{"n":%d,"sentNs":%d,"pad":%q}}`,
			producer, n, time.Now().UnixNano(), benchPad(pad))
	}
	resp, err := p.client.Post(p.url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Errorf("POST /events: %v", err)
		return
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		b.Errorf("POST /events: status %d, want 202", resp.StatusCode)
	}
}

// benchDrain receives from every subscriber's queue until each has want
// distinct events, and returns POST-to-queued (SentTimestamp) of every
// message and when the last one arrived. Duplicates fail b.
func benchDrain(b *testing.B, e *env, subs []store.Agent, want int) ([]time.Duration, time.Time) {
	var mu sync.Mutex
	var toQueue []time.Duration
	var last time.Time
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Go(func() {
			seen := map[string]bool{}
			deadline := time.Now().Add(5 * time.Minute)
			for len(seen) < want {
				if time.Now().After(deadline) {
					b.Errorf("subscriber %s: %d of %d events after 5 min", sub.ID, len(seen), want)
					return
				}
				msgs, queuedAt := receiveTimed(b, e, sub.QueueURL)
				now := time.Now()
				mu.Lock()
				for i, m := range msgs {
					if seen[m.EventID] {
						b.Errorf("subscriber %s: event %s twice", sub.ID, m.EventID)
					}
					seen[m.EventID] = true
					var d struct{ SentNs int64 }
					json.Unmarshal(m.Data, &d)
					toQueue = append(toQueue, queuedAt[i].Sub(time.Unix(0, d.SentNs).Truncate(time.Millisecond)))
				}
				if len(msgs) > 0 && now.After(last) {
					last = now
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return toQueue, last
}

// benchPad returns n random hex digits: event content that deflate shrinks
// only about 2× (real events, with repeated field names and enum values,
// shrink more), so packed items' billed size is not flattered.
func benchPad(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b)[:n]
}
