package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrConflict: a conditional write lost: the replay is not (or no longer)
// the caller's to run, or one with that id exists already.
var ErrConflict = errors.New("conflict")

// EventRetention is how long SubscriberEvents keeps an event (its TTL):
// a replay window must start within it.
const EventRetention = eventTTL

// Replay states. Only a running replay is worked on; the others are final.
const (
	ReplayRunning   = "running"
	ReplayDone      = "done"
	ReplayCancelled = "cancelled"
	ReplayFailed    = "failed"
)

// replayKeep is how long a finished replay stays readable (TTL from its
// end): as long as the events it could have read.
const replayKeep = eventTTL

// MaxReplayErrors bounds the errors a replay keeps, so its item stays
// small; later ones are counted in ErrorCount only.
const MaxReplayErrors = 10

// Attributes of Replays that only this file writes.
const (
	attrState      = "state"
	attrFrom       = "from"
	attrTo         = "to"
	attrUpdatedAt  = "updatedAt"
	attrCursor     = "cursor"
	attrFound      = "found"
	attrSent       = "sent"
	attrLastEvent  = "lastTimestamp"
	attrErrors     = "errors"
	attrErrorCount = "errorCount"
	attrOwner      = "owner"
	attrLeaseUntil = "leaseUntil"
)

// indexReplaysState lists replays by state, oldest first: what a task polls
// for replays to run.
const indexReplaysState = "state-index"

// Replay is a request to re-deliver a window of one subscriber's events,
// and how far it got. Times are stored with milliseconds.
type Replay struct {
	SubscriberID string
	ID           string
	// From and To bound the window of event timestamps: From included, To
	// excluded.
	From, To time.Time
	// ProducerID limits it to one producer's events; "" replays all.
	ProducerID string
	State      string
	CreatedAt  time.Time
	UpdatedAt  time.Time

	// Cursor is the Position of the last event it read and handled:
	// it goes on after it. "" before the first.
	Cursor string
	// Found counts the events in the window read so far, Sent those
	// delivered.
	Found, Sent int
	// LastTimestamp is the timestamp of the last event sent.
	LastTimestamp string
	// Errors are the first MaxReplayErrors problems, ErrorCount all.
	Errors     []string
	ErrorCount int

	// Owner is the task running it while LeaseUntil is ahead; after that
	// any task may take it over (ClaimReplay).
	Owner      string
	LeaseUntil time.Time
}

// replayKey is the key of replay id of subscriber.
func replayKey(subscriber, id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrSubscriberID: attrS(subscriber), attrID: attrS(id)}
}

// CreateReplay records r (state running, no owner). The error wraps
// ErrConflict when a replay with its id exists already for its
// subscriber, and ErrRejected when ids are missing or too long.
func (s *Store) CreateReplay(ctx context.Context, r Replay) error {
	if r.SubscriberID == "" || r.ID == "" {
		return fmt.Errorf("create replay %q of subscriber %q: %w: subscriber and replay id are required", r.ID, r.SubscriberID, ErrRejected)
	}
	r.State, r.Owner, r.LeaseUntil = ReplayRunning, "", time.Time{}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	r.UpdatedAt = r.CreatedAt
	it := replayItem(r)
	if err := checkItem(it, attrSubscriberID, attrID); err != nil {
		return fmt.Errorf("create replay %s of subscriber %s: %w", r.ID, r.SubscriberID, err)
	}
	created, err := putIfAbsent(ctx, s.db, s.tables.Replays, it, attrID)
	switch {
	case err != nil:
		return fmt.Errorf("create replay %s of subscriber %s in table %s: %w", r.ID, r.SubscriberID, s.tables.Replays, rejectable(err))
	case !created:
		return fmt.Errorf("create replay %s of subscriber %s: %w: it exists already", r.ID, r.SubscriberID, ErrConflict)
	}
	return nil
}

// replayItem is r as an item.
func replayItem(r Replay) map[string]types.AttributeValue {
	it := replayKey(r.SubscriberID, r.ID)
	it[attrFrom] = attrS(formatTime(r.From))
	it[attrTo] = attrS(formatTime(r.To))
	it[attrProducerID] = attrS(r.ProducerID)
	it[attrCreatedAt] = attrS(formatTime(r.CreatedAt))
	for k, v := range progressValues(r) {
		it[k] = v
	}
	return it
}

