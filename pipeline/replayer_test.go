package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/store/memstore"
)

// The Replayer's tests run it whole (Run: polling, claiming, pacing) over
// memstore inside a synctest bubble, so its rates are measured on the
// bubble's clock and its retries back off without taking real time. The
// wrappers of store_test.go inject what the emulator cannot do.

// replayFrom is where the tests' replay windows start; they end a minute
// later.
var replayFrom = time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)

// replayTestID is the id of the tests' replays.
const replayTestID = "replay-1"

// loggedEvent is the SubscriberEvents item of event id of producer for
// sub, ms milliseconds into the window, from Kinesis record seq at place
// index.
func loggedEvent(sub, producer, id string, ms int, seq string, index int) store.SubscriberEvent {
	return store.SubscriberEvent{
		Event: event.Event{
			EventID: id, AgentID: producer, EventType: "exampleEvent",
			Timestamp: replayTimestamp(ms), Data: json.RawMessage(`{"id":"` + id + `"}`),
		},
		SubscriberID: sub, ShardID: "shardId-000000000001", Seq: seq, Index: index,
	}
}

// replayTimestamp is the event timestamp ms milliseconds into the window.
func replayTimestamp(ms int) string {
	return replayFrom.Add(time.Duration(ms) * time.Millisecond).Format(event.TimeLayout)
}

// logEvents writes es into st's SubscriberEvents.
func logEvents(t *testing.T, st *memstore.Store, es ...store.SubscriberEvent) {
	t.Helper()
	for _, e := range es {
		if _, err := st.PutEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// spacedEvents is n events of producer "p" for sub, one a millisecond,
// with ids eventIDs("e-", n).
func spacedEvents(sub string, n int) []store.SubscriberEvent {
	out := make([]store.SubscriberEvent, n)
	for i := range out {
		out[i] = loggedEvent(sub, "p", fmt.Sprintf("e-%02d", i), i, fmt.Sprint(100+i), 0)
	}
	return out
}

// newReplay records replay replayTestID of sub's whole window.
func newReplay(t *testing.T, st *memstore.Store, sub string) {
	t.Helper()
	if err := st.CreateReplay(context.Background(), store.Replay{SubscriberID: sub, ID: replayTestID, From: replayFrom, To: replayFrom.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

// runReplayer runs a Replayer over deps until the test ends: it must be
// called inside a synctest bubble. stop ends it and waits for Run to
// return.
func runReplayer(t *testing.T, deps ReplayerDeps, cfg ReplayerConfig) (stop func()) {
	t.Helper()
	if cfg.Owner == "" {
		cfg.Owner = "task-a"
	}
	r := NewReplayer(deps, cfg, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, time.Second) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// awaitReplay advances the bubble's clock until the replay of sub has
// ended, and returns it; it fails t after ten minutes of that clock.
func awaitReplay(t *testing.T, st *memstore.Store, sub string) store.Replay {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		synctest.Wait()
		rep, err := st.Replay(context.Background(), sub, replayTestID)
		if err != nil {
			t.Fatal(err)
		}
		if rep.State != store.ReplayRunning {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay of %s still running after 10 minutes: %+v", sub, rep)
		}
		time.Sleep(100 * time.Millisecond) // the bubble's clock: lets pacers and polls go on
	}
}

// replayedIDs returns the eventIds the queue of sub holds, checking that
// each is marked as a message of the test's replay, in its producer's
// group, with the replay's deduplication id.
func replayedIDs(t *testing.T, st *memstore.Store, sub string) []string {
	t.Helper()
	var ids []string
	for _, m := range st.Messages(queueURL(sub)) {
		var body event.Message
		if err := json.Unmarshal([]byte(m.Body), &body); err != nil {
			t.Fatalf("message body %.80s: %v", m.Body, err)
		}
		if !body.Replayed || body.ReplayID != replayTestID || body.SubscriberID != sub {
			t.Errorf("message %s: replayed=%v replayId=%q subscriberId=%q; want replayed by %s for %s", body.EventID, body.Replayed, body.ReplayID, body.SubscriberID, replayTestID, sub)
		}
		if want := event.ReplayDeduplicationID(replayTestID, body.AgentID, body.EventID); m.GroupID != body.AgentID || m.DedupID != want {
			t.Errorf("message %s: group %q, dedup id %q; want group %q (the producer), dedup id %q", body.EventID, m.GroupID, m.DedupID, body.AgentID, want)
		}
		ids = append(ids, body.EventID)
	}
	return ids
}

// replayCounts is a ReplayRecorder keeping its counts.
type replayCounts struct {
	mu       sync.Mutex
	started  int
	finished map[string]int
	messages int
}

func (c *replayCounts) ReplayStarted() { c.mu.Lock(); c.started++; c.mu.Unlock() }
func (c *replayCounts) Replayed(n int) { c.mu.Lock(); c.messages += n; c.mu.Unlock() }
func (c *replayCounts) ReplayFinished(state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished == nil {
		c.finished = map[string]int{}
	}
	c.finished[state]++
}

// check fails t unless the counts are started replays started, messages
// messages, and finished (state: count) replays finished.
func (c *replayCounts) check(t *testing.T, started, messages int, finished map[string]int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started != started || c.messages != messages || !maps.Equal(c.finished, finished) {
		t.Errorf("counted %d replays started, %d messages, finished %v; want %d, %d, %v", c.started, c.messages, c.finished, started, messages, finished)
	}
}

// pageReads is the store's ReplayEvents remembering when each page was
// read and the events read so far, in log order.
type pageReads struct {
	*memstore.Store

	mu     sync.Mutex
	at     []time.Time
	read   []store.LoggedEvent
	readTo bool // a page said the window has no more
}

func (f *pageReads) ReplayEvents(ctx context.Context, q store.ReplayQuery) ([]store.LoggedEvent, string, error) {
	events, next, err := f.Store.ReplayEvents(ctx, q)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = append(f.at, time.Now())
	f.read = append(f.read, events...)
	f.readTo = f.readTo || (err == nil && next == "")
	return events, next, err
}

// lastRead returns the timestamp of the last event read, and whether the
// whole window has been read.
func (f *pageReads) lastRead() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.read) == 0 {
		return "", f.readTo
	}
	return f.read[len(f.read)-1].Timestamp, f.readTo
}

// events returns the events read so far, in log order.
func (f *pageReads) events() []store.LoggedEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.read)
}

// times returns when each page was read.
func (f *pageReads) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.at)
}

