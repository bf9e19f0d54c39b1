// Package store owns fanout's DynamoDB tables and SQS queues. It is the only
// package that knows their attribute names; callers see typed values.
package store

import (
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fanout/fanout/event"
)

// Errors callers branch on.
var (
	// ErrNotFound: the agent (or other item) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrQueueMissing: the SQS queue a message was sent to does not exist.
	ErrQueueMissing = errors.New("queue does not exist")
	// ErrRetryLater: the operation cannot be done now but can be retried,
	// e.g. SQS refuses to re-create a queue for 60 s after it was deleted.
	ErrRetryLater = errors.New("retry later")
	// ErrInvalidPrincipal: the agent's principal cannot be granted a queue
	// (it is in another partition, or SQS refuses to name it in a queue
	// policy). The error is a *PrincipalError saying what to fix.
	ErrInvalidPrincipal = errors.New("invalid principal")
	// ErrRejected: AWS refused the request as invalid (an item over
	// DynamoDB's 400 KB, a key too long, a malformed batch), or store
	// refused it without calling AWS because AWS would. Sending the same
	// request again fails the same way, so the caller sets the record
	// aside instead of retrying. The error also wraps the AWS error, if
	// any. Throttling, missing permissions, missing tables or queues and
	// other faults an operator can fix are not ErrRejected: retrying them
	// succeeds once the cause is gone (see rejected in items.go).
	ErrRejected = errors.New("AWS refused the request as invalid; retrying will not help")
	// ErrBatchTooLong: SQS refused a batch because its messages together
	// are over the queue's limit (1 MiB, or less on endpoints or queues
	// that keep the older 256 KiB). The error wraps ErrRejected too: the
	// same batch fails again, but smaller ones may not.
	ErrBatchTooLong = errors.New("batch too long for the queue")
)

// Errors of redriving a dead letter (pipeline.Redriver), here beside the
// dead letters so that server can branch on them without importing the
// pipeline.
var (
	// ErrCannotRedrive: the dead letter cannot be redriven as it is (what
	// it holds would fail the same way, or was cut short); the error says
	// why and what to do instead.
	ErrCannotRedrive = errors.New("cannot redrive")
	// ErrNotYet: the cause of the dead letter is still there (its queue
	// is still missing); fix it and redrive again.
	ErrNotYet = errors.New("cause not fixed yet")
)

// PrincipalError is a registration refused because of its principal. Msg
// is for the person who registered it: it names the principal and what to
// fix, and nothing internal. It matches ErrInvalidPrincipal, and the AWS
// answer behind it, if any, under errors.Is and errors.As.
type PrincipalError struct {
	Msg   string
	cause error // the AWS error, or nil
}

func (e *PrincipalError) Error() string {
	if e.cause != nil {
		return e.Msg + ": " + e.cause.Error()
	}
	return e.Msg
}

func (e *PrincipalError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalidPrincipal, e.cause}
	}
	return []error{ErrInvalidPrincipal}
}

// Account is where fanout runs, for the exact queue ARN in queue policies:
// SQS rejects a policy whose Resource is not the queue's own ARN.
type Account struct {
	Partition string // "aws", "aws-cn" or "aws-us-gov"
	Region    string // e.g. "us-east-1"
	ID        string // 12 digits
}

// Tables names the DynamoDB tables fanout uses.
type Tables struct {
	Agents           string
	Subscribers      string
	SubscriberEvents string
	DeadLetters      string
	// EventIDs holds each producer-chosen eventId's first position for
	// EventIDWindow (ClaimEventID).
	EventIDs string
	// Replays holds each replay's request, progress and lease.
	Replays string
}