// progressValues are the attributes a replay's run changes.
func progressValues(r Replay) map[string]types.AttributeValue {
	errs := make([]types.AttributeValue, 0, len(r.Errors))
	for _, e := range r.Errors[:min(len(r.Errors), MaxReplayErrors)] {
		errs = append(errs, attrS(truncateString(e, 1024, reasonTruncated)))
	}
	v := map[string]types.AttributeValue{
		attrState:      attrS(r.State),
		attrUpdatedAt:  attrS(formatTime(r.UpdatedAt)),
		attrCursor:     attrS(r.Cursor),
		attrFound:      attrN(int64(r.Found)),
		attrSent:       attrN(int64(r.Sent)),
		attrLastEvent:  attrS(r.LastTimestamp),
		attrErrors:     &types.AttributeValueMemberL{Value: errs},
		attrErrorCount: attrN(int64(max(r.ErrorCount, len(r.Errors)))),
		attrOwner:      attrS(r.Owner),
		attrLeaseUntil: attrN(r.LeaseUntil.UnixMilli()),
	}
	if r.LeaseUntil.IsZero() {
		v[attrLeaseUntil] = attrN(0)
	}
	if r.State != ReplayRunning {
		v[attrExpiresAt] = attrN(r.UpdatedAt.Add(replayKeep).Unix())
	}
	return v
}

// decodeReplay reads a Replays item.
func (s *Store) decodeReplay(it map[string]types.AttributeValue) (Replay, error) {
	r := reader{item: it}
	out := Replay{
		SubscriberID:  r.str(attrSubscriberID),
		ID:            r.str(attrID),
		From:          r.time(attrFrom),
		To:            r.time(attrTo),
		ProducerID:    r.str(attrProducerID),
		State:         r.str(attrState),
		CreatedAt:     r.time(attrCreatedAt),
		UpdatedAt:     r.time(attrUpdatedAt),
		Cursor:        r.str(attrCursor),
		Found:         r.number(attrFound, 0),
		Sent:          r.number(attrSent, 0),
		LastTimestamp: r.str(attrLastEvent),
		ErrorCount:    r.number(attrErrorCount, 0),
		Owner:         r.str(attrOwner),
	}
	if lu := r.number(attrLeaseUntil, 0); lu > 0 {
		out.LeaseUntil = time.UnixMilli(int64(lu)).UTC()
	}
	if l, ok := it[attrErrors].(*types.AttributeValueMemberL); ok {
		for _, v := range l.Value {
			if sv, ok := v.(*types.AttributeValueMemberS); ok {
				out.Errors = append(out.Errors, sv.Value)
			}
		}
	}
	if r.err != nil {
		return Replay{}, fmt.Errorf("table %s: %w", s.tables.Replays, r.err)
	}
	return out, nil
}

// Replay returns replay id of subscriber, read consistently. The error
// wraps ErrNotFound when there is none.
func (s *Store) Replay(ctx context.Context, subscriber, id string) (Replay, error) {
	if subscriber == "" || id == "" || len(subscriber) > maxPartitionKeyBytes || len(id) > maxSortKeyBytes {
		return Replay{}, fmt.Errorf("get replay %q of subscriber %q: %w", id, subscriber, ErrNotFound)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.tables.Replays), Key: replayKey(subscriber, id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Replay{}, fmt.Errorf("get replay %s of subscriber %s from table %s: %w", id, subscriber, s.tables.Replays, err)
	}
	if out.Item == nil {
		return Replay{}, fmt.Errorf("get replay %s of subscriber %s: %w", id, subscriber, ErrNotFound)
	}
	return s.decodeReplay(out.Item)
}