// TestReplayerSendsEachMillisecondInPublishOrder: the log sorts events of
// one millisecond by producer and event id; the replay sends them in the
// order their producer published them (sequence number, of any length,
// then place in the record), and sends none of a millisecond before it has
// read the page that ends it.
func TestReplayerSendsEachMillisecondInPublishOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(nil, "s")
		logEvents(t, st,
			// Millisecond 1, log order w x y z (event ids), published z y x w.
			loggedEvent("s", "p", "e-w", 1, "10", 0),
			loggedEvent("s", "p", "e-x", 1, "9", 0),
			loggedEvent("s", "p", "e-y", 1, "5", 1),
			loggedEvent("s", "p", "e-z", 1, "5", 0),
			loggedEvent("s", "q", "q-a", 1, "7", 0), // another producer: its own group
			// Millisecond 2, log order a b, published b a.
			loggedEvent("s", "p", "e-a", 2, "12", 0),
			loggedEvent("s", "p", "e-b", 2, "11", 0),
			loggedEvent("s", "p", "e-c", 3, "13", 0),
		)
		newReplay(t, st, "s")
		reads := &pageReads{Store: st}
		send := &recordingSender{Store: st, t: t, respond: func(n int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
			last, all := reads.lastRead()
			for _, id := range messageEventIDs(t, msgs) {
				for _, e := range reads.events() {
					if e.EventID == id && e.Timestamp >= last && !all {
						t.Errorf("call %d sent %s of %s before the page after that millisecond was read", n, id, e.Timestamp)
					}
				}
			}
			return nil, nil
		}}
		// Pages of 2 items: millisecond 1 spans three pages.
		counts := &replayCounts{}
		runReplayer(t, ReplayerDeps{Replays: reads, Agents: st, Queues: send, Metrics: counts}, ReplayerConfig{PageItems: 2})

		rep := awaitReplay(t, st, "s")
		want := []string{"e-z", "e-y", "e-x", "e-w", "q-a", "e-b", "e-a", "e-c"}
		if got := replayedIDs(t, st, "s"); !slices.Equal(got, want) {
			t.Errorf("queue holds %v, want %v", got, want)
		}
		if rep.State != store.ReplayDone || rep.Sent != 8 || rep.Found != 8 || rep.ErrorCount != 0 || rep.LastTimestamp != replayTimestamp(3) {
			t.Errorf("replay = %s, sent %d of %d, %d errors, last %s; want done, 8 of 8, 0 errors, last %s", rep.State, rep.Sent, rep.Found, rep.ErrorCount, rep.LastTimestamp, replayTimestamp(3))
		}
		counts.check(t, 1, 8, map[string]int{store.ReplayDone: 1})
		if len(reads.times()) < 4 {
			t.Errorf("%d pages read, want at least 4 of 2 items for 8 events", len(reads.times()))
		}
	})
}

