package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/uuid"

	"github.com/fanout/fanout/internal/awstest"
)

// roleARN is a valid IAM role ARN unique to the calling test.
func roleARN(t *testing.T) string {
	t.Helper()
	return "arn:aws:iam::123456789012:role/" + awstest.Name(t, "agent")
}

func TestRegisterAgent(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	arn := roleARN(t)

	a, err := s.RegisterAgent(ctx, arn)
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	if u, err := uuid.Parse(a.ID); err != nil || u.Version() != 5 {
		t.Errorf("agent id %q: want a UUIDv5 (parse error %v)", a.ID, err)
	}
	if want := "/agents-" + a.ID + ".fifo"; !strings.HasSuffix(a.QueueURL, want) {
		t.Errorf("queue URL %q, want suffix %q", a.QueueURL, want)
	}
	if a.ResourceARN != arn || a.CreatedAt.IsZero() {
		t.Errorf("agent %+v: want resourceArn %s and a createdAt", a, arn)
	}

	again, err := s.RegisterAgent(ctx, arn)
	if err != nil || again != a {
		t.Errorf("RegisterAgent again = %+v, %v; want %+v", again, err, a)
	}
	got, err := s.Agent(ctx, a.ID)
	if err != nil || got != a {
		t.Errorf("Agent(%s) = %+v, %v; want %+v", a.ID, got, err, a)
	}
	other, err := s.RegisterAgent(ctx, roleARN(t))
	if err != nil || other.ID == a.ID || other.QueueURL == a.QueueURL {
		t.Errorf("RegisterAgent(other ARN) = %+v, %v; want another id and queue than %+v", other, err, a)
	}
}

// TestRegisterAgentConcurrent registers one ARN 20 times at once. Every call
// reads a different time, so a registration that overwrote another would
// return a createdAt of its own.
func TestRegisterAgentConcurrent(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	arn := roleARN(t)

	const n = 20
	agents := make([]Agent, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { agents[i], errs[i] = s.RegisterAgent(ctx, arn) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	stored, err := s.Agent(ctx, agents[0].ID)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	for i, a := range agents {
		if a != stored {
			t.Errorf("call %d returned %+v, want the stored agent %+v", i, a, stored)
		}
	}

	_, q := clients(s)
	out, err := q.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("agents-" + stored.ID)})
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if len(out.QueueUrls) != 1 {
		t.Errorf("queues of agent %s: %v, want exactly one", stored.ID, out.QueueUrls)
	}
}

// TestRegisterAgentQueue checks what the emulator stores of the queue's
// attributes; TestCreateQueueAttributes checks every attribute sent.
func TestRegisterAgentQueue(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	arn := roleARN(t)
	a, err := s.RegisterAgent(ctx, arn)
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	_, q := clients(s)
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(a.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	for name, want := range map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "false"} {
		if got := out.Attributes[name]; got != want {
			t.Errorf("queue attribute %s = %q, want %q", name, got, want)
		}
	}
	var policy policyDocument
	if err := json.Unmarshal([]byte(out.Attributes["Policy"]), &policy); err != nil {
		t.Fatalf("queue policy %q: %v", out.Attributes["Policy"], err)
	}
	// The Resource must be the queue's own ARN, as SQS reports it.
	wantResource := "arn:aws:sqs:us-east-1:000000000000:agents-" + a.ID + ".fifo"
	if got := out.Attributes["QueueArn"]; got != wantResource {
		t.Errorf("queue ARN %q, want %q (testAccount no longer matches the emulator?)", got, wantResource)
	}
	if len(policy.Statement) != 2 || policy.Statement[0].Principal.AWS != arn ||
		policy.Statement[0].Resource != wantResource || policy.Statement[1].Effect != "Deny" {
		t.Errorf("queue policy %+v: want an allow for principal %s on %s and a deny for everyone else", policy, arn, wantResource)
	}
}

func TestCreateQueueAttributes(t *testing.T) {
	t.Parallel()
	const arn = "arn:aws:iam::123456789012:role/r"
	policy, err := queuePolicy(testAccount, arn, "agents-id1.fifo")
	if err != nil {
		t.Fatal(err)
	}
	q := &recordingQueues{}
	if _, err := createQueue(context.Background(), q, "id1", arn, policy); err != nil {
		t.Fatalf("createQueue: %v", err)
	}
	want := map[string]string{
		"FifoQueue":                 "true",
		"ContentBasedDeduplication": "false",
		"DeduplicationScope":        "messageGroup",
		"FifoThroughputLimit":       "perMessageGroupId",
		"Policy":                    policy,
	}
	if got := aws.ToString(q.in.QueueName); got != "agents-id1.fifo" {
		t.Errorf("queue name %q, want agents-id1.fifo", got)
	}
	if !maps.Equal(q.in.Attributes, want) {
		t.Errorf("queue attributes\n got %v\nwant %v", q.in.Attributes, want)
	}
	if wantResource := `"Resource":"arn:aws:sqs:us-east-1:000000000000:agents-id1.fifo"`; !strings.Contains(q.in.Attributes["Policy"], wantResource) {
		t.Errorf("queue policy %s, want %s", q.in.Attributes["Policy"], wantResource)
	}
}

