package store

import (
	"bytes"
	"cmp"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fanout/fanout/event"
)

// Packed SubscriberEvents items. One item holds a run of one subscriber's
// events of one producer, read from one Kinesis shard, in the producer's
// order: its key is the first event's (timestamp#producer#eventId, as a
// one-event item's), and it says which stream positions it covers, so that
// a writer that meets it (a conditional-write conflict) knows which events
// are durable already. The events are kept as deflated JSON in one binary
// attribute, which is what DynamoDB bills for.
//
// Items without attrFormat are the one-event items PutEvent writes (and
// fanout wrote before packing): both kinds are read everywhere.
const (
	attrFormat    = "v"
	attrRunEvents = "events"
	attrRunCount  = "count"
	attrLastSeq   = "lastSeq"
	attrLastIndex = "lastIdx"

	// runFormat is attrFormat of a packed item.
	runFormat = 2
)

// MaxRunSpan bounds the timestamps of one item: every event's is at or
// after the first's (the key's) and less than MaxRunSpan after it, so a
// replay that reads keys from its window's start less MaxRunSpan finds
// every item holding an event of the window.
const MaxRunSpan = time.Second

// maxRunBytes bounds an item's events as encoded, before deflate: with
// the keys (at most 2048 + 1024 bytes) and the other attributes (under
// 1 KB) the item stays within DynamoDB's 400 KB even when deflate cannot
// shrink the events (it then adds 5 bytes per 64 KB stored block).
const maxRunBytes = maxItemBytes - 8<<10

