package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/fanout/fanout/event"
)

// heldKinesis is a fakeKinesis whose calls named in hold wait until their
// channel is closed: a PutRecords in flight for as long as a test needs.
type heldKinesis struct {
	*fakeKinesis
	mu   sync.Mutex
	n    int
	hold map[int]chan struct{}
}

func (h *heldKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	h.mu.Lock()
	ch := h.hold[h.n]
	h.n++
	h.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return h.fakeKinesis.PutRecords(ctx, in, opts...)
}

// publishResult is what one background Publish returned.
type publishResult struct {
	receipts []event.Receipt
	err      error
}

// startPublish runs Publish in the background and waits (on synctest's
// clock) until it is blocked: queued behind the call in flight, or done.
func startPublish(in *Ingest, events ...event.Event) <-chan publishResult {
	ch := make(chan publishResult, 1)
	go func() {
		r, err := in.Publish(context.Background(), events)
		ch <- publishResult{r, err}
	}()
	synctest.Wait()
	return ch
}

// answered reports whether a background Publish has returned.
func answered(ch <-chan publishResult) bool { return len(ch) > 0 }

// sentCalls describes every entry sent, per call, as "call producer:ids accepted".
func sentCalls(t *testing.T, sent []sentRecord) []string {
	t.Helper()
	var got []string
	for _, r := range sent {
		got = append(got, fmt.Sprintf("%d %s %v", r.call, describeRecord(t, r), r.accepted))
	}
	return got
}

func TestIngestGroupCommitPacksConcurrentRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		kc := &heldKinesis{fakeKinesis: &fakeKinesis{t: t}, hold: map[int]chan struct{}{0: release}}
		in := NewIngest(kc, "events")

		first := startPublish(in, ingestEvent("A", "a0", 0))
		// a0's call is in flight: A's next events, from three requests
		// (one with two events) and another producer, wait for it.
		var later []<-chan publishResult
		var want []event.Event
		for _, evs := range [][]event.Event{
			{ingestEvent("A", "a1", 0)},
			{ingestEvent("A", "a2", 0), ingestEvent("A", "a3", 0)},
			{ingestEvent("B", "b1", 0)},
			{ingestEvent("A", "a4", 0)},
		} {
			later = append(later, startPublish(in, evs...))
			want = append(want, evs...)
		}
		if n := kc.callCount(); n != 0 {
			t.Fatalf("%d calls completed while the first was held", n)
		}
		for i, ch := range append([]<-chan publishResult{first}, later...) {
			if answered(ch) {
				t.Fatalf("request %d answered before its events were in the stream", i)
			}
		}
		close(release)
		synctest.Wait()

		got := sentCalls(t, kc.records())
		wantCalls := []string{"0 A:a0 true", "1 A:a1,a2,a3,a4 true", "1 B:b1 true"}
		if !reflect.DeepEqual(got, wantCalls) {
			t.Errorf("entries sent =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
		}
		all := append([]event.Event{ingestEvent("A", "a0", 0)}, want...)
		var receipts []event.Receipt
		for i, ch := range append([]<-chan publishResult{first}, later...) {
			r := <-ch
			if r.err != nil {
				t.Fatalf("request %d: %v", i, r.err)
			}
			receipts = append(receipts, r.receipts...)
		}
		checkIngestOutcome(t, all, receipts, kc.records())
	})
}

func TestIngestGroupCommitNoDelayWhenIdle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		kc := &fakeKinesis{t: t}
		in := NewIngest(kc, "events")
		for i := range 3 {
			start := time.Now()
			if _, err := in.Publish(context.Background(), []event.Event{ingestEvent("A", fmt.Sprint(i), 0)}); err != nil {
				t.Fatal(err)
			}
			// synctest's clock: any timer or wait on the way would show.
			if d := time.Since(start); d != 0 {
				t.Errorf("Publish %d on an idle Ingest took %s of the bubble's clock, want 0", i, d)
			}
		}
		if n := kc.callCount(); n != 3 {
			t.Errorf("PutRecords calls = %d, want one per Publish", n)
		}
	})
}

