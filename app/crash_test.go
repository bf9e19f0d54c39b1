package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	dstypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/fanout/fanout/event"
	"github.com/fanout/fanout/internal/awstest"
)

// TestKilledTaskReplaysWithoutDuplicates kills a task with SIGKILL while it
// aggregates and publishes — no drain, no checkpoint of the batch in hand,
// leases left to expire — and starts another: every event arrives once, in
// order. The new task replays from the last checkpoints; conditional item
// writes and SQS deduplication ids make the replay harmless.
//
// It runs the production binary, since only a process can be killed.
func TestKilledTaskReplaysWithoutDuplicates(t *testing.T) {
	t.Parallel()
	bin := buildFanout(t)
	e := newEnv(t)
	first := e.startProcess(t, bin)
	producer, sub := register(t, first, "p"), register(t, first, "s")
	subscribe(t, first, sub, producer)

	const total = 200
	n := 0
	for ; n < 120; n += 4 {
		publish(t, first, numbered(producer, n, 4)...)
	}
	// Kill it once delivery is under way, most likely mid-stream.
	waitFor(t, deliveryTimeout, "delivery under way", func() bool { return queued(t, e, sub.QueueURL) >= 8 })
	first.kill(t)
	second := e.startProcess(t, bin) // takes the shards once the killed task's leases expire
	for ; n < total; n += 4 {
		publish(t, second, numbered(producer, n, 4)...)
	}
	// Emulator gap (AWS-NOTES): kumo drops a duplicate dedup id only while
	// the original is still queued, so consume only once all are queued.
	waitFor(t, 2*deliveryTimeout, "all events queued", func() bool { return queued(t, e, sub.QueueURL) >= total })
	msgs := receive(t, e, sub.QueueURL, deliveryTimeout, count(total))
	e.checkDelivered(t, sub.ID, msgs, map[string]int{producer.ID: total})
	if t.Failed() {
		logStreamOrder(t, e, msgs)
	}
}

// logStreamOrder logs the order of the messages received and of the
// SubscriberEvents stream records, to tell where an order fault arose.
func logStreamOrder(t *testing.T, e *env, msgs []event.Message) {
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Data))
	}
	t.Logf("received data in order: %s", strings.Join(got, " "))
	ctx := context.Background()
	ds := dynamodbstreams.NewFromConfig(e.awsCfg)
	arn, err := e.store.StreamARN(ctx)
	if err != nil {
		t.Logf("stream: %v", err)
		return
	}
	desc, err := ds.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)})
	if err != nil {
		t.Logf("stream: %v", err)
		return
	}
	for _, sh := range desc.StreamDescription.Shards {
		it, err := ds.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: dstypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Logf("stream: %v", err)
			return
		}
		out, err := ds.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Logf("stream: %v", err)
			return
		}
		var order []string
		for _, r := range out.Records {
			if v, ok := r.Dynamodb.NewImage["data"].(*dstypes.AttributeValueMemberS); ok {
				order = append(order, aws.ToString(r.Dynamodb.SequenceNumber)+"="+v.Value)
			}
		}
		t.Logf("stream shard %s, %d records: %s", aws.ToString(sh.ShardId), len(out.Records), strings.Join(order, " "))
	}
}

var build struct {
	once sync.Once
	bin  string
	err  error
	out  []byte
}

// buildFanout builds the production binary once per test binary.
func buildFanout(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "fanout-bin")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "fanout")
		build.out, build.err = exec.Command("go", "build", "-o", build.bin, "github.com/fanout/fanout").CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("go build: %v\n%s", build.err, build.out)
	}
	return build.bin
}

// startProcess runs the production binary on e and waits until it is
// ready; it is killed at the end of the test if still running.
func (e *env) startProcess(t *testing.T, bin string) *service {
	t.Helper()
	addr := awstest.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(awstest.ProcessEnv(t),
		"FANOUT_ADDR="+addr,
		"FANOUT_CREATE_RESOURCES=true",
		"FANOUT_STREAM="+e.cfg.Stream,
		"FANOUT_AGENTS_TABLE="+e.cfg.AgentsTable,
		"FANOUT_SUBSCRIBERS_TABLE="+e.cfg.SubscribersTable,
		"FANOUT_SUBSCRIBER_EVENTS_TABLE="+e.cfg.SubscriberEventsTable,
		"FANOUT_DEAD_LETTERS_TABLE="+e.cfg.DeadLettersTable,
		"FANOUT_EVENT_IDS_TABLE="+e.cfg.EventIDsTable,
		"FANOUT_REPLAYS_TABLE="+e.cfg.ReplaysTable,
		"FANOUT_AGGREGATOR_LEASE_TABLE="+e.cfg.AggregatorLeaseTable,
		"FANOUT_PUBLISHER_LEASE_TABLE="+e.cfg.PublisherLeaseTable,
		"FANOUT_AUTH="+e.cfg.Auth,
	)
	var logs strings.Builder
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{url: "http://" + addr, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	s.cancel = func() { cmd.Process.Kill() }
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			mu.Lock()
			t.Logf("process logs:\n%s", logs.String())
			mu.Unlock()
		}
	})
	waitReady(t, s.url)
	return s
}

// kill stops the process with SIGKILL and waits for it to be gone.
func (s *service) kill(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10 s after SIGKILL")
	}
}