// CancelReplay ends replay id of subscriber as cancelled at at, unless it
// has ended already, and returns it as it now is (so a second cancel
// changes nothing). Its runner sees it at its next SaveReplay and stops.
// The error wraps ErrNotFound when there is no such replay.
func (s *Store) CancelReplay(ctx context.Context, subscriber, id string, at time.Time) (Replay, error) {
	if subscriber == "" || id == "" || len(subscriber) > maxPartitionKeyBytes || len(id) > maxSortKeyBytes {
		return Replay{}, fmt.Errorf("cancel replay %q of subscriber %q: %w", id, subscriber, ErrNotFound)
	}
	at = at.UTC().Truncate(time.Millisecond)
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.tables.Replays),
		Key:                 replayKey(subscriber, id),
		UpdateExpression:    aws.String("SET #st = :cancelled, #up = :at, #ex = :ex"),
		ConditionExpression: aws.String("#st = :running"),
		ExpressionAttributeNames: map[string]string{
			"#st": attrState, "#up": attrUpdatedAt, "#ex": attrExpiresAt,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":cancelled": attrS(ReplayCancelled), ":running": attrS(ReplayRunning),
			":at": attrS(formatTime(at)), ":ex": attrN(at.Add(replayKeep).Unix()),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	switch {
	case err == nil:
		return s.decodeReplay(out.Attributes)
	case hasCode(err, codeConditionalCheckFailed):
		return s.Replay(ctx, subscriber, id) // ended already, or absent: ErrNotFound
	}
	return Replay{}, fmt.Errorf("cancel replay %s of subscriber %s in table %s: %w", id, subscriber, s.tables.Replays, err)
}

// RunningReplays returns the replays in state running, oldest first, owned
// or not. It reads an index, which is eventually consistent: a replay
// created or ended a moment ago may be missing or still listed.
func (s *Store) RunningReplays(ctx context.Context) ([]Replay, error) {
	return queryAll(ctx, s, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Replays),
		IndexName:                 aws.String(indexReplaysState),
		KeyConditionExpression:    aws.String("#st = :running"),
		ExpressionAttributeNames:  map[string]string{"#st": attrState},
		ExpressionAttributeValues: map[string]types.AttributeValue{":running": attrS(ReplayRunning)},
	}, s.decodeReplay)
}

// ClaimReplay makes owner the runner of replay id of subscriber until
// until, if it is running and its lease has expired at now (or is owner's
// already), and returns it. The error wraps ErrConflict when it is not
// claimable (another task holds it, or it has ended) and ErrNotFound when
// it does not exist.
func (s *Store) ClaimReplay(ctx context.Context, subscriber, id, owner string, until, now time.Time) (Replay, error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.tables.Replays),
		Key:                      replayKey(subscriber, id),
		UpdateExpression:         aws.String("SET #ow = :me, #lu = :until"),
		ConditionExpression:      aws.String("#st = :running AND (#lu < :now OR #ow = :me)"),
		ExpressionAttributeNames: map[string]string{"#st": attrState, "#ow": attrOwner, "#lu": attrLeaseUntil},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": attrS(owner), ":until": attrN(until.UnixMilli()), ":now": attrN(now.UnixMilli()), ":running": attrS(ReplayRunning),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	switch {
	case err == nil:
		return s.decodeReplay(out.Attributes)
	case hasCode(err, codeConditionalCheckFailed):
		if _, gerr := s.Replay(ctx, subscriber, id); gerr != nil {
			return Replay{}, gerr
		}
		return Replay{}, fmt.Errorf("claim replay %s of subscriber %s for %s: %w: it has ended or another task holds it", id, subscriber, owner, ErrConflict)
	}
	return Replay{}, fmt.Errorf("claim replay %s of subscriber %s in table %s: %w", id, subscriber, s.tables.Replays, err)
}

// SaveReplay writes r's progress, state and lease (r.LeaseUntil; zero
// releases it), if r.Owner still holds it and it is still running: the
// runner's write after each batch and its last. The error wraps
// ErrConflict when r is no longer its owner's (cancelled, or taken over
// after its lease expired): the runner stops.
func (s *Store) SaveReplay(ctx context.Context, r Replay) error {
	vals := progressValues(r)
	names := map[string]string{"#ow": attrOwner, "#st": attrState}
	values := map[string]types.AttributeValue{":me": attrS(r.Owner), ":running": attrS(ReplayRunning)}
	set := ""
	i := 0
	for name, v := range vals {
		if name == attrOwner {
			continue
		}
		n, val := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
		i++
		names[n], values[val] = name, v
		if set != "" {
			set += ", "
		}
		set += n + " = " + val
	}
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.tables.Replays),
		Key:                       replayKey(r.SubscriberID, r.ID),
		UpdateExpression:          aws.String("SET " + set),
		ConditionExpression:       aws.String("#ow = :me AND #st = :running"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	switch {
	case err == nil:
		return nil
	case hasCode(err, codeConditionalCheckFailed):
		return fmt.Errorf("save replay %s of subscriber %s by %s: %w: cancelled, or taken over by another task", r.ID, r.SubscriberID, r.Owner, ErrConflict)
	}
	return fmt.Errorf("save replay %s of subscriber %s in table %s: %w", r.ID, r.SubscriberID, s.tables.Replays, rejectable(err))
}