// recordingQueues records the CreateQueue input, if any.
type recordingQueues struct {
	agentQueues
	in *sqs.CreateQueueInput
}

func (r *recordingQueues) CreateQueue(_ context.Context, in *sqs.CreateQueueInput, _ ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	r.in = in
	return &sqs.CreateQueueOutput{QueueUrl: aws.String("http://sqs/" + aws.ToString(in.QueueName))}, nil
}

func TestAgentNotFound(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	id := uuid.NewString()
	_, err := s.Agent(testContext(t), id)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), id) {
		t.Errorf("Agent(unknown) error = %v, want ErrNotFound naming %s", err, id)
	}
}

// The registration calls faultyItems tells apart, by their inputs.
const (
	opRead     = "read"      // GetItem
	opClaim    = "claim"     // PutItem of the pending row
	opTakeOver = "take over" // UpdateItem moving an abandoned claim
	opActivate = "activate"  // UpdateItem making the row active
	opRenew    = "renew"     // UpdateItem renewing a claim before clean-up
	opRelease  = "release"   // DeleteItem of the pending row
)

// fault is what faultyItems does instead of one call.
type fault struct {
	before func() // called first, if set (it may block)
	cancel bool   // cancel the caller's context first
	write  bool   // pass the call on first, so it lands but its answer is lost
	err    error  // the error returned; nil passes the call on
}

// faultyItems passes DynamoDB calls on to a real client, except the
// operations (opClaim, ...) it has a fault for.
type faultyItems struct {
	agentItems
	faults map[string]fault
	cancel context.CancelFunc // cancels the caller's context
}

// do runs call, the real operation op, as op's fault says.
func (f faultyItems) do(op string, call func() error) error {
	ft, ok := f.faults[op]
	if !ok {
		return call()
	}
	if ft.before != nil {
		ft.before()
	}
	if ft.cancel {
		f.cancel()
	}
	if ft.err == nil || ft.write {
		if err := call(); err != nil || ft.err == nil {
			return err
		}
	}
	return ft.err
}

func (f faultyItems) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.GetItemOutput, err error) {
	return out, f.do(opRead, func() error { out, err = f.agentItems.GetItem(ctx, in, opts...); return err })
}

func (f faultyItems) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.PutItemOutput, err error) {
	return out, f.do(opClaim, func() error { out, err = f.agentItems.PutItem(ctx, in, opts...); return err })
}

func (f faultyItems) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.UpdateItemOutput, err error) {
	op := opRenew
	switch {
	case in.ExpressionAttributeValues[":url"] != nil:
		op = opActivate
	case in.ExpressionAttributeValues[":fromSince"] != nil: // only a takeover checks the claim's age
		op = opTakeOver
	}
	return out, f.do(op, func() error { out, err = f.agentItems.UpdateItem(ctx, in, opts...); return err })
}

func (f faultyItems) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.DeleteItemOutput, err error) {
	return out, f.do(opRelease, func() error { out, err = f.agentItems.DeleteItem(ctx, in, opts...); return err })
}

// countingCreates counts CreateQueue calls, passing them on.
type countingCreates struct {
	agentQueues
	n atomic.Int32
}

func (c *countingCreates) CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	c.n.Add(1)
	return c.agentQueues.CreateQueue(ctx, in, opts...)
}

// failingCreate is an SQS client whose CreateQueue fails with err.
type failingCreate struct {
	agentQueues
	err error
}

func (f failingCreate) CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	return nil, f.err
}

// testRegistrar is s's registrar over db and q. It never pauses: a test
// that needs a concurrent registration to progress while another waits
// sets sleep itself.
func testRegistrar(s *Store, db agentItems, q agentQueues) registrar {
	r := s.agentRegistrar()
	r.db, r.queues = db, q
	r.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return r
}

