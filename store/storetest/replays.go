package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/store"
)

// testReplayLease: a replay is created running and unowned; one task
// claims it, another cannot while the lease holds; only the owner saves
// progress; a released or expired lease is taken over; a cancel ends it
// for its owner, is idempotent, and takes it off the running list.
func testReplayLease(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	r := store.Replay{SubscriberID: "sub", ID: "r1", From: now.Add(-time.Hour), To: now, ProducerID: "p", CreatedAt: now}
	if err := s.CreateReplay(ctx, r); err != nil {
		t.Fatalf("CreateReplay: %v", err)
	}
	if err := s.CreateReplay(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateReplay of the same id = %v, want store.ErrConflict", err)
	}
	if _, err := s.Replay(ctx, "sub", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replay of an unknown id = %v, want store.ErrNotFound", err)
	}
	if _, err := s.Replay(ctx, "other", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replay of another subscriber's id = %v, want store.ErrNotFound", err)
	}
	got, err := s.Replay(ctx, "sub", "r1")
	if err != nil || got.State != store.ReplayRunning || got.Owner != "" || !got.From.Equal(r.From) || !got.To.Equal(r.To) || got.ProducerID != "p" || got.Cursor != "" {
		t.Fatalf("Replay = %+v, %v; want the request, running, unowned, no cursor", got, err)
	}
	listed := func(id string) func() (bool, error) {
		return func() (bool, error) {
			rs, err := s.RunningReplays(ctx)
			return slices.ContainsFunc(rs, func(r store.Replay) bool { return r.ID == id }), err
		}
	}
	poll(t, listed("r1"))
	if ok, _ := listed("r1")(); !ok {
		t.Error("RunningReplays does not list the new replay")
	}

	lease := 10 * time.Second
	if _, err := s.ClaimReplay(ctx, "sub", "r1", "task-a", now.Add(lease), now); err != nil {
		t.Fatalf("ClaimReplay by task-a: %v", err)
	}
	if _, err := s.ClaimReplay(ctx, "sub", "r1", "task-b", now.Add(lease), now.Add(time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ClaimReplay by task-b while task-a's lease holds = %v, want store.ErrConflict", err)
	}
	if _, err := s.ClaimReplay(ctx, "sub", "nope", "task-b", now.Add(lease), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClaimReplay of an unknown replay = %v, want store.ErrNotFound", err)
	}
	progress := got
	progress.Owner, progress.Cursor, progress.Found, progress.Sent, progress.LastTimestamp = "task-a", "2025-07-01T12:00:00.000Z#p#e1", 3, 2, "2025-07-01T12:00:00.000Z"
	progress.Errors, progress.UpdatedAt, progress.LeaseUntil = []string{"event e2: refused"}, now.Add(time.Second), now.Add(lease)
	if err := s.SaveReplay(ctx, progress); err != nil {
		t.Fatalf("SaveReplay by its owner: %v", err)
	}
	stranger := progress
	stranger.Owner, stranger.Sent = "task-b", 99
	if err := s.SaveReplay(ctx, stranger); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SaveReplay by another task = %v, want store.ErrConflict", err)
	}
	got, err = s.Replay(ctx, "sub", "r1")
	if err != nil || got.Cursor != progress.Cursor || got.Found != 3 || got.Sent != 2 || got.LastTimestamp != progress.LastTimestamp ||
		!slices.Equal(got.Errors, progress.Errors) || got.ErrorCount != 1 || got.Owner != "task-a" || !got.LeaseUntil.Equal(now.Add(lease)) {
		t.Errorf("Replay after SaveReplay = %+v, %v; want the owner's progress", got, err)
	}

	// Released (lease zero): taken over at once. Expired: likewise.
	progress.LeaseUntil = time.Time{}
	if err := s.SaveReplay(ctx, progress); err != nil {
		t.Fatalf("SaveReplay releasing the lease: %v", err)
	}
	claimed, err := s.ClaimReplay(ctx, "sub", "r1", "task-b", now.Add(lease), now)
	if err != nil || claimed.Owner != "task-b" || claimed.Cursor != progress.Cursor || claimed.Sent != 2 {
		t.Fatalf("ClaimReplay after release = %+v, %v; want task-b's, with the progress so far", claimed, err)
	}
	if err := s.SaveReplay(ctx, progress); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SaveReplay by the former owner = %v, want store.ErrConflict", err)
	}
	if _, err := s.ClaimReplay(ctx, "sub", "r1", "task-a", now.Add(2*lease), now.Add(lease+time.Millisecond)); err != nil {
		t.Errorf("ClaimReplay once task-b's lease expired: %v", err)
	}

	cancelled, err := s.CancelReplay(ctx, "sub", "r1", now.Add(2*time.Second))
	if err != nil || cancelled.State != store.ReplayCancelled {
		t.Fatalf("CancelReplay = %+v, %v; want cancelled", cancelled, err)
	}
	if again, err := s.CancelReplay(ctx, "sub", "r1", now.Add(3*time.Second)); err != nil || again.State != store.ReplayCancelled || !again.UpdatedAt.Equal(cancelled.UpdatedAt) {
		t.Errorf("CancelReplay again = %+v, %v; want it unchanged", again, err)
	}
	if _, err := s.CancelReplay(ctx, "sub", "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CancelReplay of an unknown replay = %v, want store.ErrNotFound", err)
	}
	progress.Owner = "task-a"
	if err := s.SaveReplay(ctx, progress); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SaveReplay of a cancelled replay = %v, want store.ErrConflict", err)
	}
	if _, err := s.ClaimReplay(ctx, "sub", "r1", "task-c", now.Add(lease), now.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ClaimReplay of a cancelled replay = %v, want store.ErrConflict", err)
	}
	poll(t, func() (bool, error) { ok, err := listed("r1")(); return !ok, err })
	if ok, _ := listed("r1")(); ok {
		t.Error("RunningReplays still lists the cancelled replay")
	}

	// A replay that ends as done keeps its last progress.
	if err := s.CreateReplay(ctx, store.Replay{SubscriberID: "sub", ID: "r2", From: now.Add(-time.Hour), To: now, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	d, err := s.ClaimReplay(ctx, "sub", "r2", "task-a", now.Add(lease), now)
	if err != nil {
		t.Fatal(err)
	}
	d.State, d.Sent, d.Found, d.UpdatedAt, d.LeaseUntil = store.ReplayDone, 5, 5, now.Add(time.Second), time.Time{}
	if err := s.SaveReplay(ctx, d); err != nil {
		t.Fatalf("SaveReplay done: %v", err)
	}
	if got, err := s.Replay(ctx, "sub", "r2"); err != nil || got.State != store.ReplayDone || got.Sent != 5 {
		t.Errorf("Replay after done = %+v, %v", got, err)
	}
	if c, err := s.CancelReplay(ctx, "sub", "r2", now.Add(time.Minute)); err != nil || c.State != store.ReplayDone {
		t.Errorf("CancelReplay of a done replay = %+v, %v; want it done, unchanged", c, err)
	}
}

// testReplayEventsPages: reading a window page by page, each page after
// the last position read, yields each event in it once, in log order,
// whatever the page size — events of one millisecond at a page edge
// included — and none outside it, of another subscriber or (when asked)
// of another producer.
func testReplayEventsPages(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	base := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	ts := func(ms int) string { return base.Add(time.Duration(ms) * time.Millisecond).Format(event.TimeLayout) }
	put := func(sub, producer, id string, ms int) {
		t.Helper()
		e := store.SubscriberEvent{Event: event.Event{EventID: id, AgentID: producer, EventType: "t", Timestamp: ts(ms), Data: json.RawMessage(`{"id":"` + id + `"}`)},
			SubscriberID: sub, ShardID: "shardId-0", Seq: "1"}
		if _, err := s.PutEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	put("sub", "p", "before", -1)
	var want, wantP []string
	// Written out of time order, several in one millisecond, two producers.
	for i, ms := range []int{5, 0, 3, 3, 3, 1, 7, 7, 2, 9} {
		id := fmt.Sprintf("e%02d", i)
		producer := []string{"p", "q"}[i%2]
		put("sub", producer, id, ms)
	}
	put("sub", "p", "at-to", 10) // To is excluded
	put("other", "p", "theirs", 4)
	// Log order: by timestamp, then producer, then id.
	want = []string{"e01", "e05", "e08", "e02", "e04", "e03", "e00", "e06", "e07", "e09"}
	for _, id := range want {
		var n int
		fmt.Sscanf(id, "e%d", &n)
		if n%2 == 0 {
			wantP = append(wantP, id)
		}
	}
	from, to := base, base.Add(10*time.Millisecond)
	read := func(producer, after string, limit int32) []string {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatalf("limit %d: more than 50 pages", limit)
			}
			page, next, err := s.ReplayEvents(ctx, store.ReplayQuery{SubscriberID: "sub", From: from, To: to, ProducerID: producer, After: after, Limit: limit})
			if err != nil {
				t.Fatalf("ReplayEvents: %v", err)
			}
			for _, e := range page {
				if e.SubscriberID != "sub" || e.Position == "" || string(e.Data) != `{"id":"`+e.EventID+`"}` || e.Timestamp == "" {
					t.Errorf("event %+v: want sub's, with its position, timestamp and data", e)
				}
				if after != "" && e.Position <= after {
					t.Errorf("event %s at %s is not after the page's start %s", e.EventID, e.Position, after)
				}
				ids = append(ids, e.EventID)
			}
			if next == "" {
				return ids
			}
			after = next
		}
	}
	for _, limit := range []int32{1, 2, 3, 4, 0} {
		if got := read("", "", limit); !slices.Equal(got, want) {
			t.Errorf("limit %d: read %v, want %v", limit, got, want)
		}
		if got := read("p", "", limit); !slices.Equal(got, wantP) {
			t.Errorf("limit %d, producer p: read %v, want %v", limit, got, wantP)
		}
	}
	// Resuming after an event's position reads the rest: what a task
	// taking a replay over does with the cursor. The first page's five
	// items are "before" (read, as it begins within store.MaxRunSpan of
	// From, but outside the window) and four of the window.
	page, _, err := s.ReplayEvents(ctx, store.ReplayQuery{SubscriberID: "sub", From: from, To: to, Limit: 5})
	if err != nil || len(page) != 4 {
		t.Fatalf("first page = %v, %v", page, err)
	}
	if got := read("", page[3].Position, 2); !slices.Equal(got, want[4:]) {
		t.Errorf("resumed after %s: read %v, want %v", page[3].Position, got, want[4:])
	}
}