// TestReplayerEntryFailures: an event SQS refuses is skipped and named in
// the replay's errors, the others delivered in order; an entry SQS fails
// for its own reasons (throttling) is resent until SQS takes it, however
// many times that takes.
func TestReplayerEntryFailures(t *testing.T) {
	// fail fails the entry of event id, times times (-1: always), with
	// code; with rest, the entries after it too (all one producer's), as
	// SQS keeps a FIFO group's order.
	fail := func(id, code string, senderFault, rest bool, times int) func(int, string, []store.QueueMessage) ([]store.BatchFailure, error) {
		var mu sync.Mutex
		failures := 0
		return func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
			mu.Lock()
			defer mu.Unlock()
			var failed []store.BatchFailure
			for i, id2 := range messageEventIDs(t, msgs) {
				if (id2 == id && (times < 0 || failures < times)) || (rest && len(failed) > 0) {
					failed = append(failed, store.BatchFailure{ID: msgs[i].ID, Code: code, Message: "entry failed", SenderFault: senderFault})
				}
			}
			if len(failed) > 0 {
				failures++
			}
			return failed, nil
		}
	}
	all := eventIDs("e-", 5)
	for _, tc := range []struct {
		name      string
		respond   func(int, string, []store.QueueMessage) ([]store.BatchFailure, error)
		wantQueue []string
		wantError string // in the replay's only error; "" for none
	}{
		{"refused", fail("e-02", "InvalidParameterValue", true, false, -1), []string{"e-00", "e-01", "e-03", "e-04"},
			"event e-02 of producer p at " + replayTimestamp(2) + " not re-delivered: SQS refused it: InvalidParameterValue"},
		// More throttles than maxEntryAttempts: they are the service's, not
		// the entry's. (SQS may mark a KMS throttle as the sender's fault.)
		{"throttled", fail("e-02", "ThrottlingException", false, true, 3*maxEntryAttempts), all, ""},
		{"KMS throttled", fail("e-02", "KMSThrottlingException", true, true, 3), all, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore(nil, "s")
				logEvents(t, st, spacedEvents("s", 5)...)
				newReplay(t, st, "s")
				send := &recordingSender{Store: st, t: t, respond: tc.respond}
				runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: send}, ReplayerConfig{})

				rep := awaitReplay(t, st, "s")
				if got := replayedIDs(t, st, "s"); !slices.Equal(got, tc.wantQueue) {
					t.Errorf("queue holds %v, want %v", got, tc.wantQueue)
				}
				wantErrors := 0
				if tc.wantError != "" {
					wantErrors = 1
				}
				if rep.State != store.ReplayDone || rep.Sent != len(tc.wantQueue) || rep.Found != 5 || rep.ErrorCount != wantErrors || len(rep.Errors) != wantErrors {
					t.Fatalf("replay = %s, sent %d of %d, errors %d %q; want done, %d of 5, %d errors", rep.State, rep.Sent, rep.Found, rep.ErrorCount, rep.Errors, len(tc.wantQueue), wantErrors)
				}
				if wantErrors > 0 && !strings.HasPrefix(rep.Errors[0], tc.wantError) {
					t.Errorf("replay error %q, want it to start %q", rep.Errors[0], tc.wantError)
				}
			})
		})
	}
}