// runEvent is one event as an item's events attribute encodes it; the
// subscriber, producer and shard are the item's.
type runEvent struct {
	Seq       string `json:"seq"`
	Index     int    `json:"idx"`
	ArrivedMs int64  `json:"arr,omitempty"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Timestamp string `json:"ts"`
	// Data is the event's, byte for byte: see encodeRun.
	Data json.RawMessage `json:"data,omitempty"`
}

// RunSpan is what one SubscriberEvents item covers: the positions of its
// first and last events (in one shard) and how many it holds. Events of
// that shard between First and Last that the item does not hold were not
// the subscriber's (filtered, repeats) when it was written.
type RunSpan struct {
	Key         string // the item's sort key
	First, Last EventPosition
	Count       int
}

// Covers reports whether p lies within s: same shard, between First and
// Last, both included.
func (s RunSpan) Covers(p EventPosition) bool {
	return p.ShardID == s.First.ShardID && ComparePositions(s.First, p) <= 0 && ComparePositions(p, s.Last) <= 0
}

// ComparePositions orders two positions of one shard: by sequence number
// (a decimal string of any length), then index. It returns -1, 0 or 1.
func ComparePositions(a, b EventPosition) int {
	return cmp.Or(cmp.Compare(len(a.Seq), len(b.Seq)), strings.Compare(a.Seq, b.Seq), cmp.Compare(a.Index, b.Index))
}

// Position is where e stands in the stream.
func (e SubscriberEvent) Position() EventPosition {
	return EventPosition{ShardID: e.ShardID, Seq: e.Seq, Index: e.Index}
}

// NextRun returns how many of events, from the first, one packed item
// takes: the longest prefix whose encoded events stay within the item
// size budget and whose timestamps stay within MaxRunSpan of the first's
// (an earlier timestamp starts a new item). It is at least 1 when events
// is not empty: an event too large for any item goes alone, and
// PutEventRun refuses it. events are one subscriber's, of one producer
// and shard, in order.
func NextRun(events []SubscriberEvent) int {
	if len(events) == 0 {
		return 0
	}
	first, err := time.Parse(time.RFC3339, events[0].Timestamp)
	size := 2 // []
	for i, e := range events {
		size += encodedRunEventBytes(e) + 1
		if i == 0 {
			continue
		}
		if size > maxRunBytes || err != nil {
			return i
		}
		t, terr := time.Parse(time.RFC3339, e.Timestamp)
		if terr != nil || t.Before(first) || !t.Before(first.Add(MaxRunSpan)) {
			return i
		}
	}
	return len(events)
}

// encodedRunEventBytes is an upper bound on the bytes e takes in an
// item's events JSON (escaping can only be counted by encoding; ids and
// types are plain, and data is JSON already).
func encodedRunEventBytes(e SubscriberEvent) int {
	const fixed = len(`{"seq":"","idx":,"arr":,"id":"","type":"","ts":"","data":}`) + 20 + 20
	return fixed + len(e.Seq) + 2*len(e.EventID) + 2*len(e.EventType) + len(e.Timestamp) + len(e.Data)
}

// PutEventRun writes events (one subscriber's, of one producer and shard,
// in order, as NextRun cut them) as one packed item keyed by the first
// event, unless an item with that key is there already. It returns nil
// when it wrote the item, and otherwise the span of the item that holds
// the key, read strongly consistently: its events are durable, and a
// writer continues after them. A single PutItem, so the table's stream
// carries the run as one record, in the order a caller writes runs.
//
// The error wraps ErrRejected when the item can never be written: ids
// missing or mixed, over DynamoDB's 400 KB or its key too long (checked
// without a call), or DynamoDB refuses it as invalid. Its events may then
// be written one at a time.
func (s *Store) PutEventRun(ctx context.Context, events []SubscriberEvent) (existing *RunSpan, err error) {
	item, err := s.runItem(events)
	if err != nil {
		return nil, err
	}
	first := events[0]
	what := fmt.Sprintf("put %d events of producer %s for subscriber %s from event %s", len(events), first.AgentID, first.SubscriberID, first.EventID)
	created, err := putIfAbsent(ctx, s.db, s.tables.SubscriberEvents, item, attrSubscriberID)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s into table %s: %w", what, s.tables.SubscriberEvents, rejectable(err))
	case created:
		return nil, nil
	}
	key := item[attrEventSortKey].(*types.AttributeValueMemberS).Value
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.tables.SubscriberEvents),
		Key:            map[string]types.AttributeValue{attrSubscriberID: attrS(first.SubscriberID), attrEventSortKey: attrS(key)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read the item that has its key in table %s: %w", what, s.tables.SubscriberEvents, err)
	}
	if out.Item == nil { // expired by TTL between the two calls: write it again
		return s.PutEventRun(ctx, events)
	}
	span, err := decodeSpan(out.Item)
	if err != nil {
		return nil, fmt.Errorf("%s: table %s: %w", what, s.tables.SubscriberEvents, err)
	}
	return &span, nil
}

// runItem is the packed item of events, checked against DynamoDB's limits.
func (s *Store) runItem(events []SubscriberEvent) (map[string]types.AttributeValue, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("put event run: %w: no events", ErrRejected)
	}
	first, last := events[0], events[len(events)-1]
	what := fmt.Sprintf("put %d events of producer %s for subscriber %s from event %s", len(events), first.AgentID, first.SubscriberID, first.EventID)
	enc := make([]runEvent, len(events))
	for i, e := range events {
		switch {
		case e.EventID == "" || e.Timestamp == "":
			return nil, fmt.Errorf("%s: %w: event %d has no event id or timestamp", what, ErrRejected, i)
		case e.SubscriberID != first.SubscriberID || e.AgentID != first.AgentID || e.ShardID != first.ShardID:
			return nil, fmt.Errorf("%s: %w: event %s is of another subscriber, producer or shard", what, ErrRejected, e.EventID)
		}
		enc[i] = runEvent{Seq: e.Seq, Index: e.Index, ID: e.EventID, Type: e.EventType, Timestamp: e.Timestamp, Data: e.Data}
		if !e.Arrived.IsZero() {
			enc[i].ArrivedMs = e.Arrived.UnixMilli()
		}
	}
	if first.SubscriberID == "" || first.AgentID == "" {
		return nil, fmt.Errorf("%s: %w: subscriber id and producer id are required", what, ErrRejected)
	}
	packed, err := deflateRun(enc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	}
	item := map[string]types.AttributeValue{
		attrSubscriberID: attrS(first.SubscriberID),
		attrEventSortKey: attrS(eventSortKey(first)),
		attrFormat:       attrN(runFormat),
		attrProducerID:   attrS(first.AgentID),
		attrShardID:      attrS(first.ShardID),
		attrSeq:          attrS(first.Seq),
		attrIndex:        attrN(int64(first.Index)),
		attrLastSeq:      attrS(last.Seq),
		attrLastIndex:    attrN(int64(last.Index)),
		attrRunCount:     attrN(int64(len(events))),
		attrRunEvents:    &types.AttributeValueMemberB{Value: packed},
		attrExpiresAt:    attrN(s.now().Add(eventTTL).Unix()),
	}
	if err := checkItem(item, attrSubscriberID, attrEventSortKey); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return item, nil
}

// RunSpans returns the spans of subscriberID's items of producerID from
// shardID that may hold an event with a timestamp between from and to
// (both included, event timestamps): those whose keys' timestamps lie
// between from less MaxRunSpan and to, since every event of an item is
// less than MaxRunSpan after its key's. Read strongly consistently, page
// by page, in key order.
func (s *Store) RunSpans(ctx context.Context, subscriberID, producerID, shardID, from, to string) ([]RunSpan, error) {
	lo, err := RunSpanStart(from)
	if err != nil {
		return nil, fmt.Errorf("read runs of producer %s for subscriber %s: %w: from: %w", producerID, subscriberID, ErrRejected, err)
	}
	// No placeholder is a prefix of another: the emulator substitutes
	// them as plain text, in any order.
	in := &dynamodb.QueryInput{
		TableName:              aws.String(s.tables.SubscriberEvents),
		KeyConditionExpression: aws.String("#sub = :sub AND #key BETWEEN :lo AND :hi"),
		FilterExpression:       aws.String("#prod = :prod AND #shard = :shard"),
		ProjectionExpression:   aws.String("#sub, #key, #ver, #shard, #fseq, #fidx, #lseq, #lidx, #cnt"),
		ExpressionAttributeNames: map[string]string{
			"#sub": attrSubscriberID, "#key": attrEventSortKey, "#prod": attrProducerID, "#shard": attrShardID, "#ver": attrFormat,
			"#fseq": attrSeq, "#fidx": attrIndex, "#lseq": attrLastSeq, "#lidx": attrLastIndex, "#cnt": attrRunCount,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			// '$' sorts after '#': every key of to's millisecond is below hi.
			":sub": attrS(subscriberID), ":lo": attrS(lo), ":hi": attrS(to + "$"), ":prod": attrS(producerID), ":shard": attrS(shardID),
		},
		ConsistentRead: aws.Bool(true),
	}
	return queryAll(ctx, s, in, decodeSpan)
}

// RunSpanStart is the lowest key timestamp of an item that may hold an
// event of timestamp from: MaxRunSpan earlier.
func RunSpanStart(from string) (string, error) {
	t, err := time.Parse(time.RFC3339, from)
	if err != nil {
		return "", err
	}
	return formatTime(t.Add(-MaxRunSpan)), nil
}

// decodeSpan reads the span of a SubscriberEvents item of either format
// (projected or whole).
func decodeSpan(it map[string]types.AttributeValue) (RunSpan, error) {
	r := reader{item: it}
	span := RunSpan{Key: r.str(attrEventSortKey), Count: 1}
	span.First = EventPosition{ShardID: r.str(attrShardID), Seq: r.str(attrSeq), Index: r.number(attrIndex, 0)}
	span.Last = span.First
	if r.number(attrFormat, 1) == runFormat {
		span.Last.Seq, span.Last.Index, span.Count = r.str(attrLastSeq), r.number(attrLastIndex, 0), r.number(attrRunCount, 0)
	}
	if r.err != nil {
		return RunSpan{}, fmt.Errorf("item %q: %w", span.Key, r.err)
	}
	return span, nil
}

// decodeRunItem reads the events of a SubscriberEvents item of either
// format.
func decodeRunItem(it map[string]types.AttributeValue) ([]SubscriberEvent, error) {
	r := reader{item: it}
	if r.number(attrFormat, 1) != runFormat {
		e := SubscriberEvent{
			Event: event.Event{
				EventID: r.str(attrEventID), AgentID: r.str(attrProducerID), EventType: r.str(attrEventType),
				Timestamp: r.str(attrEventTimestamp), Data: json.RawMessage(r.str(attrData)),
			},
			SubscriberID: r.str(attrSubscriberID), ShardID: r.str(attrShardID), Seq: r.str(attrSeq),
			Index: r.number(attrIndex, 0),
		}
		if ms := r.number(attrArrivedAt, 0); ms != 0 {
			e.Arrived = time.UnixMilli(int64(ms)).UTC()
		}
		if r.err != nil {
			return nil, r.err
		}
		return []SubscriberEvent{e}, nil
	}
	sub, producer, shard := r.str(attrSubscriberID), r.str(attrProducerID), r.str(attrShardID)
	packed := r.bytes(attrRunEvents)
	if r.err != nil {
		return nil, r.err
	}
	return inflateRun(packed, sub, producer, shard)
}

// inflateRun decodes a packed item's events attribute.
func inflateRun(packed []byte, sub, producer, shard string) ([]SubscriberEvent, error) {
	var enc []runEvent
	if err := json.NewDecoder(flate.NewReader(bytes.NewReader(packed))).Decode(&enc); err != nil {
		return nil, fmt.Errorf("attribute %s: %w", attrRunEvents, err)
	}
	if len(enc) == 0 {
		return nil, fmt.Errorf("attribute %s holds no events", attrRunEvents)
	}
	out := make([]SubscriberEvent, len(enc))
	for i, e := range enc {
		out[i] = SubscriberEvent{
			Event:        event.Event{EventID: e.ID, AgentID: producer, EventType: e.Type, Timestamp: e.Timestamp, Data: e.Data},
			SubscriberID: sub, ShardID: shard, Seq: e.Seq, Index: e.Index,
		}
		if e.ArrivedMs != 0 {
			out[i].Arrived = time.UnixMilli(e.ArrivedMs).UTC()
		}
	}
	return out, nil
}

// deflateRun encodes events as an item's events attribute holds them:
// encodeRun's JSON, deflated.
func deflateRun(events []runEvent) ([]byte, error) {
	raw, err := encodeRun(events)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeRun is the JSON array of events with each event's data spliced
// in as it is: encoding/json would compact a json.RawMessage, and data
// must come back byte for byte (the publisher's deduplication id hashes
// it, and a one-event item keeps it so). Decoding into a json.RawMessage
// keeps the bytes (but whitespace around the value, which Normalize has
// removed from every event the pipeline reads). Empty data is encoded as null, as encoding/json does;
// data that is not JSON cannot be packed.
func encodeRun(events []runEvent) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('[')
	for i, e := range events {
		data := e.Data
		switch {
		case len(data) == 0:
			data = json.RawMessage("null")
		case !json.Valid(data):
			return nil, fmt.Errorf("event %s: data is not JSON", e.ID)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		e.Data = nil
		if err := enc.Encode(e); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		buf.Truncate(buf.Len() - len("}\n")) // reopen the object Encode closed
		buf.WriteString(`,"data":`)
		buf.Write(data)
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// EventRunImage is the NEW_IMAGE JSON that the table's stream carries for
// the packed item of events, as kcl hands it on (numbers as JSON numbers,
// binary as base64): what DecodeEventImage reads. For tests and tools
// that feed the publisher without a table.
func EventRunImage(events []SubscriberEvent, expiresAt time.Time) ([]byte, error) {
	s := &Store{now: func() time.Time { return expiresAt.Add(-eventTTL) }}
	item, err := s.runItem(events)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	for name, v := range item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			m[name] = v.Value
		case *types.AttributeValueMemberN:
			m[name] = json.Number(v.Value)
		case *types.AttributeValueMemberB:
			m[name] = v.Value
		}
	}
	return json.Marshal(m)
}

// decodeImageRun decodes the packed form of a stream image (see
// DecodeEventImage): raw holds the image's attributes.
func decodeImageRun(m map[string]json.RawMessage) ([]SubscriberEvent, error) {
	var sub, producer, shard string
	var packed []byte
	for _, f := range []struct {
		name string
		dst  any
	}{{attrSubscriberID, &sub}, {attrProducerID, &producer}, {attrShardID, &shard}, {attrRunEvents, &packed}} {
		raw, ok := m[f.name]
		if !ok {
			return nil, fmt.Errorf("no attribute %s", f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return nil, fmt.Errorf("attribute %s: %w", f.name, err)
		}
	}
	return inflateRun(packed, sub, producer, shard)
}

// imageFormat is the attrFormat of a stream image: 1 when absent.
func imageFormat(m map[string]json.RawMessage) (int, error) {
	raw, ok := m[attrFormat]
	if !ok {
		return 1, nil
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil {
		return 0, fmt.Errorf("attribute %s: %w", attrFormat, err)
	}
	return v, nil
}