func TestIngestGroupCommitFailedGroupFailsItsRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		refuseA := true
		var mu sync.Mutex
		kc := &heldKinesis{fakeKinesis: &fakeKinesis{t: t}, hold: map[int]chan struct{}{0: release}}
		kc.refuse = func(call int, key string, data []byte) bool {
			mu.Lock()
			defer mu.Unlock()
			return call > 0 && key == "A" && refuseA
		}
		in := NewIngest(kc, "events")
		in.retryFor = 3 * time.Second

		x := startPublish(in, ingestEvent("A", "x", 0))
		y := startPublish(in, ingestEvent("A", "y", 0))
		z := startPublish(in, ingestEvent("A", "z", 0), ingestEvent("B", "zb", 0))
		w := startPublish(in, ingestEvent("B", "w", 0))
		close(release)
		synctest.Wait() // x is in; the group [y, z] is refused and backs off
		if r := <-x; r.err != nil {
			t.Fatalf("x, accepted before the group: %v", r.err)
		}
		// An event arriving while its producer's group is retried waits
		// behind it.
		u := startPublish(in, ingestEvent("A", "u", 0))
		// u gets a record of its own once the group is given up, refused
		// too while A is.
		time.Sleep(in.retryFor + time.Minute)
		synctest.Wait()

		for name, ch := range map[string]<-chan publishResult{"y": y, "z": z, "u": u} {
			if !answered(ch) {
				t.Fatalf("%s not answered after the group was given up", name)
			}
			r := <-ch
			if !errors.Is(r.err, event.ErrUnavailable) || r.receipts != nil {
				t.Errorf("%s = %v, %v; want nil, event.ErrUnavailable", name, r.receipts, r.err)
			}
		}
		if r := <-w; r.err != nil {
			t.Errorf("w, of a producer not in the failed group: %v", r.err)
		}

		// The producer goes on after a given-up group.
		mu.Lock()
		refuseA = false
		mu.Unlock()
		v := startPublish(in, ingestEvent("A", "v", 0))
		if r := <-v; r.err != nil {
			t.Fatalf("v, after the failed group: %v", r.err)
		}
		var accepted []string
		for _, r := range kc.records() {
			if r.accepted && r.key == "A" {
				accepted = append(accepted, recordEventIDs(t, r.data)...)
			}
			if r.key == "A" && strings.Contains(describeRecord(t, r), "u") && strings.Contains(describeRecord(t, r), "y") {
				t.Errorf("u was packed into the group it arrived behind: %s", describeRecord(t, r))
			}
		}
		if want := []string{"x", "v"}; !reflect.DeepEqual(accepted, want) {
			t.Errorf("A's accepted events = %v, want %v", accepted, want)
		}
	})
}

func TestIngestGroupCommitRetryKeepsOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		kc := &heldKinesis{fakeKinesis: &fakeKinesis{t: t}, hold: map[int]chan struct{}{0: release}}
		kc.refuse = func(call int, key string, data []byte) bool { return call == 1 } // the group, once
		in := NewIngest(kc, "events")
		x := startPublish(in, ingestEvent("A", "x", 0))
		y := startPublish(in, ingestEvent("A", "y", 0), ingestEvent("A", "z", 0))
		close(release)
		synctest.Wait() // [y z] refused, backing off
		u := startPublish(in, ingestEvent("A", "u", 0))
		time.Sleep(time.Minute)
		synctest.Wait()
		all := []event.Event{ingestEvent("A", "x", 0), ingestEvent("A", "y", 0), ingestEvent("A", "z", 0), ingestEvent("A", "u", 0)}
		var receipts []event.Receipt
		for _, ch := range []<-chan publishResult{x, y, u} {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			receipts = append(receipts, r.receipts...)
		}
		got := sentCalls(t, kc.records())
		want := []string{"0 A:x true", "1 A:y,z false", "2 A:y,z true", "3 A:u true"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("entries sent =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		checkIngestOutcome(t, all, receipts, kc.records())
	})
}

func TestIngestGroupCommitCancelledRequestLeavesTheGroup(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		kc := &heldKinesis{fakeKinesis: &fakeKinesis{t: t}, hold: map[int]chan struct{}{0: release}}
		in := NewIngest(kc, "events")
		x := startPublish(in, ingestEvent("A", "x", 0))
		ctx, cancel := context.WithCancel(context.Background())
		gone := make(chan error, 1)
		go func() {
			_, err := in.Publish(ctx, []event.Event{ingestEvent("A", "gone", 0)})
			gone <- err
		}()
		synctest.Wait()
		y := startPublish(in, ingestEvent("A", "y", 0))
		cancel()
		synctest.Wait()
		if err := <-gone; !errors.Is(err, event.ErrUnavailable) {
			t.Errorf("cancelled Publish = %v, want event.ErrUnavailable", err)
		}
		close(release)
		synctest.Wait()
		for _, ch := range []<-chan publishResult{x, y} {
			if r := <-ch; r.err != nil {
				t.Fatal(r.err)
			}
		}
		got := sentCalls(t, kc.records())
		want := []string{"0 A:x true", "1 A:y true"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("entries sent = %v, want %v: an event whose request was cancelled before it was sent is not sent", got, want)
		}
	})
}
