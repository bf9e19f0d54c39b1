package pipeline

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fanout/fanout/store"
)

// orderJSON is an event of producer P with eventId id and data n.
func orderJSON(id string, n int) string {
	return fmt.Sprintf(`{"eventId":%q,"agentId":"P","timestamp":"2025-07-01T12:00:0%d.000Z","eventType":"order","data":{"n":%d}}`, id, n%10, n)
}

// TestAggregatorDropsRepeatedEventIDs: the first event with a
// producer-chosen eventId is delivered; a later one with the same id —
// in the same batch or a later one, with another timestamp or body — is
// delivered to no one and logged with both positions. A replay of the same
// records (crash, lease move) keeps delivering the first.
func TestAggregatorDropsRepeatedEventIDs(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	core, logs := observer.New(zapcore.InfoLevel)
	a := newTestAggregator(t, f, zap.New(core))
	arrival := time.Date(2025, 7, 1, 12, 0, 10, 0, time.UTC)
	first := []types.Record{
		streamRecord("P", "1", arrival, orderJSON("order-77", 0)),
		streamRecord("P", "2", arrival, orderJSON("order-77", 1)), // a retry in the same batch
		streamRecord("P", "3", arrival, `[`+orderJSON("order-78", 2)+`,`+orderJSON("order-79", 3)+`]`),
	}
	later := []types.Record{
		streamRecord("P", "4", arrival, orderJSON("order-78", 2)),                                                   // a retry after its batch
		streamRecord("P", "5", arrival, `{"eventId":"order-79","agentId":"P","eventType":"other","data":{"n":99}}`), // the id reused for other content
		streamRecord("P", "6", arrival, orderJSON("order-80", 4)),
	}
	for i, batch := range [][]types.Record{first, later, first, later} { // then a replay of both
		if err := a.Handle(boundedCtx(t), "shardId-1", batch); err != nil {
			t.Fatalf("handle #%d: %v", i+1, err)
		}
	}
	want := []string{"order-77", "order-78", "order-79", "order-80"}
	if got := f.events.writtenIDs(); !reflect.DeepEqual(got, map[string][]string{"s1": want, "s2": want}) {
		t.Errorf("items = %v, want each eventId once per subscriber: %v", got, want)
	}
	for _, it := range f.events.written()["s1"] {
		if it.EventID == "order-79" && it.EventType != "order" {
			t.Errorf("order-79 delivered as %+v, want the first event with that id", it)
		}
	}

	type drop struct {
		id, pos, first string
		same           bool
		level          zapcore.Level
	}
	var got []drop
	for _, l := range logs.FilterMessage("duplicate eventId dropped").All() {
		m := l.ContextMap()
		got = append(got, drop{fmt.Sprint(m["event_id"]), fmt.Sprint(m["position"]), fmt.Sprint(m["first_position"]), m["same_content"] == true, l.Level})
	}
	wantDrops := []drop{
		{"order-77", "shardId-1/2/0", "shardId-1/1/0", false, zapcore.WarnLevel}, // data differs: n 1, not 0
		{"order-78", "shardId-1/4/0", "shardId-1/3/0", true, zapcore.InfoLevel},
		{"order-79", "shardId-1/5/0", "shardId-1/3/1", false, zapcore.WarnLevel},
	}
	wantDrops = append(wantDrops, wantDrops...) // the replay drops the same copies again
	// Claims of one batch run concurrently: their lines come in any order.
	byPosition := func(a, b drop) int { return strings.Compare(a.id+a.pos, b.id+b.pos) }
	slices.SortFunc(got, byPosition)
	slices.SortFunc(wantDrops, byPosition)
	if !reflect.DeepEqual(got, wantDrops) {
		t.Errorf("dropped copies logged as\n%v\nwant\n%v", got, wantDrops)
	}
}

// TestAggregatorClaimsOnlyProducerIDs: ids fanout chose (posted without
// one, or derived from a direct record's position) are unique by
// construction and cost no claim; each producer-chosen id costs one per
// published event, not one per subscriber.
func TestAggregatorClaimsOnlyProducerIDs(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	a := newTestAggregator(t, f, nil)
	records := []types.Record{
		streamRecord("P", "1", time.Now(), `{"agentId":"P","eventType":"direct","data":1}`),
		streamRecord("P", "2", time.Now(), `{"eventId":"api-chose","generatedId":true,"agentId":"P","eventType":"posted","data":2}`),
		streamRecord("P", "3", time.Now(), orderJSON("mine", 3)),
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	if n := f.ids.n; n != 1 || f.ids.callsFor("mine") != 1 {
		t.Errorf("%d claims (%d for \"mine\"), want exactly one, for the producer's own id, for 2 subscribers", n, f.ids.callsFor("mine"))
	}
	if got := f.events.writtenIDs()["s1"]; len(got) != 3 {
		t.Errorf("s1 items %v, want all three events", got)
	}
}

// TestAggregatorSetsAsideUncheckableEvent: an event whose id cannot be
// claimed (refused) is set aside, not delivered unchecked; its neighbours
// go on.
func TestAggregatorSetsAsideUncheckableEvent(t *testing.T) {
	t.Parallel()
	f := defaultAggregatorFakes()
	f.ids.fail = func(c store.EventClaim) error {
		if c.EventID == "bad" {
			return fmt.Errorf("claim: %w", store.ErrRejected)
		}
		return nil
	}
	a := newTestAggregator(t, f, nil)
	records := []types.Record{
		streamRecord("P", "1", time.Now(), orderJSON("bad", 0)),
		streamRecord("P", "2", time.Now(), orderJSON("good", 1)),
	}
	if err := a.Handle(boundedCtx(t), "shardId-1", records); err != nil {
		t.Fatal(err)
	}
	if got := f.events.writtenIDs()["s1"]; !reflect.DeepEqual(got, []string{"good"}) {
		t.Errorf("s1 items %v, want only the checked event", got)
	}
	dl := f.dead.all()
	if len(dl) != 1 || dl[0].Seq != "1" || !strings.Contains(dl[0].Reason, "eventId bad") {
		t.Errorf("dead letters %+v, want one for record 1 saying its eventId could not be checked", dl)
	}
}