// TestReplayerFailsSayingWhatToDo: a missing queue or subscriber ends the
// replay as failed, its last error saying what to fix and where a new
// replay should start to go on.
func TestReplayerFailsSayingWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name     string
		agents   []string // registered agents
		deleteAt int      // the send call that finds the queue gone; -1: before the replay
		wantSent int
		wantErr  string
	}{
		{"queue missing", []string{"s"}, -1, 0,
			"sending its events: queue " + queueURL("s") + " does not exist: recreate it, then start a new replay from " + replayTimestamp(0)},
		{"queue deleted after a batch", []string{"s"}, 1, 10,
			"sending its events: queue " + queueURL("s") + " does not exist: recreate it, then start a new replay from " + replayTimestamp(9)},
		{"subscriber missing", nil, 0, 0,
			"subscriber agent s does not exist: register it again (POST /agents with its resourceArn gives back its id and queue), then start a new replay from " + replayTimestamp(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore(nil, tc.agents...)
				logEvents(t, st, spacedEvents("s", 25)...)
				newReplay(t, st, "s")
				if tc.deleteAt < 0 {
					st.DeleteQueue(queueURL("s"))
				}
				send := &recordingSender{Store: st, t: t, respond: func(n int, url string, _ []store.QueueMessage) ([]store.BatchFailure, error) {
					if n == tc.deleteAt {
						st.DeleteQueue(url)
					}
					return nil, nil
				}}
				counts := &replayCounts{}
				runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: send, Metrics: counts}, ReplayerConfig{})

				rep := awaitReplay(t, st, "s")
				counts.check(t, 1, tc.wantSent, map[string]int{store.ReplayFailed: 1})
				if rep.State != store.ReplayFailed || rep.Sent != tc.wantSent || len(rep.Errors) == 0 {
					t.Fatalf("replay = %s, sent %d, errors %q; want failed, %d sent, an error", rep.State, rep.Sent, rep.Errors, tc.wantSent)
				}
				if got := rep.Errors[len(rep.Errors)-1]; got != tc.wantErr {
					t.Errorf("replay's error:\n%s\nwant\n%s", got, tc.wantErr)
				}
			})
		})
	}
}