// agentItem returns agent id's raw row in s, nil when there is none.
func agentItem(t *testing.T, s *Store, id string) map[string]types.AttributeValue {
	t.Helper()
	db, _ := clients(s)
	out, err := db.GetItem(testContext(t), &dynamodb.GetItemInput{
		TableName:      aws.String(s.tables.Agents),
		Key:            agentKey(id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem agent %s: %v", id, err)
	}
	return out.Item
}

// itemString is string attribute name of item, "" when absent.
func itemString(item map[string]types.AttributeValue, name string) string {
	v, _ := item[name].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

// describeItem renders an Agents row's string attributes, for messages.
func describeItem(item map[string]types.AttributeValue) string {
	if item == nil {
		return "(none)"
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(item)) {
		fmt.Fprintf(&b, "%s=%q ", name, itemString(item, name))
	}
	return strings.TrimSpace(b.String())
}

// queueExists reports whether agent id's queue exists.
func queueExists(t *testing.T, s *Store, id string) bool {
	t.Helper()
	_, q := clients(s)
	_, err := q.GetQueueUrl(testContext(t), &sqs.GetQueueUrlInput{QueueName: aws.String(queueName(id))})
	return err == nil
}

// putPendingRow writes agent arn's row pending under claim, claimed at.
func putPendingRow(t *testing.T, s *Store, arn, claim string, at time.Time) {
	t.Helper()
	putAgentItem(t, s, map[string]types.AttributeValue{
		attrAgentID:     attrS(agentID(arn)),
		attrResourceARN: attrS(arn),
		attrStatus:      attrS(statusPending),
		attrClaim:       attrS(claim),
		attrClaimedAt:   attrS(formatTime(at)),
	})
}

// renewClaim moves agent id's pending row from claim old to claim token,
// claimed at, as the claim's owner renewing it does.
func renewClaim(t *testing.T, s *Store, id, old, token string, at time.Time) {
	t.Helper()
	db, _ := clients(s)
	_, err := db.UpdateItem(testContext(t), &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.tables.Agents),
		Key:                      agentKey(id),
		UpdateExpression:         aws.String("SET #token = :token, #since = :since"),
		ConditionExpression:      aws.String("#token = :old AND #status = :pending"),
		ExpressionAttributeNames: map[string]string{"#token": attrClaim, "#since": attrClaimedAt, "#status": attrStatus},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":token":   attrS(token),
			":since":   attrS(formatTime(at)),
			":old":     attrS(old),
			":pending": attrS(statusPending),
		},
	})
	if err != nil {
		t.Errorf("renew claim %s on agent %s: %v", old, id, err)
	}
}

