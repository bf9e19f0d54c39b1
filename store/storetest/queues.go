package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/fanout/fanout/store"
)

// messages returns n messages of group g: ids, deduplication ids and
// bodies g-0, g-1, ...
func messages(g string, n int) []store.QueueMessage {
	msgs := make([]store.QueueMessage, n)
	for i := range msgs {
		id := fmt.Sprintf("%s-%d", g, i)
		msgs[i] = store.QueueMessage{ID: id, GroupID: g, DedupID: id, Body: id}
	}
	return msgs
}

// send sends msgs to url in one call, failing t unless SQS takes all.
func send(t *testing.T, s Store, url string, msgs []store.QueueMessage) {
	t.Helper()
	if failed, err := s.SendMessages(testContext(t), url, msgs); err != nil || len(failed) != 0 {
		t.Fatalf("SendMessages = %+v, %v; want no failures", failed, err)
	}
}

// byGroup splits bodies "<group>-<n>" by group, keeping their order.
func byGroup(bodies []string) map[string][]string {
	out := map[string][]string{}
	for _, b := range bodies {
		g, _, _ := strings.Cut(b, "-")
		out[g] = append(out[g], b)
	}
	return out
}

// testSendMessagesInGroupOrder: two groups' messages, interleaved over
// several calls, stay in order within each group; a message whose
// deduplication id its group has just seen is dropped.
func testSendMessagesInGroupOrder(t *testing.T, h Harness) {
	s := h.New(t)
	url := register(t, s).QueueURL
	a, b := messages("a", 12), messages("b", 12)
	var all []store.QueueMessage
	for i := range a {
		all = append(all, a[i], b[i])
	}
	for i := 0; i < len(all); i += store.MaxBatch {
		send(t, s, url, all[i:min(i+store.MaxBatch, len(all))])
	}
	dup := a[3]
	dup.ID = "again"
	send(t, s, url, []store.QueueMessage{dup})
	if failed, err := s.SendMessages(testContext(t), url, nil); err != nil || len(failed) != 0 {
		t.Errorf("SendMessages of no messages = %+v, %v; want nothing", failed, err)
	}

	got := byGroup(h.Bodies(t, s, url, len(all)))
	want := byGroup(nil)
	for _, m := range all {
		want[m.GroupID] = append(want[m.GroupID], m.Body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queue holds %v, want %v: each group in order, the duplicate dropped", got, want)
	}
}

// testSendMessagesRejects: a batch SQS refuses whole is store.ErrRejected
// and sends nothing.
func testSendMessagesRejects(t *testing.T, h Harness) {
	s := h.New(t)
	url := register(t, s).QueueURL
	sameID := messages("a", 2)
	sameID[1].ID = sameID[0].ID
	for _, tc := range []struct {
		name string
		msgs []store.QueueMessage
	}{
		{"more than MaxBatch", messages("a", store.MaxBatch+1)},
		{"entry ids not distinct", sameID},
	} {
		if failed, err := s.SendMessages(testContext(t), url, tc.msgs); !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: SendMessages = %+v, %v; want store.ErrRejected", tc.name, failed, err)
		}
	}
	last := messages("z", 1)
	send(t, s, url, last)
	if got := h.Bodies(t, s, url, 1); !reflect.DeepEqual(got, []string{last[0].Body}) {
		t.Errorf("queue holds %v, want only %s: a refused batch sends nothing", got, last[0].Body)
	}
}

// testSendMessagesQueueMissing: sending to a queue that does not exist is
// store.ErrQueueMissing.
func testSendMessagesQueueMissing(t *testing.T, h Harness) {
	s := h.New(t)
	url := register(t, s).QueueURL
	missing := url[:strings.LastIndex(url, "/")+1] + "agents-" + uuid.NewString() + ".fifo"
	if failed, err := s.SendMessages(testContext(t), missing, messages("a", 2)); !errors.Is(err, store.ErrQueueMissing) {
		t.Errorf("SendMessages to %s = %+v, %v; want store.ErrQueueMissing", missing, failed, err)
	}
}
