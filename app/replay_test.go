package app_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/store"
)

// replayJSON is a replay as the API shows it.
type replayJSON struct {
	ReplayID, ListenerID, State, From, To, ProducerID string
	Progress                                          struct {
		Sent, Found   int
		LastTimestamp string
	}
	Errors []string
}

func startReplay(t *testing.T, s *service, listener store.Agent, body map[string]string) replayJSON {
	t.Helper()
	var r replayJSON
	if err := json.Unmarshal(mustCall(t, 202, "POST", s.url+"/agents/"+listener.ID+"/replays", body), &r); err != nil {
		t.Fatal(err)
	}
	if r.ReplayID == "" || r.State != "running" || r.ListenerID != listener.ID {
		t.Fatalf("POST replays = %+v; want a running replay of %s with an id", r, listener.ID)
	}
	return r
}

func getReplay(t *testing.T, s *service, listener store.Agent, id string) replayJSON {
	t.Helper()
	var r replayJSON
	if err := json.Unmarshal(mustCall(t, 200, "GET", s.url+"/agents/"+listener.ID+"/replays/"+id, nil), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// splitReplayed separates replayed messages (of replay id) from live ones,
// failing on a message marked for another replay or half marked.
func splitReplayed(t *testing.T, msgs []event.Message, id string) (replayed, live []event.Message) {
	t.Helper()
	for _, m := range msgs {
		switch {
		case m.Replayed && m.ReplayID == id:
			replayed = append(replayed, m)
		case !m.Replayed && m.ReplayID == "":
			live = append(live, m)
		default:
			t.Errorf("message %s: replayed=%v replayId=%q; want replayed with replay %s, or neither", m.EventID, m.Replayed, m.ReplayID, id)
		}
	}
	return replayed, live
}

// renumber shifts each message's n down by from, so that
// checkExactlyOnceInOrder can check events from..from+k-1.
func renumber(t *testing.T, msgs []event.Message, from int) []event.Message {
	t.Helper()
	out := make([]event.Message, len(msgs))
	for i, m := range msgs {
		m.Data = json.RawMessage(`{"n":` + jsonInt(dataN(m)-from) + `}`)
		out[i] = m
	}
	return out
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// spaced is numbered with timestamps store.MaxRunSpan apart from at: each
// event is an item of its own, so replays page and pace event by event
// (events closer together share a packed item, which a replay sends whole).
func spaced(producer store.Agent, n int, at time.Time) []postEvent {
	events := numbered(producer, 0, n)
	for i := range events {
		events[i].Timestamp = at.Add(time.Duration(i) * store.MaxRunSpan).UTC().Format(time.RFC3339Nano)
	}
	return events
}

// TestReplayAcrossPagesWithLiveTraffic: a replay of two producers' window,
// read three items per Query page, re-delivers every event of the window
// once, each producer's in order, marked with the replay, while live events
// published during it arrive once, in order, unmarked; the replay ends done
// with every event found sent.
func TestReplayAcrossPagesWithLiveTraffic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.ReplayPageItems = 3 // 24 events: 8 pages, an edge every 3 events
	s := e.start(t, "replay")
	p1, p2, sub := register(t, s, "p1"), register(t, s, "p2"), register(t, s, "s")
	subscribe(t, s, sub, p1)
	subscribe(t, s, sub, p2)
	from := time.Now().UTC()
	const n = 12
	for i := 0; i < n; i += 3 {
		publish(t, s, append(numbered(p1, i, 3), numbered(p2, i, 3)...)...)
	}
	live := receive(t, e, sub.QueueURL, deliveryTimeout, count(2*n))
	e.checkDelivered(t, sub.ID, live, map[string]int{p1.ID: n, p2.ID: n})

	r := startReplay(t, s, sub, map[string]string{"from": from.Format(time.RFC3339Nano)})
	// Live traffic during the replay: events n..n+5 of each producer.
	for i := n; i < n+6; i += 2 {
		publish(t, s, append(numbered(p1, i, 2), numbered(p2, i, 2)...)...)
	}
	msgs := receive(t, e, sub.QueueURL, deliveryTimeout, count(2*n+12))
	msgs = append(msgs, receiveOnce(t, e, sub.QueueURL)...)
	replayed, later := splitReplayed(t, msgs, r.ReplayID)
	e.checkDelivered(t, sub.ID, replayed, map[string]int{p1.ID: n, p2.ID: n})
	e.checkDelivered(t, sub.ID, renumber(t, later, n), map[string]int{p1.ID: 6, p2.ID: 6})

	var got replayJSON
	waitFor(t, deliveryTimeout, "replay done", func() bool {
		got = getReplay(t, s, sub, r.ReplayID)
		return got.State == "done"
	})
	if got.Progress.Sent != 2*n || got.Progress.Found != 2*n || got.Progress.LastTimestamp == "" || len(got.Errors) != 0 {
		t.Errorf("done replay = %+v; want %d sent of %d found, a last timestamp, no errors", got, 2*n, 2*n)
	}
	// The one task ran it, whole: /metrics says so.
	fams := waitMetrics(t, s,
		metricCheck{metrics.ReplaysStarted, nil, 1},
		metricCheck{metrics.ReplaysFinished, []string{"state", store.ReplayDone}, 1},
		metricCheck{metrics.ReplayMessages, nil, 2 * n},
	)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{metrics.ReplaysStarted, nil, 1},
		{metrics.ReplaysFinished, []string{"state", store.ReplayDone}, 1},
		{metrics.ReplaysFinished, []string{"state", store.ReplayFailed}, 0},
		{metrics.ReplaysFinished, []string{"state", store.ReplayCancelled}, 0},
		{metrics.ReplayMessages, nil, 2 * n},
	} {
		if v, ok := series(fams, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("/metrics: %s%v = %g (present: %v), want %g", c.name, c.labels, v, ok, c.want)
		}
	}
}

// TestReplayOneProducer: producerId limits a replay to that producer.
func TestReplayOneProducer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "replay-one")
	p1, p2, sub := register(t, s, "p1"), register(t, s, "p2"), register(t, s, "s")
	subscribe(t, s, sub, p1)
	subscribe(t, s, sub, p2)
	from := time.Now().UTC()
	publish(t, s, append(numbered(p1, 0, 5), numbered(p2, 0, 5)...)...)
	receive(t, e, sub.QueueURL, deliveryTimeout, count(10))
	r := startReplay(t, s, sub, map[string]string{"from": from.Format(time.RFC3339Nano), "to": time.Now().UTC().Format(time.RFC3339Nano), "producerId": p2.ID})
	msgs := receiveExactly(t, e, sub.QueueURL, 5)
	replayed, live := splitReplayed(t, msgs, r.ReplayID)
	if len(live) != 0 {
		t.Errorf("%d live messages after the replay; want none", len(live))
	}
	e.checkDelivered(t, sub.ID, replayed, map[string]int{p2.ID: 5})
}