// putAgentItem writes item into s's Agents table.
func putAgentItem(t *testing.T, s *Store, item map[string]types.AttributeValue) {
	t.Helper()
	db, _ := clients(s)
	if _, err := db.PutItem(testContext(t), &dynamodb.PutItemInput{TableName: aws.String(s.tables.Agents), Item: item}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

// TestRegisterAgentFailures injects failures the emulator cannot produce
// into otherwise real clients, and checks what is left afterwards.
func TestRegisterAgentFailures(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	_, q := clients(s)
	internal := &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
	conditionFailed := &types.ConditionalCheckFailedException{Message: aws.String("injected")}
	for _, tc := range []struct {
		name   string
		faults map[string]fault // of the DynamoDB client
		queues agentQueues      // nil for the real client
		// account is where fanout runs; zero for the store's.
		account Account
		// wantErr is the error wanted, nil for success; wantMsg is part of
		// the *PrincipalError's message wanted.
		wantErr error
		wantMsg string
		// What exists afterwards: an agent (an active row), a pending row,
		// the agent's queue. No row at all unless one of the first two.
		wantAgent, wantPending, wantQueue bool
		noCreate                          bool // CreateQueue must not be called
	}{
		{
			name:     "claim fails: nothing written",
			faults:   map[string]fault{opClaim: {err: internal}},
			wantErr:  internal,
			noCreate: true,
		},
		{
			name:     "claim lands but its answer is lost: claim released",
			faults:   map[string]fault{opClaim: {err: internal, write: true}},
			wantErr:  internal,
			noCreate: true,
		},
		{
			name:      "claim lands and the SDK's retry fails its condition: registered",
			faults:    map[string]fault{opClaim: {err: conditionFailed, write: true}},
			wantAgent: true,
			wantQueue: true,
		},
		{
			name:    "activation fails: queue and row deleted",
			faults:  map[string]fault{opActivate: {err: internal}},
			wantErr: internal,
		},
		{
			name:    "activation fails as the caller gives up: deleted all the same",
			faults:  map[string]fault{opActivate: {err: context.Canceled, cancel: true}},
			wantErr: context.Canceled,
		},
		{
			name:      "activation lands but its answer is lost: agent returned, queue kept",
			faults:    map[string]fault{opActivate: {err: internal, write: true}},
			wantAgent: true,
			wantQueue: true,
		},
		{
			name:      "activation lands and the SDK's retry fails its condition: agent returned",
			faults:    map[string]fault{opActivate: {err: conditionFailed, write: true}},
			wantAgent: true,
			wantQueue: true,
		},
		{
			name:        "activation and renewal fail: queue and pending row kept for a later takeover",
			faults:      map[string]fault{opActivate: {err: internal}, opRenew: {err: internal}},
			wantErr:     internal,
			wantPending: true,
			wantQueue:   true,
		},
		{
			name:        "activation and release fail: queue deleted, pending row kept",
			faults:      map[string]fault{opActivate: {err: internal}, opRelease: {err: internal}},
			wantErr:     internal,
			wantPending: true,
		},
		{
			name:    "queue deleted recently: retry later, row deleted",
			queues:  failingCreate{agentQueues: q, err: &sqstypes.QueueDeletedRecently{Message: aws.String("injected")}},
			wantErr: ErrRetryLater,
		},
		{
			name: "queue deleted recently, legacy code: retry later, row deleted",
			queues: failingCreate{agentQueues: q, err: &smithy.GenericAPIError{
				Code: "AWS.SimpleQueueService.QueueDeletedRecently", Message: "injected",
			}},
			wantErr: ErrRetryLater,
		},
		{
			name:    "queue creation fails: row deleted",
			queues:  failingCreate{agentQueues: q, err: internal},
			wantErr: internal,
		},
		{
			name:     "principal in another partition: refused before any AWS call",
			account:  Account{Partition: "aws-cn", Region: "cn-north-1", ID: "111122223333"},
			wantErr:  ErrInvalidPrincipal,
			wantMsg:  "is in partition aws but fanout runs in partition aws-cn",
			noCreate: true,
		},
		{
			name: "SQS rejects the policy's principal: invalid principal, nothing written",
			queues: failingCreate{agentQueues: q, err: &sqstypes.InvalidAttributeValue{
				Message: aws.String("Invalid value for the parameter Policy."),
			}},
			wantErr: ErrInvalidPrincipal,
			wantMsg: "SQS rejected the queue policy for principal arn:aws:iam::123456789012:role/",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			arn := roleARN(t)
			id := agentID(arn)
			db, _ := clients(s)
			queues := &countingCreates{agentQueues: q}
			if tc.queues != nil {
				queues.agentQueues = tc.queues
			}
			r := testRegistrar(s, faultyItems{agentItems: db, faults: tc.faults, cancel: cancel}, queues)
			if tc.account != (Account{}) {
				r.account = tc.account
			}

			a, err := r.register(ctx, arn)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("register: %v", err)
			case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), id)):
				t.Fatalf("register error = %v, want %v naming agent %s", err, tc.wantErr, id)
			case tc.wantErr == nil && (a.ID != id || a.QueueURL == "" || a.CreatedAt.IsZero()):
				t.Errorf("register = %+v, want agent %s with a queue and createdAt", a, id)
			}
			if pe, ok := errors.AsType[*PrincipalError](err); tc.wantMsg != "" && (!ok || !strings.Contains(pe.Msg, tc.wantMsg) || strings.Contains(pe.Msg, id)) {
				t.Errorf("register error = %v, want a *PrincipalError whose message says %q and names no agent id", err, tc.wantMsg)
			}
			if got := queues.n.Load(); (got == 0) != tc.noCreate {
				t.Errorf("CreateQueue called %d times, want none: %v", got, tc.noCreate)
			}

			stored, err := s.Agent(testContext(t), id)
			if gotAgent := err == nil; gotAgent != tc.wantAgent || (gotAgent && stored != a) {
				t.Errorf("Agent = %+v, %v; want an agent: %v, the one returned (%+v)", stored, err, tc.wantAgent, a)
			}
			item := agentItem(t, s, id)
			if pending := itemString(item, attrStatus) == statusPending; pending != tc.wantPending || (item != nil) != (tc.wantAgent || tc.wantPending) {
				t.Errorf("agent row %s: want a pending row: %v, any row: %v", describeItem(item), tc.wantPending, tc.wantAgent || tc.wantPending)
			}
			if got := queueExists(t, s, id); got != tc.wantQueue {
				t.Errorf("queue exists: %v, want %v", got, tc.wantQueue)
			}
		})
	}
}