// TestReplayerStopsWhenNoLongerItsOwn: a replay cancelled, or taken over
// by another task (its lease lapsed, store.ErrConflict), while a batch is
// in flight gets no further batch from this task, and keeps the state the
// cancel or the other task gave it.
func TestReplayerStopsWhenNoLongerItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		take      func(st *memstore.Store) error
		wantState string
		wantOwner string
		counted   map[string]int // replays finished, by state
	}{
		{"cancelled", func(st *memstore.Store) error {
			_, err := st.CancelReplay(context.Background(), "s", replayTestID, time.Now())
			return err
		}, store.ReplayCancelled, "task-a", map[string]int{store.ReplayCancelled: 1}},
		{"lease lost", func(st *memstore.Store) error {
			// Task b saw the lease lapse (task a paused past it) and claims
			// the replay for an hour.
			_, err := st.ClaimReplay(context.Background(), "s", replayTestID, "task-b", time.Now().Add(time.Hour), time.Now().Add(replayLease+time.Second))
			return err
		}, store.ReplayRunning, "task-b", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore(nil, "s")
				logEvents(t, st, spacedEvents("s", 25)...)
				newReplay(t, st, "s")
				send := &recordingSender{Store: st, t: t, respond: func(n int, _ string, _ []store.QueueMessage) ([]store.BatchFailure, error) {
					if n == 0 {
						if err := tc.take(st); err != nil {
							t.Error(err)
						}
					}
					return nil, nil
				}}
				counts := &replayCounts{}
				stop := runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: send, Metrics: counts}, ReplayerConfig{Owner: "task-a"})
				// At 100 events/s the other 15 would go within 0.2 s.
				time.Sleep(30 * time.Second)
				stop()

				if got, want := replayedIDs(t, st, "s"), eventIDs("e-", 10); !slices.Equal(got, want) {
					t.Errorf("queue holds %v, want only the batch in flight %v", got, want)
				}
				rep, err := st.Replay(context.Background(), "s", replayTestID)
				if err != nil {
					t.Fatal(err)
				}
				counts.check(t, 1, 10, tc.counted)
				if rep.State != tc.wantState || rep.Owner != tc.wantOwner || len(rep.Errors) != 0 {
					t.Errorf("replay = %s, owner %s, errors %q; want %s, owner %s, no errors", rep.State, rep.Owner, rep.Errors, tc.wantState, tc.wantOwner)
				}
			})
		})
	}
}

// TestReplayerPaces: one task sends at most Rate messages a second over
// all its replays together, and reads at most Reads pages a second, on
// the bubble's clock.
func TestReplayerPaces(t *testing.T) {
	t.Run("messages, two replays sharing the rate", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const rate = 10
			st := newMemStore(nil, "s1", "s2")
			for _, sub := range []string{"s1", "s2"} {
				logEvents(t, st, spacedEvents(sub, 20)...)
				newReplay(t, st, sub)
			}
			var mu sync.Mutex
			var sends []time.Time // one per message sent
			send := &recordingSender{Store: st, t: t, respond: func(_ int, _ string, msgs []store.QueueMessage) ([]store.BatchFailure, error) {
				mu.Lock()
				defer mu.Unlock()
				for range msgs {
					sends = append(sends, time.Now())
				}
				return nil, nil
			}}
			runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: send}, ReplayerConfig{Rate: rate, Reads: 1000})
			for _, sub := range []string{"s1", "s2"} {
				if rep := awaitReplay(t, st, sub); rep.State != store.ReplayDone || rep.Sent != 20 {
					t.Fatalf("replay of %s = %s, sent %d; want done, 20", sub, rep.State, rep.Sent)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			slices.SortFunc(sends, time.Time.Compare)
			// Message i may go no earlier than i/rate after the first
			// batch's 10 (one batch's worth is taken at once).
			for i, at := range sends {
				if early := time.Duration(max(i-9, 0)) * time.Second / rate; at.Sub(sends[0]) < early {
					t.Errorf("message %d of 40 sent %v after the first, want at least %v at %d/s", i, at.Sub(sends[0]), early, rate)
				}
			}
			if took := sends[len(sends)-1].Sub(sends[0]); took > 4*time.Second {
				t.Errorf("40 messages took %v at %d/s, want about 3 s", took, rate)
			}
		})
	})
	t.Run("pages", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const reads = 2
			st := newMemStore(nil, "s")
			logEvents(t, st, spacedEvents("s", 4)...)
			newReplay(t, st, "s")
			pages := &pageReads{Store: st}
			runReplayer(t, ReplayerDeps{Replays: pages, Agents: st, Queues: st}, ReplayerConfig{Reads: reads, Rate: 1000, PageItems: 1})
			if rep := awaitReplay(t, st, "s"); rep.State != store.ReplayDone || rep.Sent != 4 {
				t.Fatalf("replay = %s, sent %d; want done, 4", rep.State, rep.Sent)
			}
			at := pages.times()
			if len(at) < 4 {
				t.Fatalf("%d pages read, want at least 4 of 1 item", len(at))
			}
			for i := 1; i < len(at); i++ {
				if gap := at[i].Sub(at[i-1]); gap < time.Second/reads {
					t.Errorf("page %d read %v after the one before, want at least %v at %d/s", i, gap, time.Second/reads, reads)
				}
			}
		})
	})
}