// TestReplayResumedOnAnotherTask: a replay slowed to 4 events a second is
// stopped mid-way with its task (SIGTERM); the other task of the
// deployment takes it over from its last position, and every event of
// the window reaches the queue exactly once, in order.
func TestReplayResumedOnAnotherTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.ReplayRate = 4
	e.cfg.ReplayPageItems = 4
	a := e.start(t, "task-a")
	producer, sub := register(t, a, "p"), register(t, a, "s")
	subscribe(t, a, sub, producer)
	from := time.Now().UTC().Add(-time.Minute)
	const n = 30
	publish(t, a, spaced(producer, n, from)...)
	receive(t, e, sub.QueueURL, deliveryTimeout, count(n))

	r := startReplay(t, a, sub, map[string]string{"from": from.Format(time.RFC3339Nano)})
	waitFor(t, deliveryTimeout, "task-a mid-way through the replay", func() bool {
		return getReplay(t, a, sub, r.ReplayID).Progress.Sent >= 8
	})
	b := e.start(t, "task-b")
	a.stop(t)
	if mid := getReplay(t, b, sub, r.ReplayID); mid.State != "running" || mid.Progress.Sent >= n {
		t.Fatalf("after task-a stopped: %+v; want it running, mid-way", mid)
	}
	var done replayJSON
	waitFor(t, deliveryTimeout, "task-b finishing the replay", func() bool {
		done = getReplay(t, b, sub, r.ReplayID)
		return done.State == "done"
	})
	if done.Progress.Sent != n || len(done.Errors) != 0 {
		t.Errorf("done replay = %+v; want %d sent, no errors", done, n)
	}
	// Everything is queued before it is consumed, so a resend with the
	// same deduplication id is dropped by the emulator as by SQS, and one
	// with another id would show (AWS-NOTES).
	msgs := receiveExactly(t, e, sub.QueueURL, n)
	replayed, live := splitReplayed(t, msgs, r.ReplayID)
	if len(live) != 0 {
		t.Errorf("%d live messages; want none", len(live))
	}
	e.checkDelivered(t, sub.ID, replayed, map[string]int{producer.ID: n})
}