// TestRegisterAgentRace replays, step by step, registrations of one ARN that
// interleave with a failing or stalled owner: call A claims the row and
// creates the queue, and B arrives while A's activation is under way. The
// queue must survive whatever A does then, under the agent B returns.
func TestRegisterAgentRace(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	internal := &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
	for _, tc := range []struct {
		name string
		// activate is the fault of A's activation (its before is set
		// here); nil err lets it through to DynamoDB.
		activate fault
		// bWaitsForA: B's first pause lets A's activation go on and lasts
		// until A has returned. Otherwise A's activation waits until B has
		// returned, and A's clock runs twice agentClaimStale behind, so
		// that B finds A's claim abandoned once it has waited
		// agentWaitTimeout.
		bWaitsForA bool
		wantAErr   error // nil: A returns B's agent
	}{
		{
			// The reviewed bug: A's clean-up deleted the queue B had
			// registered in the meantime. Now B waits for A's claim, and
			// A's clean-up ends before B claims the row in its turn.
			name:       "A's activation fails while B waits: A cleans up, then B registers",
			activate:   fault{err: internal},
			bWaitsForA: true,
			wantAErr:   internal,
		},
		{
			name:     "A stalls and B takes over: A's activation then fails on its moved claim and deletes nothing",
			activate: fault{},
		},
		{
			name:     "A stalls and B takes over: A's activation then fails transiently and deletes nothing",
			activate: fault{err: internal},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			arn := roleARN(t)
			id := agentID(arn)
			db, q := clients(s)

			activating := make(chan struct{}) // closed when A's activation starts
			proceed := make(chan struct{})    // closed to let A's activation go on
			var once sync.Once
			letAProceed := func() { once.Do(func() { close(proceed) }) }
			activate := tc.activate
			activate.before = func() {
				close(activating)
				select {
				case <-proceed:
				case <-ctx.Done():
				}
			}
			a := testRegistrar(s, faultyItems{agentItems: db, faults: map[string]fault{opActivate: activate}}, q)
			if !tc.bWaitsForA {
				behind := s.now
				a.now = func() time.Time { return behind().Add(-2 * agentClaimStale) }
			}
			var aAgent Agent
			var aErr error
			aDone := make(chan struct{})
			go func() {
				defer close(aDone)
				aAgent, aErr = a.register(ctx, arn)
			}()
			select {
			case <-activating:
			case <-ctx.Done():
				t.Fatal("A never activated")
			}

			b := testRegistrar(s, db, q)
			var bPauses atomic.Int32
			b.sleep = func(ctx context.Context, _ time.Duration) error {
				bPauses.Add(1)
				if tc.bWaitsForA {
					letAProceed()
					select {
					case <-aDone:
					case <-ctx.Done():
					}
				}
				return ctx.Err()
			}
			bAgent, bErr := b.register(ctx, arn)
			letAProceed()
			<-aDone

			if bErr != nil || bAgent.ID != id {
				t.Fatalf("B's register = %+v, %v; want agent %s", bAgent, bErr, id)
			}
			if bPauses.Load() == 0 {
				t.Errorf("B never waited for A's claim")
			}
			switch {
			case tc.wantAErr != nil && !errors.Is(aErr, tc.wantAErr):
				t.Errorf("A's register = %+v, %v; want error %v", aAgent, aErr, tc.wantAErr)
			case tc.wantAErr == nil && (aErr != nil || aAgent != bAgent):
				t.Errorf("A's register = %+v, %v; want B's agent %+v", aAgent, aErr, bAgent)
			}
			if stored, err := s.Agent(ctx, id); err != nil || stored != bAgent {
				t.Errorf("Agent = %+v, %v; want B's agent %+v", stored, err, bAgent)
			}
			if _, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(bAgent.QueueURL)}); err != nil {
				t.Errorf("queue %s of the registered agent: %v, want it to exist", bAgent.QueueURL, err)
			}
		})
	}
}

// TestRegisterAgentLateActivation: an owner's activation request that
// reaches DynamoDB late, after the owner gave it up and began to clean up,
// fails its condition: it can neither activate an agent whose queue is
// being deleted nor bring the released row back. A's activation fails here
// before it is sent; the test then sends that very request at a step of
// A's clean-up, or after A returned.
func TestRegisterAgentLateActivation(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	internal := &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
	const (
		stepDeleteQueue = "delete queue" // SQS DeleteQueue of A's queue
		stepReturned    = "returned"     // A's register has returned
	)
	for _, tc := range []struct {
		name  string
		lands string // the step just before which A's activation lands
	}{
		{name: "lands while A deletes the queue", lands: stepDeleteQueue},
		{name: "lands before A releases the row", lands: opRelease},
		{name: "lands after A returned", lands: stepReturned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			arn := roleARN(t)
			id := agentID(arn)
			db, q := clients(s)

			recorded := &recordingActivations{}
			var lateErr error
			landed := 0
			land := func() {
				landed++
				if recorded.last == nil {
					t.Errorf("%s: A sent no activation to land late", tc.lands)
					return
				}
				_, lateErr = db.UpdateItem(ctx, recorded.last)
			}
			faults := map[string]fault{opActivate: {err: internal}} // fails unsent
			var queues agentQueues = q
			switch tc.lands {
			case stepDeleteQueue:
				queues = hookedDeletes{agentQueues: q, before: land}
			case opRelease:
				faults[opRelease] = fault{before: land}
			}
			recorded.agentItems = faultyItems{agentItems: db, faults: faults}
			a, err := testRegistrar(s, recorded, queues).register(ctx, arn)
			if !errors.Is(err, internal) || !strings.Contains(err.Error(), id) {
				t.Fatalf("A's register = %+v, %v; want error %v naming %s", a, err, internal, id)
			}
			if tc.lands == stepReturned {
				land()
			}

			if landed != 1 {
				t.Fatalf("A's activation landed %d times, want once (A never reached %s?)", landed, tc.lands)
			}
			if _, ok := errors.AsType[*types.ConditionalCheckFailedException](lateErr); !ok {
				t.Errorf("late activation = %v, want ConditionalCheckFailedException", lateErr)
			}
			if item := agentItem(t, s, id); item != nil {
				t.Errorf("agent row %s after A cleaned up, want none", describeItem(item))
			}
			if stored, err := s.Agent(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Agent = %+v, %v; want ErrNotFound", stored, err)
			}
			if queueExists(t, s, id) {
				t.Errorf("queue of agent %s exists after A cleaned up", id)
			}
		})
	}
}

