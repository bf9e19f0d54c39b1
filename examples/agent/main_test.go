package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/fanout/fanout/app"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/internal/awstest"
)

// TestExampleAgent runs the example agent against fanout's production
// wiring with FANOUT_AUTH=iam (STS a verifying test STS): it registers its
// own role, follows a producer, and every producer event comes back, to a
// follower of the agent, as exactly one derived event, in order.
func TestExampleAgent(t *testing.T) {
	t.Parallel()
	sts := awstest.NewSTS(t)
	sts.AddDefault("arn:aws:iam::000000000000:user/fanout")
	n := awstest.Name(t, "example")
	cfg, err := app.ConfigFromEnv(func(v string) string {
		return map[string]string{
			"FANOUT_ADDR": "127.0.0.1:0", "FANOUT_CREATE_RESOURCES": "true", "FANOUT_STREAM": n + "-events",
			"FANOUT_AGENTS_TABLE": n + "-agents", "FANOUT_SUBSCRIBERS_TABLE": n + "-subscribers",
			"FANOUT_SUBSCRIBER_EVENTS_TABLE": n + "-subscriber-events", "FANOUT_DEAD_LETTERS_TABLE": n + "-dead-letters",
			"FANOUT_EVENT_IDS_TABLE": n + "-event-ids", "FANOUT_AGGREGATOR_LEASE_TABLE": n + "-aggregator",
			"FANOUT_PUBLISHER_LEASE_TABLE": n + "-publisher",
		}[v]
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth != app.AuthIAM {
		t.Fatalf("FANOUT_AUTH defaults to %q, want iam", cfg.Auth)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, sts.Endpoint(t, awstest.Config(t)), zap.NewNop())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fanout stopped with %v", err)
		}
	})
	api := "http://" + a.Addr()

	producer := clientFor(t, sts, api, "producer")
	follower := clientFor(t, sts, api, "follower")
	p := producer.register(t)
	f := follower.register(t)

	agentID := sts.Add(t, "arn:aws:sts::111111111111:assumed-role/"+awstest.Name(t, "agent")+"/run")
	var out syncBuffer
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- run(agentCtx, []string{"-api", api, "-follow", p.AgentID}, sts.Config(t, agentID), &out)
	}()
	me := out.waitFor(t, regexp.MustCompile(`agent (\S+) `))
	out.waitFor(t, regexp.MustCompile(`following `+p.AgentID))
	if err := follower.c.Subscribe(context.Background(), f.AgentID, me); err != nil {
		t.Fatal(err)
	}

	const events = 5
	var sent []string
	for i := range events {
		rs, err := producer.c.Publish(context.Background(), client.Event{AgentID: p.AgentID, EventType: "greeting", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, rs[0].EventID)
	}
	var got []client.Message
	cctx, cancelConsumer := context.WithTimeout(context.Background(), time.Minute)
	defer cancelConsumer()
	(&client.Consumer{Queue: follower.sqs, QueueURL: f.QueueURL}).Run(cctx, func(_ context.Context, m client.Message) error {
		got = append(got, m)
		if len(got) == events {
			cancelConsumer()
		}
		return nil
	})
	if len(got) != events {
		t.Fatalf("the follower got %d derived events, want %d; agent output:\n%s", len(got), events, out.String())
	}
	for i, m := range got {
		var d struct{ From, Producer string }
		json.Unmarshal(m.Data, &d)
		if m.AgentID != me || m.EventType != derivedType || d.From != sent[i] || d.Producer != p.AgentID {
			t.Errorf("derived event %d = %+v (data %s), want one of agent %s derived from %s", i, m, m.Data, me, sent[i])
		}
	}
	stopAgent()
	if err := <-agentDone; err != nil {
		t.Errorf("the agent stopped with %v, want nil on cancellation", err)
	}
}

// caller is a client and an SQS client of one identity of the test STS.
type caller struct {
	id  awstest.Identity
	c   *client.Client
	sqs *sqs.Client
}

func clientFor(t *testing.T, sts *awstest.STS, api, name string) caller {
	t.Helper()
	id := sts.Add(t, "arn:aws:iam::111111111111:user/"+awstest.Name(t, name))
	cfg := sts.Config(t, id)
	return caller{id: id, c: client.New(client.Config{URL: api, AWS: cfg}), sqs: sqs.NewFromConfig(cfg)}
}

func (c caller) register(t *testing.T) client.Agent {
	t.Helper()
	a, err := c.c.Register(context.Background(), c.id.ARN)
	if err != nil {
		t.Fatalf("register %s: %v", c.id.ARN, err)
	}
	return a
}

// syncBuffer is the agent's output, written by it and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls the output until re matches, and returns its first group.
func (b *syncBuffer) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(b.String()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent output lacks %s after 30 s:\n%s", re, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
