package store

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
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
	if len(policy.Statement) != 1 || policy.Statement[0].Principal.AWS != arn ||
		policy.Statement[0].Resource != "arn:aws:sqs:*:*:agents-"+a.ID+".fifo" {
		t.Errorf("queue policy %+v: want one statement for principal %s on agents-%s.fifo", policy, arn, a.ID)
	}
}

func TestCreateQueueAttributes(t *testing.T) {
	t.Parallel()
	const arn = "arn:aws:iam::123456789012:role/r"
	q := &recordingQueues{}
	if _, err := createQueue(context.Background(), q, "id1", arn); err != nil {
		t.Fatalf("createQueue: %v", err)
	}
	policy, err := queuePolicy(arn, "agents-id1.fifo")
	if err != nil {
		t.Fatal(err)
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
}

// recordingQueues records the CreateQueue input.
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
	for _, tc := range []struct{ arn, want string }{
		{
			"arn:aws:iam::123456789012:role/worker",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/worker"},` +
				actions + `,"Resource":"arn:aws:sqs:*:*:agents-x.fifo"}]}`,
		},
		{
			"arn:aws-cn:iam::123456789012:user/path/alice",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws-cn:iam::123456789012:user/path/alice"},` +
				actions + `,"Resource":"arn:aws-cn:sqs:*:*:agents-x.fifo"}]}`,
		},
		{
			"arn:aws-us-gov:iam::123456789012:root",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws-us-gov:iam::123456789012:root"},` +
				actions + `,"Resource":"arn:aws-us-gov:sqs:*:*:agents-x.fifo"}]}`,
		},
		{
			// Quotes in a principal cannot break out of the string.
			`arn:aws:iam::123456789012:role/a"b`,
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/a\"b"},` +
				actions + `,"Resource":"arn:aws:sqs:*:*:agents-x.fifo"}]}`,
		},
	} {
		got, err := queuePolicy(tc.arn, "agents-x.fifo")
		if err != nil || got != tc.want {
			t.Errorf("queuePolicy(%q) =\n %s, %v\nwant\n %s", tc.arn, got, err, tc.want)
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
		// wantErr is the error wanted, nil for success.
		wantErr   error
		wantAgent bool // an agent row exists afterwards
		wantQueue bool // the agent's queue exists afterwards
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			arn := roleARN(t)
			id := agentID(arn)

			a, err := registerAgent(ctx, tc.db(cancel), tc.queues, s.tables.Agents, arn, s.now)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("registerAgent: %v", err)
			case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), id)):
				t.Fatalf("registerAgent error = %v, want %v naming agent %s", err, tc.wantErr, id)
			case tc.wantErr == nil && a.ID != id:
				t.Errorf("registerAgent = %+v, want agent %s", a, id)
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

// failingCreate is an SQS client whose CreateQueue fails with err.
type failingCreate struct {
	agentQueues
	err error
}

func (f failingCreate) CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	return nil, f.err
}