// recordingActivations passes DynamoDB calls on, recording the last
// activation (the UpdateItem making a row active) on its way.
type recordingActivations struct {
	agentItems
	last *dynamodb.UpdateItemInput
}

func (r *recordingActivations) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if in.ExpressionAttributeValues[":url"] != nil {
		r.last = in
	}
	return r.agentItems.UpdateItem(ctx, in, opts...)
}

// hookedDeletes calls before at every DeleteQueue, then passes it on.
type hookedDeletes struct {
	agentQueues
	before func()
}

func (h hookedDeletes) DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, opts ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error) {
	h.before()
	return h.agentQueues.DeleteQueue(ctx, in, opts...)
}

// TestRegisterAgentPendingRow: a registration finding a row pending waits
// agentWaitTimeout for it, then takes over a claim abandoned for
// agentClaimStale and completes the registration (with the queue its dead
// owner created, if any), or leaves a younger claim alone, and a claim its
// owner renewed after the registration read it.
func TestRegisterAgentPendingRow(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	internal := &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
	const maxPolls = int(agentWaitTimeout / agentPollInterval)
	const owner = "owner" // the pending row's claim
	for _, tc := range []struct {
		name      string
		age       time.Duration    // of the pending row's claim
		queue     bool             // the claim's owner created the queue
		realPause time.Duration    // > 0: pause for real, the caller giving up after it
		faults    map[string]fault // of the DynamoDB client
		// renewAs, if set, is the claim under which the owner renews the
		// row (claimed now) after the registration read it abandoned,
		// just before its takeover reaches DynamoDB.
		renewAs      string
		wantErr      error // nil: registered
		wantTakeOver bool
	}{
		{name: "abandoned with its queue: taken over", age: 2 * agentClaimStale, queue: true, wantTakeOver: true},
		{name: "abandoned before its queue: taken over", age: 2 * agentClaimStale, wantTakeOver: true},
		{name: "abandoned just now: taken over", age: agentClaimStale, wantTakeOver: true},
		{name: "almost abandoned: retry later", age: agentClaimStale - time.Millisecond, wantErr: ErrRetryLater},
		{name: "fresh: retry later", age: time.Second, queue: true, wantErr: ErrRetryLater},
		{
			name: "taken over though the answer is lost", age: 2 * agentClaimStale, wantTakeOver: true,
			faults: map[string]fault{opTakeOver: {err: &types.ConditionalCheckFailedException{Message: aws.String("injected")}, write: true}},
		},
		{
			name: "takeover fails: row left alone", age: 2 * agentClaimStale,
			faults:  map[string]fault{opTakeOver: {err: internal}},
			wantErr: internal,
		},
		{name: "caller gives up while waiting", age: time.Second, realPause: 3 * agentPollInterval, wantErr: context.DeadlineExceeded},
		{
			// Its owner was alive after all: a taker must not create a
			// queue, or activate the row, under a live owner's claim.
			name: "abandoned, but its owner renews it before the takeover lands: retry later, row and queue left alone",
			age:  2 * agentClaimStale, queue: true, renewAs: owner,
			wantErr: ErrRetryLater,
		},
		{
			name: "abandoned, but its owner renews it under a new claim to clean up: retry later, row and queue left alone",
			age:  2 * agentClaimStale, queue: true, renewAs: "owner-cleaning-up",
			wantErr: ErrRetryLater,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			arn := roleARN(t)
			id := agentID(arn)
			db, q := clients(s)
			putPendingRow(t, s, arn, owner, now.Add(-tc.age))
			if tc.queue {
				policy, err := queuePolicy(s.account, arn, queueName(id))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := createQueue(testContext(t), q, id, arn, policy); err != nil {
					t.Fatalf("createQueue: %v", err)
				}
			}
			faults, wantClaim, wantSince := tc.faults, owner, now.Add(-tc.age)
			renewals := 0
			if tc.renewAs != "" {
				faults = map[string]fault{opTakeOver: {before: func() {
					renewals++
					renewClaim(t, s, id, owner, tc.renewAs, now)
				}}}
				wantClaim, wantSince = tc.renewAs, now
			}
			creates := &countingCreates{agentQueues: q}
			r := testRegistrar(s, faultyItems{agentItems: db, faults: faults}, creates)
			r.now = func() time.Time { return now }
			var pauses []time.Duration
			r.sleep = func(ctx context.Context, d time.Duration) error {
				pauses = append(pauses, d)
				return ctx.Err()
			}
			ctx := testContext(t)
			if tc.realPause > 0 {
				r.sleep = pause
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.realPause)
				defer cancel()
			}

			a, err := r.register(ctx, arn)
			switch {
			case tc.wantErr == nil && (err != nil || a.ID != id || a.CreatedAt != now):
				t.Fatalf("register = %+v, %v; want agent %s created at %v", a, err, id, now)
			case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), id)):
				t.Fatalf("register = %+v, %v; want error %v naming %s", a, err, tc.wantErr, id)
			}
			if tc.renewAs != "" && renewals != 1 {
				t.Errorf("the owner renewed its claim %d times before a takeover, want once", renewals)
			}
			if tc.realPause == 0 && (len(pauses) != maxPolls || slices.ContainsFunc(pauses, func(d time.Duration) bool { return d != agentPollInterval })) {
				t.Errorf("paused %v, want %d pauses of %v", pauses, maxPolls, agentPollInterval)
			}
			item := agentItem(t, s, id)
			claim, status := itemString(item, attrClaim), itemString(item, attrStatus)
			if tc.wantTakeOver {
				if stored, err := s.Agent(testContext(t), id); err != nil || stored != a {
					t.Errorf("Agent = %+v, %v; want %+v", stored, err, a)
				}
				if status != statusActive || claim == owner {
					t.Errorf("row %s: want it active under a claim other than %s", describeItem(item), owner)
				}
				if !queueExists(t, s, id) {
					t.Errorf("queue of agent %s does not exist", id)
				}
				return
			}
			if status != statusPending || claim != wantClaim || itemString(item, attrClaimedAt) != formatTime(wantSince) {
				t.Errorf("row %s: want it still pending under claim %s claimed at %s, as its owner left it",
					describeItem(item), wantClaim, formatTime(wantSince))
			}
			if n := creates.n.Load(); n != 0 {
				t.Errorf("CreateQueue called %d times under another's claim, want 0", n)
			}
			if got := queueExists(t, s, id); got != tc.queue {
				t.Errorf("queue exists: %v, want %v (untouched)", got, tc.queue)
			}
		})
	}
}