// Agent is a registered agent and its delivery queue.
type Agent struct {
	ID          string    `json:"agentId"`
	QueueURL    string    `json:"queueUrl"`
	ResourceARN string    `json:"resourceArn"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Subscription says that SubscriberID follows ProducerID since CreatedAt.
type Subscription struct {
	ProducerID   string
	SubscriberID string
	CreatedAt    time.Time
	// DeletedAt is when it was unsubscribed; zero while it is live.
	DeletedAt time.Time
	// Gaps are earlier times it was unsubscribed before subscribing again
	// (those ended within the tombstone lifetime).
	Gaps []Gap
	// Filter is the subscription's filter policy as JSON (package
	// filter); nil when it takes every event.
	Filter []byte
}

// Gap is a time a subscription was not live: from the unsubscribe to the
// next subscribe.
type Gap struct{ From, To time.Time }

// SubscriberEvent is one producer event fanned out to one subscriber: an
// item of SubscriberEvents. The embedded event's AgentID is the producer.
type SubscriberEvent struct {
	event.Event
	SubscriberID string
	ShardID      string // Kinesis shard of the source record
	Seq          string // Kinesis sequence number of the source record
	// Index is the event's place in that record (a record holds an
	// ordered run of one producer's events): with Seq, the producer's
	// order among events of one millisecond, which replays restore.
	Index int
	// Arrived is when the source record reached Kinesis (its acceptance),
	// to the millisecond; zero when unknown (items written before fanout
	// kept it). The publisher times deliveries from it.
	Arrived time.Time
}

// DeadLetter is a record set aside because it cannot be processed.
// PutDeadLetter keeps at most the first 256 KiB of Data and 4 KiB of
// Reason, so that every dead letter fits in a DynamoDB item.
type DeadLetter struct {
	ID    string // deterministic, so a replay does not add a second one
	Stage string // "aggregator" or "publisher"
	// ProducerID and SubscriberID are whose events it holds, when known:
	// a record's partition key, a message's subscriber.
	ProducerID   string
	SubscriberID string
	Reason       string
	ShardID      string
	Seq          string
	Data         []byte // the record, or its first 256 KiB
	At           time.Time
	// DataBytes is the length of the record before truncation and
	// Truncated says whether Data is shorter. PutDeadLetter sets both
	// from Data; the values a caller gives are ignored.
	DataBytes int
	Truncated bool
	// RedrivenAt is when it was last redriven (MarkRedriven); zero if never.
	RedrivenAt time.Time
}

// DeadLetterQuery selects dead letters to list: those matching every
// non-empty field, newest first, at most Limit (0: DefaultDeadLetterPage)
// after Cursor (a previous page's next cursor; "" for the first page).
type DeadLetterQuery struct {
	Stage, ProducerID, SubscriberID string
	Limit                           int
	Cursor                          string
}

// Bounds of one page of dead letters.
const (
	DefaultDeadLetterPage = 50
	MaxDeadLetterPage     = 500
)

// QueueMessage is one SQS FIFO message to send.
type QueueMessage struct {
	ID      string // batch entry id, unique within one call
	GroupID string
	DedupID string
	Body    string
}

// Store reads and writes fanout's tables and queues. It is safe for
// concurrent use.
type Store struct {
	db     *dynamodb.Client
	sqs    *sqs.Client
	tables Tables
	// account holds the queues; queue policies name their exact ARNs.
	account Account
	// known remembers found agents (they never change).
	known *agentCache
	// pageSize caps the items of one Query or Scan page; 0 leaves
	// DynamoDB's own 1 MB pages. Tests set it small to prove that every
	// page is read.
	pageSize int32
	// now is the clock of createdAt and expiresAt values; tests set one
	// whose readings differ.
	now func() time.Time
}

// New returns a Store over the given clients and table names. account is
// where the clients' queues are (the caller's STS identity and region).
func New(db *dynamodb.Client, q *sqs.Client, tables Tables, account Account) *Store {
	return &Store{db: db, sqs: q, tables: tables, account: account, known: &agentCache{}, now: time.Now}
}

// CountAgentCache makes s count the hits and misses of its agent cache in
// rec. Call it before s is used.
func (s *Store) CountAgentCache(rec CacheRecorder) { s.known.rec = rec }
