package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/fanout/fanout/store"
)

// TestRollingUpdateMixesItemFormats: a task of the old format
// (FANOUT_PACK_EVENTS=false: one SubscriberEvents item per event) is
// killed with SIGKILL while it delivers a producer's multi-event records; a
// task that packs takes its shards over. Every event arrives once, in
// order; the table then holds both kinds of item, and every event is in
// exactly one of them: the packing task read the one-event items as spans
// and wrote only what followed them.
func TestRollingUpdateMixesItemFormats(t *testing.T) {
	t.Parallel()
	bin := buildFanout(t)
	e := newEnv(t)
	old := e.startProcess(t, bin, "FANOUT_PACK_EVENTS=false")
	producer, sub := register(t, old, "p"), register(t, old, "s")
	subscribe(t, old, sub, producer)

	const total, per = 120, 4
	n := publishUntilDelivering(t, e, old, producer, sub, 80, per)
	old.kill(t)
	t.Logf("killed with %d of the %d events published queued", queued(t, e, sub.QueueURL), n)
	packing := e.startProcess(t, bin) // FANOUT_PACK_EVENTS defaults to true
	for ; n < total; n += per {
		publish(t, packing, numbered(producer, n, per)...)
	}
	waitFor(t, 2*deliveryTimeout, "all events queued", func() bool { return queued(t, e, sub.QueueURL) >= total })
	msgs := receive(t, e, sub.QueueURL, deliveryTimeout, count(total))
	e.checkDelivered(t, sub.ID, msgs, map[string]int{producer.ID: total})
	if t.Failed() {
		logStreamOrder(t, e, msgs)
	}

	// Which format an item has is the store's business; the test tells
	// them apart the way the issue describes the formats: a packed item
	// has attribute v, a one-event item eventId.
	items := scanAll(t, e, e.cfg.SubscriberEventsTable)
	var packed, single int
	inItems := map[string]int{}
	for _, it := range items {
		_, v := it["v"]
		_, id := it["eventId"]
		switch {
		case v && !id:
			packed++
		case id && !v:
			single++
		default:
			t.Errorf("item %v is of neither format", it)
		}
		events, err := decodeItem(it)
		if err != nil {
			t.Fatalf("decode item: %v", err)
		}
		for _, ev := range events {
			inItems[ev.EventID]++
		}
	}
	t.Logf("SubscriberEvents: %d one-event items, %d packed items, for %d events", single, packed, total)
	if packed == 0 || single == 0 {
		t.Errorf("SubscriberEvents holds %d one-event and %d packed items, want both kinds", single, packed)
	}
	for _, m := range msgs {
		if c := inItems[m.EventID]; c != 1 {
			t.Errorf("event %s (n=%d) is in %d items, want 1", m.EventID, dataN(m), c)
		}
	}
	if len(inItems) != total {
		t.Errorf("SubscriberEvents holds %d events, want %d", len(inItems), total)
	}
}

// scanAll reads every item of table.
func scanAll(t *testing.T, e *env, table string) []map[string]ddbtypes.AttributeValue {
	t.Helper()
	var items []map[string]ddbtypes.AttributeValue
	p := dynamodb.NewScanPaginator(dynamodb.NewFromConfig(e.awsCfg), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		items = append(items, out.Items...)
	}
	return items
}

