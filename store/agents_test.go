package store

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
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
	if len(policy.Statement) != 1 || policy.Statement[0].Principal.AWS != arn ||
		policy.Statement[0].Resource != wantResource {
		t.Errorf("queue policy %+v: want one statement for principal %s on %s", policy, arn, wantResource)
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

func TestQueuePolicy(t *testing.T) {
	t.Parallel()
	const actions = `"Action":["sqs:ReceiveMessage","sqs:DeleteMessage","sqs:GetQueueAttributes","sqs:GetQueueUrl"]`
	cn := Account{Partition: "aws-cn", Region: "cn-north-1", ID: "111122223333"}
	gov := Account{Partition: "aws-us-gov", Region: "us-gov-west-1", ID: "444455556666"}
	for _, tc := range []struct {
		account Account
		arn     string
		want    string // the policy; "" when the principal is refused
		wantErr string // part of the refusal's message
	}{
		{
			account: testAccount,
			arn:     "arn:aws:iam::123456789012:role/worker",
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/worker"},` +
				actions + `,"Resource":"arn:aws:sqs:us-east-1:000000000000:agents-x.fifo"}]}`,
		},
		{
			account: cn,
			arn:     "arn:aws-cn:iam::123456789012:user/path/alice",
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws-cn:iam::123456789012:user/path/alice"},` +
				actions + `,"Resource":"arn:aws-cn:sqs:cn-north-1:111122223333:agents-x.fifo"}]}`,
		},
		{
			account: gov,
			arn:     "arn:aws-us-gov:iam::123456789012:root",
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws-us-gov:iam::123456789012:root"},` +
				actions + `,"Resource":"arn:aws-us-gov:sqs:us-gov-west-1:444455556666:agents-x.fifo"}]}`,
		},
		{
			// Quotes in a principal cannot break out of the string.
			account: testAccount,
			arn:     `arn:aws:iam::123456789012:role/a"b`,
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/a\"b"},` +
				actions + `,"Resource":"arn:aws:sqs:us-east-1:000000000000:agents-x.fifo"}]}`,
		},
		{
			account: testAccount,
			arn:     "arn:aws-cn:iam::123456789012:role/worker",
			wantErr: "principal arn:aws-cn:iam::123456789012:role/worker is in partition aws-cn but fanout runs in partition aws",
		},
		{
			account: gov,
			arn:     "arn:aws:iam::123456789012:root",
			wantErr: "is in partition aws but fanout runs in partition aws-us-gov",
		},
	} {
		got, err := queuePolicy(tc.account, tc.arn, "agents-x.fifo")
		if tc.wantErr != "" {
			pe, ok := errors.AsType[*PrincipalError](err)
			if !ok || !errors.Is(err, ErrInvalidPrincipal) || !strings.Contains(pe.Msg, tc.wantErr) {
				t.Errorf("queuePolicy(%+v, %q) = %q, %v; want a *PrincipalError (ErrInvalidPrincipal) saying %q", tc.account, tc.arn, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("queuePolicy(%+v, %q) =\n %s, %v\nwant\n %s", tc.account, tc.arn, got, err, tc.want)
		}
	}
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

// TestRegisterAgentFailures injects failures the emulator cannot produce
// into otherwise real clients.
func TestRegisterAgentFailures(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	db, q := clients(s)
	internal := &smithy.GenericAPIError{Code: "InternalServerError", Message: "injected"}
	for _, tc := range []struct {
		name string
		// db and queues wrap the real clients; cancel cancels the call's
		// context.
		db     func(cancel context.CancelFunc) agentItems
		queues agentQueues
		// account is where fanout runs; zero for the store's.
		account Account
		// wantErr is the error wanted, nil for success; wantMsg is part of
		// the *PrincipalError's message wanted.
		wantErr   error
		wantMsg   string
		wantAgent bool // an agent row exists afterwards
		wantQueue bool // the agent's queue exists afterwards
		noCreate  bool // CreateQueue must not be called
	}{
		{
			name:    "put fails: queue deleted",
			db:      func(context.CancelFunc) agentItems { return failingPut{agentItems: db, err: internal} },
			queues:  q,
			wantErr: internal,
		},
		{
			name: "put fails as the caller gives up: queue deleted all the same",
			db: func(cancel context.CancelFunc) agentItems {
				return failingPut{agentItems: db, err: context.Canceled, before: cancel}
			},
			queues:  q,
			wantErr: context.Canceled,
		},
		{
			name:      "put lands but its answer is lost: agent returned, queue kept",
			db:        func(context.CancelFunc) agentItems { return failingPut{agentItems: db, err: internal, write: true} },
			queues:    q,
			wantAgent: true,
			wantQueue: true,
		},
		{
			name:    "queue deleted recently: retry later",
			db:      func(context.CancelFunc) agentItems { return db },
			queues:  failingCreate{agentQueues: q, err: &sqstypes.QueueDeletedRecently{Message: aws.String("injected")}},
			wantErr: ErrRetryLater,
		},
		{
			name: "queue deleted recently, legacy code: retry later",
			db:   func(context.CancelFunc) agentItems { return db },
			queues: failingCreate{agentQueues: q, err: &smithy.GenericAPIError{
				Code: "AWS.SimpleQueueService.QueueDeletedRecently", Message: "injected",
			}},
			wantErr: ErrRetryLater,
		},
		{
			name:     "principal in another partition: refused before any AWS call",
			db:       func(context.CancelFunc) agentItems { return db },
			queues:   q,
			account:  Account{Partition: "aws-cn", Region: "cn-north-1", ID: "111122223333"},
			wantErr:  ErrInvalidPrincipal,
			wantMsg:  "is in partition aws but fanout runs in partition aws-cn",
			noCreate: true,
		},
		{
			name: "SQS rejects the policy's principal: invalid principal, nothing written",
			db:   func(context.CancelFunc) agentItems { return db },
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
			account := s.account
			if tc.account != (Account{}) {
				account = tc.account
			}
			queues := &countingCreates{agentQueues: tc.queues}

			a, err := registerAgent(ctx, tc.db(cancel), queues, s.tables.Agents, account, arn, s.now)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("registerAgent: %v", err)
			case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), id)):
				t.Fatalf("registerAgent error = %v, want %v naming agent %s", err, tc.wantErr, id)
			case tc.wantErr == nil && a.ID != id:
				t.Errorf("registerAgent = %+v, want agent %s", a, id)
			}
			if pe, ok := errors.AsType[*PrincipalError](err); tc.wantMsg != "" && (!ok || !strings.Contains(pe.Msg, tc.wantMsg) || strings.Contains(pe.Msg, id)) {
				t.Errorf("registerAgent error = %v, want a *PrincipalError whose message says %q and names no agent id", err, tc.wantMsg)
			}
			if got := queues.n.Load(); (got == 0) != tc.noCreate {
				t.Errorf("CreateQueue called %d times, want none: %v", got, tc.noCreate)
			}

			check := testContext(t)
			_, err = s.Agent(check, id)
			if gotAgent := err == nil; gotAgent != tc.wantAgent {
				t.Errorf("agent row exists: %v (Agent error %v), want %v", gotAgent, err, tc.wantAgent)
			}
			_, err = q.GetQueueUrl(check, &sqs.GetQueueUrlInput{QueueName: aws.String(queueName(id))})
			if gotQueue := err == nil; gotQueue != tc.wantQueue {
				t.Errorf("queue exists: %v (GetQueueUrl error %v), want %v", gotQueue, err, tc.wantQueue)
			}
		})
	}
}

// failingPut is a DynamoDB client whose PutItem fails with err, after
// calling before (if set) and, if write, after really writing.
type failingPut struct {
	agentItems
	err    error
	write  bool
	before func()
}

func (f failingPut) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if f.before != nil {
		f.before()
	}
	if f.write {
		if _, err := f.agentItems.PutItem(ctx, in, opts...); err != nil {
			return nil, err
		}
	}
	return nil, f.err
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

// TestAgentRemembered: a found agent is read from DynamoDB once per Store;
// an unknown one is asked for every time (it may be registered meanwhile).
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
	a, err := s.RegisterAgent(ctx, "arn:aws:iam::123456789012:role/remembered")
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