// TestAgentRows: Agent finds only active rows, and rows written before
// registration claimed rows (no status) count as active; RegisterAgent
// returns those without creating a queue.
func TestAgentRows(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	created := time.Now().UTC().Truncate(time.Millisecond)
	for _, tc := range []struct {
		name    string
		item    func(a Agent) map[string]types.AttributeValue // the row of agent a
		wantErr error                                         // nil: Agent returns a; errAny: some error
	}{
		{
			name: "active",
			item: func(a Agent) map[string]types.AttributeValue {
				return map[string]types.AttributeValue{
					attrAgentID: attrS(a.ID), attrResourceARN: attrS(a.ResourceARN), attrQueueURL: attrS(a.QueueURL),
					attrCreatedAt: attrS(formatTime(a.CreatedAt)), attrStatus: attrS(statusActive),
					attrClaim: attrS("c"), attrClaimedAt: attrS(formatTime(a.CreatedAt)),
				}
			},
		},
		{
			name: "without status, as written before claims",
			item: func(a Agent) map[string]types.AttributeValue {
				return map[string]types.AttributeValue{
					attrAgentID: attrS(a.ID), attrResourceARN: attrS(a.ResourceARN), attrQueueURL: attrS(a.QueueURL),
					attrCreatedAt: attrS(formatTime(a.CreatedAt)),
				}
			},
		},
		{
			name: "pending: not found",
			item: func(a Agent) map[string]types.AttributeValue {
				return map[string]types.AttributeValue{
					attrAgentID: attrS(a.ID), attrResourceARN: attrS(a.ResourceARN), attrStatus: attrS(statusPending),
					attrClaim: attrS("c"), attrClaimedAt: attrS(formatTime(a.CreatedAt)),
				}
			},
			wantErr: ErrNotFound,
		},
		{
			name: "without status or queue: malformed",
			item: func(a Agent) map[string]types.AttributeValue {
				return map[string]types.AttributeValue{attrAgentID: attrS(a.ID), attrResourceARN: attrS(a.ResourceARN)}
			},
			wantErr: errAny,
		},
		{
			name: "unknown status: malformed",
			item: func(a Agent) map[string]types.AttributeValue {
				return map[string]types.AttributeValue{
					attrAgentID: attrS(a.ID), attrResourceARN: attrS(a.ResourceARN), attrQueueURL: attrS(a.QueueURL),
					attrCreatedAt: attrS(formatTime(a.CreatedAt)), attrStatus: attrS("deleted"),
				}
			},
			wantErr: errAny,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			arn := roleARN(t)
			id := agentID(arn)
			want := Agent{ID: id, QueueURL: "http://localhost:4566/000000000000/" + queueName(id), ResourceARN: arn, CreatedAt: created}
			putAgentItem(t, s, tc.item(want))

			got, err := s.Agent(ctx, id)
			switch {
			case tc.wantErr == nil && (err != nil || got != want):
				t.Errorf("Agent = %+v, %v; want %+v", got, err, want)
			case tc.wantErr == errAny && (err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), id)):
				t.Errorf("Agent = %+v, %v; want an error naming %s other than ErrNotFound", got, err, id)
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Errorf("Agent = %+v, %v; want %v", got, err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			db, q := clients(s)
			creates := &countingCreates{agentQueues: q}
			if got, err := testRegistrar(s, db, creates).register(ctx, arn); err != nil || got != want || creates.n.Load() != 0 {
				t.Errorf("register = %+v, %v after %d CreateQueue calls; want %+v after none", got, err, creates.n.Load(), want)
			}
		})
	}
}