// TestPoisonEventInPackedRun: one Kinesis record, put by a producer that
// bypasses the API, holds three events, and SubscriberEvents refuses every
// item holding the middle one. The first and third are delivered, in
// order; the middle is a dead letter of the aggregator naming it; a later
// event still arrives. A record holding an event over the event limit is
// set aside whole, before any item is written: no event under the limit
// makes an item DynamoDB refuses (and the emulator enforces no item size),
// so the refusal is injected, as DynamoDB answers an item over 400 KB.
func TestPoisonEventInPackedRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const poison = "run-1-poison"
	var refused refusals
	e.awsCfg.APIOptions = append(e.awsCfg.APIOptions, refused.of(e.cfg.SubscriberEventsTable, poison))
	s := e.start(t, "poison-run")
	producer, sub := register(t, s, "p"), register(t, s, "s")
	subscribe(t, s, sub, producer)

	rnd := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) string { // incompressible: random bytes, base64
		b := make([]byte, n*3/4)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	record := func(ids []string, ns []int, blobs []string) string {
		events := make([]map[string]any, len(ids))
		for i := range ids {
			data := map[string]any{"n": ns[i]}
			if blobs[i] != "" {
				data["blob"] = blobs[i]
			}
			events[i] = map[string]any{"eventId": ids[i], "agentId": producer.ID, "eventType": "counted", "data": data}
		}
		b, err := json.Marshal(events)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// 450 KB is over event.MaxBytes (250 KiB): the record cannot be read.
	oversizedSeq := e.putRecord(t, producer.ID, record([]string{"run-0-a", "run-0-huge", "run-0-c"}, []int{100, 101, 102}, []string{"", blob(450 << 10), ""}))
	// 200 KB is within the limits; SubscriberEvents refuses it (injected).
	poisonSeq := e.putRecord(t, producer.ID, record([]string{"run-1-first", poison, "run-1-third"}, []int{0, 1, 2}, []string{"", blob(200 << 10), ""}))
	publish(t, s, numbered(producer, 3, 1)...)

	msgs := receiveExactly(t, e, sub.QueueURL, 3)
	e.checkNumbers(t, sub.ID, producer.ID, msgs, []int{0, 2, 3})
	// The run was refused as one item (with the later event too when it
	// came in the same batch), then the poison event alone.
	if got := refused.runs(); len(got) < 2 || got[0] < 3 || got[len(got)-1] != 1 {
		t.Errorf("refused items held %v events; want the run of 3 or more first, then the poison event alone", got)
	}

	var letters []deadLetterJSON
	waitFor(t, deliveryTimeout, "two dead letters of the aggregator", func() bool {
		var page struct{ DeadLetters []deadLetterJSON }
		json.Unmarshal(mustCall(t, 200, "GET", s.url+"/deadletters?stage=aggregator", nil), &page)
		letters = page.DeadLetters
		return len(letters) >= 2
	})
	if len(letters) != 2 {
		t.Errorf("got %d dead letters, want 2: %+v", len(letters), letters)
	}
	bySeq := map[string]deadLetterJSON{}
	for _, l := range letters {
		bySeq[l.SequenceNumber] = l
	}
	get := func(l deadLetterJSON) (got deadLetterJSON) {
		json.Unmarshal(mustCall(t, 200, "GET", s.url+"/deadletters/"+url.PathEscape(l.ID), nil), &got)
		return got
	}
	if l, ok := bySeq[poisonSeq]; !ok {
		t.Errorf("no dead letter for the poison event's record %s: %+v", poisonSeq, letters)
	} else if l = get(l); l.Stage != "aggregator" || !strings.Contains(l.ID, poison) || l.SubscriberID != sub.ID || l.ProducerID != producer.ID ||
		!strings.Contains(l.Reason, "SubscriberEvents refused") || l.Data == nil || !strings.Contains(*l.Data, `"eventId":"`+poison+`"`) {
		t.Errorf("poison event: dead letter %s (stage %s, subscriber %s, producer %s, reason %q, data present %v); want the aggregator's for %s, of %s for %s, with the event as its data",
			l.ID, l.Stage, l.SubscriberID, l.ProducerID, l.Reason, l.Data != nil, poison, producer.ID, sub.ID)
	}
	if l, ok := bySeq[oversizedSeq]; !ok {
		t.Errorf("no dead letter for the oversized record %s: %+v", oversizedSeq, letters)
	} else if l = get(l); l.Stage != "aggregator" || l.ProducerID != producer.ID || l.SubscriberID != "" ||
		!strings.Contains(l.Reason, "event 1") || !strings.Contains(l.Reason, "too large") {
		t.Errorf("oversized record: dead letter %s (stage %s, subscriber %q, reason %q); want the aggregator's for the whole record, saying event 1 is too large",
			l.ID, l.Stage, l.SubscriberID, l.Reason)
	}
}

// refusals makes DynamoDB refuse items, and remembers how many events
// each refused item held. Safe for concurrent use.
type refusals struct {
	mu     sync.Mutex
	events []int
}

func (r *refusals) runs() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// of makes DynamoDB refuse as invalid (ValidationException, HTTP 400, as
// for an item over 400 KB) every PutItem into table whose item, of either
// format, holds the event eventID.
func (r *refusals) of(table, eventID string) func(*middleware.Stack) error {
	refused := &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
		Err:      &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded the maximum allowed size", Fault: smithy.FaultClient},
	}}
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("refuseItemsHolding",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if put, ok := in.Parameters.(*dynamodb.PutItemInput); ok && aws.ToString(put.TableName) == table {
					events, _ := decodeItem(put.Item) // an item it cannot read goes through
					if slices.ContainsFunc(events, func(ev store.SubscriberEvent) bool { return ev.EventID == eventID }) {
						r.mu.Lock()
						r.events = append(r.events, len(events))
						r.mu.Unlock()
						return middleware.InitializeOutput{}, middleware.Metadata{}, refused
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
}