// logRun writes es into st's SubscriberEvents as one packed item.
func logRun(t *testing.T, st *memstore.Store, es ...store.SubscriberEvent) {
	t.Helper()
	if existing, err := st.PutEventRun(context.Background(), es); err != nil || existing != nil {
		t.Fatalf("PutEventRun = %v, %v; want the item written", existing, err)
	}
}

// TestReplayerPackedWindow: a window that starts inside packed items and
// ends inside another re-delivers exactly its events, once: each item's
// in the item's (the producer's) order even where their own timestamps
// are not, items in log order, one-event items among them.
func TestReplayerPackedWindow(t *testing.T) {
	for _, pageItems := range []int32{0, 1, 2} {
		t.Run(fmt.Sprintf("pages of %d items", pageItems), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore(nil, "s")
				ev := loggedEvent
				// Before the window, wholly: not read, or read and dropped.
				logRun(t, st, ev("s", "q", "f-0", -1200, "190", 0), ev("s", "q", "f-1", -1100, "191", 0))
				// Starting before the window.
				logRun(t, st, ev("s", "p", "a-0", -300, "100", 0), ev("s", "p", "a-1", -100, "101", 0),
					ev("s", "p", "a-2", 0, "102", 0), ev("s", "p", "a-3", 200, "103", 0))
				logRun(t, st, ev("s", "q", "b-0", -50, "200", 0), ev("s", "q", "b-1", 100, "201", 0), ev("s", "q", "b-2", 50, "202", 0))
				// Within it; a one-event item among the packed ones.
				logRun(t, st, ev("s", "p", "c-0", 0, "104", 0), ev("s", "p", "c-1", 0, "104", 1), ev("s", "p", "c-2", 300, "105", 0))
				logEvents(t, st, ev("s", "r", "r-0", 100, "300", 0))
				// Ending after it, and after it wholly.
				logRun(t, st, ev("s", "p", "d-0", 400, "106", 0), ev("s", "p", "d-1", 499, "107", 0),
					ev("s", "p", "d-2", 500, "108", 0), ev("s", "p", "d-3", 700, "109", 0))
				logRun(t, st, ev("s", "p", "e-0", 600, "110", 0), ev("s", "p", "e-1", 610, "111", 0))
				if err := st.CreateReplay(context.Background(), store.Replay{SubscriberID: "s", ID: replayTestID, From: replayFrom, To: replayFrom.Add(500 * time.Millisecond)}); err != nil {
					t.Fatal(err)
				}
				runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: st}, ReplayerConfig{PageItems: pageItems})

				rep := awaitReplay(t, st, "s")
				want := []string{"a-2", "a-3", "b-1", "b-2", "c-0", "c-1", "c-2", "r-0", "d-0", "d-1"}
				if got := replayedIDs(t, st, "s"); !slices.Equal(got, want) {
					t.Errorf("queue holds %v, want %v", got, want)
				}
				if rep.State != store.ReplayDone || rep.Sent != len(want) || rep.Found != len(want) || rep.ErrorCount != 0 {
					t.Errorf("replay = %s, sent %d of %d, %d errors; want done, %d of %d, none", rep.State, rep.Sent, rep.Found, rep.ErrorCount, len(want), len(want))
				}
			})
		})
	}
}