// ReplayQuery selects one page of a subscriber's logged events.
type ReplayQuery struct {
	SubscriberID string
	// From (included) and To (excluded) bound the events' timestamps.
	From, To time.Time
	// ProducerID keeps one producer's events; "" keeps all.
	ProducerID string
	// After is a Position: the page starts after it ("" at From).
	After string
	// Limit is how many items the page reads (filtered ones included);
	// 0 reads DynamoDB's own page of up to 1 MB.
	Limit int32
}

// LoggedEvent is an event of SubscriberEvents and where it is in its
// subscriber's log.
type LoggedEvent struct {
	SubscriberEvent
	// Position is the sort key of the item that holds the event (every
	// event of a packed item has the same); ReplayQuery.After takes it.
	// Positions order a subscriber's items by their first event's time.
	Position string
}

// PositionTime is the timestamp that p, a Position, starts with: the
// first event's of its item. Events of one item share it.
func PositionTime(p string) string {
	if i := strings.IndexByte(p, '#'); i >= 0 {
		return p[:i]
	}
	return p
}

// ReplayEvents reads one page of q's items, in log order (by their first
// event's timestamp, then producer and event id), read consistently, and
// returns their events whose timestamps lie in the window, each item's in
// its order, and the position to read the next page after: "" when the
// window has no more. A page may hold no events and still have a next
// one (all it read was another producer's, or outside the window). Reading
// from After onwards never skips an item: it is DynamoDB's
// ExclusiveStartKey. Items that begin up to MaxRunSpan before From are
// read too, as they may hold events of the window.
func (s *Store) ReplayEvents(ctx context.Context, q ReplayQuery) (events []LoggedEvent, next string, err error) {
	from, to := formatTime(q.From), formatTime(q.To)
	in := &dynamodb.QueryInput{
		TableName:                aws.String(s.tables.SubscriberEvents),
		KeyConditionExpression:   aws.String("#s = :s AND #k BETWEEN :lo AND :hi"),
		ExpressionAttributeNames: map[string]string{"#s": attrSubscriberID, "#k": attrEventSortKey},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			// Keys start with the timestamp, so every key of lo's
			// millisecond is above lo, and every key of To's above hi.
			":s": attrS(q.SubscriberID), ":lo": attrS(formatTime(q.From.Add(-MaxRunSpan))), ":hi": attrS(to),
		},
		ConsistentRead: aws.Bool(true),
		Limit:          s.pageLimit(),
	}
	if q.Limit > 0 {
		in.Limit = aws.Int32(q.Limit)
	}
	if q.ProducerID != "" {
		in.FilterExpression = aws.String("#p = :p")
		in.ExpressionAttributeNames["#p"] = attrProducerID
		in.ExpressionAttributeValues[":p"] = attrS(q.ProducerID)
	}
	if q.After != "" {
		in.ExclusiveStartKey = map[string]types.AttributeValue{attrSubscriberID: attrS(q.SubscriberID), attrEventSortKey: attrS(q.After)}
	}
	page, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("read events of subscriber %s after %q: query table %s: %w", q.SubscriberID, q.After, s.tables.SubscriberEvents, err)
	}
	events = make([]LoggedEvent, 0, len(page.Items))
	for _, it := range page.Items {
		r := reader{item: it}
		pos := r.str(attrEventSortKey)
		item, err := decodeRunItem(it)
		if err == nil {
			err = r.err
		}
		if err != nil {
			return nil, "", fmt.Errorf("read events of subscriber %s: table %s: item %q: %w", q.SubscriberID, s.tables.SubscriberEvents, pos, err)
		}
		for _, e := range item {
			if e.Timestamp >= from && e.Timestamp < to {
				events = append(events, LoggedEvent{SubscriberEvent: e, Position: pos})
			}
		}
	}
	if page.LastEvaluatedKey != nil {
		r := reader{item: page.LastEvaluatedKey}
		next = r.str(attrEventSortKey)
		if r.err != nil {
			return nil, "", fmt.Errorf("read events of subscriber %s: last evaluated key: %w", q.SubscriberID, r.err)
		}
	}
	return events, next, nil
}
