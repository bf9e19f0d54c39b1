package app_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