// TestReplayerResumesPackedItems: a replay stopped after any batch (its
// task shutting down) and taken over by another task, over packed items
// whose millisecond spans a page edge, delivers every event once: the
// saved cursor passes only items all sent, and the second task resends
// no event of them.
func TestReplayerResumesPackedItems(t *testing.T) {
	ev := loggedEvent
	items := [][]store.SubscriberEvent{
		{ev("s", "p", "a-0", 0, "100", 0), ev("s", "p", "a-1", 1, "101", 0), ev("s", "p", "a-2", 2, "102", 0)},
		{ev("s", "q", "b-0", 1, "200", 0), ev("s", "q", "b-1", 2, "201", 0)},
		// Millisecond 2 holds two items: with pages of one item it spans
		// a page edge, and its 13 events two batches.
		{ev("s", "p", "c-0", 2, "103", 0), ev("s", "p", "c-1", 3, "104", 0), ev("s", "p", "c-2", 4, "105", 0), ev("s", "p", "c-3", 5, "106", 0),
			ev("s", "p", "c-4", 6, "107", 0), ev("s", "p", "c-5", 7, "108", 0), ev("s", "p", "c-6", 8, "109", 0), ev("s", "p", "c-7", 9, "110", 0)},
		{ev("s", "r", "d-0", 2, "300", 0), ev("s", "r", "d-1", 3, "301", 0), ev("s", "r", "d-2", 4, "302", 0), ev("s", "r", "d-3", 5, "303", 0), ev("s", "r", "d-4", 6, "304", 0)},
		{ev("s", "p", "e-0", 5, "111", 0), ev("s", "p", "e-1", 6, "112", 0)},
	}
	var want []string
	for _, it := range items {
		for _, e := range it {
			want = append(want, e.EventID)
		}
	}
	flat := func(calls [][]string) []string { return slices.Concat(calls...) }
	for stopAfter := range 5 { // the calls: a, b, c and d-0 d-1, d-2 to d-4, e
		t.Run(fmt.Sprintf("stopped after call %d", stopAfter), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newMemStore(nil, "s")
				for _, it := range items {
					logRun(t, st, it...)
				}
				newReplay(t, st, "s")
				called := make(chan struct{})
				reads := &pageReads{Store: st}
				sendA := &recordingSender{Store: st, t: t, respond: func(n int, _ string, _ []store.QueueMessage) ([]store.BatchFailure, error) {
					if n == stopAfter {
						close(called)
					}
					return nil, nil
				}}
				stopA := runReplayer(t, ReplayerDeps{Replays: reads, Agents: st, Queues: sendA}, ReplayerConfig{Owner: "task-a", PageItems: 1})
				select {
				case <-called:
				case <-time.After(time.Minute):
					t.Fatalf("task a made no call %d in a minute", stopAfter)
				}
				stopA()
				saved, err := st.Replay(context.Background(), "s", replayTestID)
				if err != nil {
					t.Fatal(err)
				}
				sentA := flat(sendA.sentEventIDs(t, queueURL("s")))
				var passed []string // events of the items the saved cursor passed
				for _, e := range reads.events() {
					if e.Position <= saved.Cursor {
						passed = append(passed, e.EventID)
						if !slices.Contains(sentA, e.EventID) {
							t.Errorf("saved cursor %s passed event %s, which task a did not send", saved.Cursor, e.EventID)
						}
					}
				}

				sendB := &recordingSender{Store: st, t: t}
				runReplayer(t, ReplayerDeps{Replays: st, Agents: st, Queues: sendB}, ReplayerConfig{Owner: "task-b", PageItems: 1})
				rep := awaitReplay(t, st, "s")
				for _, id := range flat(sendB.sentEventIDs(t, queueURL("s"))) {
					if slices.Contains(passed, id) {
						t.Errorf("task b resent %s, of an item the saved cursor %s passed", id, saved.Cursor)
					}
				}
				if got := replayedIDs(t, st, "s"); !slices.Equal(got, want) {
					t.Errorf("queue holds %v, want %v", got, want)
				}
				if rep.State != store.ReplayDone || rep.Sent != len(want) || rep.Found != len(want) || rep.ErrorCount != 0 {
					t.Errorf("replay = %s, sent %d of %d, %d errors; want done, %d of %d, none", rep.State, rep.Sent, rep.Found, rep.ErrorCount, len(want), len(want))
				}
			})
		})
	}
}