// TestReplayCancel: DELETE stops a running replay (at most the batch in
// flight arrives after it), is idempotent, and GET shows it cancelled.
func TestReplayCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.ReplayRate = 2
	e.cfg.ReplayPageItems = 3 // batches of at most 3, one every 1.5 s
	s := e.start(t, "replay-cancel")
	producer, sub := register(t, s, "p"), register(t, s, "s")
	subscribe(t, s, sub, producer)
	from := time.Now().UTC().Add(-time.Minute)
	const n = 24
	publish(t, s, spaced(producer, n, from)...)
	receive(t, e, sub.QueueURL, deliveryTimeout, count(n))

	r := startReplay(t, s, sub, map[string]string{"from": from.Format(time.RFC3339Nano)})
	got := receive(t, e, sub.QueueURL, deliveryTimeout, count(1))
	var c replayJSON
	json.Unmarshal(mustCall(t, 200, "DELETE", s.url+"/agents/"+sub.ID+"/replays/"+r.ReplayID, nil), &c)
	if c.State != "cancelled" {
		t.Errorf("DELETE answered %+v; want cancelled", c)
	}
	json.Unmarshal(mustCall(t, 200, "DELETE", s.url+"/agents/"+sub.ID+"/replays/"+r.ReplayID, nil), &c)
	if c.State != "cancelled" {
		t.Errorf("second DELETE answered %+v; want cancelled", c)
	}
	// Uncancelled, the replay would send 3 more every 1.5 s: 9 more in
	// the 5 s watched here, all 24 within 12 s.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got = append(got, receiveOnce(t, e, sub.QueueURL)...)
	}
	if len(got) > 6 {
		t.Errorf("%d replayed messages arrived; want at most 6 (the batch sent and the one in flight at the DELETE)", len(got))
	}
	if g := getReplay(t, s, sub, r.ReplayID); g.State != "cancelled" || g.Progress.Sent > 6 {
		t.Errorf("GET after cancel = %+v; want cancelled with at most 6 sent", g)
	}
	// The task sees the cancel at its next batch.
	fams := waitMetrics(t, s, metricCheck{metrics.ReplaysFinished, []string{"state", store.ReplayCancelled}, 1})
	if v, _ := series(fams, metrics.ReplaysFinished, "state", store.ReplayDone); v != 0 {
		t.Errorf("/metrics: %g replays done, want 0: the only one was cancelled", v)
	}
	if v, _ := series(fams, metrics.ReplayMessages); v < float64(len(got)) || v > 6 {
		t.Errorf("/metrics: %g replayed messages, want %d to 6 (those received, at most the two batches)", v, len(got))
	}
}

// TestReplayBadRequests: a window that cannot be replayed, an unknown
// producer or listener, and an unknown replay id say what to fix.
func TestReplayBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t, "replay-bad")
	sub := register(t, s, "s")
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	path := s.url + "/agents/" + sub.ID + "/replays"
	for _, tc := range []struct {
		name string
		body any
		says string
	}{
		{"no from", map[string]string{}, "from is required"},
		{"from not a time", map[string]string{"from": "yesterday"}, "not an RFC 3339 time"},
		{"to not a time", map[string]string{"from": ts(-time.Hour), "to": "now"}, "not an RFC 3339 time"},
		{"from after to", map[string]string{"from": ts(-time.Minute), "to": ts(-time.Hour)}, "is not before"},
		{"from in the future", map[string]string{"from": ts(time.Hour)}, "in the future"},
		{"to in the future", map[string]string{"from": ts(-time.Hour), "to": ts(time.Hour)}, "in the future"},
		{"older than the retention", map[string]string{"from": ts(-8 * 24 * time.Hour)}, "7 days"},
		{"unknown producer", map[string]string{"from": ts(-time.Hour), "producerId": "nobody"}, "not a registered agent"},
		{"unknown field", map[string]any{"from": ts(-time.Hour), "since": "x"}, "since"},
	} {
		status, body := call(t, "POST", path, tc.body)
		if status != 400 || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s: %d %s; want 400 saying %q", tc.name, status, body, tc.says)
		}
	}
	if status, body := call(t, "POST", s.url+"/agents/nobody/replays", map[string]string{"from": ts(-time.Hour)}); status != 404 {
		t.Errorf("replay of an unknown listener: %d %s; want 404", status, body)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if status, body := call(t, method, path+"/no-such-replay", nil); status != 404 || !strings.Contains(string(body), "POST /agents/") {
			t.Errorf("%s of an unknown replay: %d %s; want 404 saying how to start one", method, status, body)
		}
	}
}