// errAny stands for any error in a table of wanted errors.
var errAny = errors.New("any error")

// TestAgentPendingNotRemembered: a pending agent, not found, is found once
// its registration completes.
func TestAgentPendingNotRemembered(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	arn := roleARN(t)
	id := agentID(arn)
	putPendingRow(t, s, arn, "owner", time.Now().Add(-2*agentClaimStale))
	if _, err := s.Agent(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Agent(pending) = %v, want ErrNotFound", err)
	}
	db, q := clients(s)
	a, err := testRegistrar(s, db, q).register(ctx, arn) // takes the abandoned claim over
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if got, err := s.Agent(ctx, id); err != nil || got != a {
		t.Errorf("Agent = %+v, %v; want %+v", got, err, a)
	}
}

// TestAgentRemembered: a found agent is read from DynamoDB once per Store;
// an unknown one is asked for every time (it may be registered meanwhile).
// A registered agent is remembered too.
func TestAgentRemembered(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	var gets atomic.Int64
	s.db = dynamodb.NewFromConfig(awstest.Config(t), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("count-gets",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if _, ok := in.Parameters.(*dynamodb.GetItemInput); ok {
						gets.Add(1)
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
	ctx := testContext(t)
	// Another Store (another task) registers the agent.
	other := *s
	other.known = &agentCache{}
	a, err := other.RegisterAgent(ctx, roleARN(t))
	if err != nil {
		t.Fatal(err)
	}
	before := gets.Load()
	for range 3 {
		got, err := s.Agent(ctx, a.ID)
		if err != nil || got != a {
			t.Fatalf("Agent = %+v, %v; want %+v", got, err, a)
		}
	}
	if n := gets.Load() - before; n != 1 {
		t.Errorf("3 lookups of one agent made %d GetItem calls, want 1", n)
	}
	before = gets.Load()
	if got, err := other.Agent(ctx, a.ID); err != nil || got != a {
		t.Fatalf("Agent = %+v, %v; want %+v", got, err, a)
	}
	if got, err := other.RegisterAgent(ctx, a.ResourceARN); err != nil || got != a {
		t.Fatalf("RegisterAgent again = %+v, %v; want %+v", got, err, a)
	}
	if n := gets.Load() - before; n != 0 {
		t.Errorf("lookup and registration of an agent its Store registered made %d GetItem calls, want 0", n)
	}
	unknown := uuid.NewString()
	before = gets.Load()
	for range 2 {
		if _, err := s.Agent(ctx, unknown); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Agent(unknown) = %v, want ErrNotFound", err)
		}
	}
	if n := gets.Load() - before; n != 2 {
		t.Errorf("2 lookups of an unknown agent made %d GetItem calls, want 2", n)
	}
}
