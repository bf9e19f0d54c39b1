package kcl

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"
)

// fakeHandler records the batches it is given; fail makes it fail as a
// handler does when its context is cancelled.
type fakeHandler struct {
	mu      sync.Mutex
	batches [][]string
	fail    bool
}

func (h *fakeHandler) Handle(ctx context.Context, shardID string, records []types.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		return context.Canceled
	}
	var seqs []string
	for _, r := range records {
		seqs = append(seqs, aws.ToString(r.SequenceNumber))
	}
	h.batches = append(h.batches, seqs)
	return nil
}

// fakeCheckpointer records checkpoints; "SHARD_END" stands for nil.
type fakeCheckpointer struct{ checkpoints []string }

func (c *fakeCheckpointer) Checkpoint(seq *string) error {
	if seq == nil {
		c.checkpoints = append(c.checkpoints, "SHARD_END")
	} else {
		c.checkpoints = append(c.checkpoints, *seq)
	}
	return nil
}

func (c *fakeCheckpointer) PrepareCheckpoint(*string) (kcl.IPreparedCheckpointer, error) {
	return nil, errors.New("not used")
}

func records(seqs ...string) []types.Record {
	out := make([]types.Record, len(seqs))
	for i, s := range seqs {
		out[i] = types.Record{SequenceNumber: aws.String(s), Data: []byte("{}")}
	}
	return out
}

// TestProcessorCheckpoints: a batch is acknowledged after the handler made
// it durable; shard end is recorded only when every batch was handled, so
// a batch abandoned at stop is never skipped by the shard's next owner.
func TestProcessorCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name    string
		abandon bool // the second batch is abandoned (stop ran out of time)
		reason  kcl.ShutdownReason
		want    []string
	}{
		{"shard end after handled batches", false, kcl.TERMINATE, []string{"1", "3", "SHARD_END"}},
		{"lease released", false, kcl.REQUESTED, []string{"1", "3"}},
		{"abandoned batch blocks shard end", true, kcl.TERMINATE, []string{"1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHandler{}
			w := newWorker(Config{Name: "test", Stream: "s", Region: "us-east-1", WorkerID: "w"},
				newKCLConfig(Config{Name: "test", Stream: "s", Region: "us-east-1", WorkerID: "w"}, zap.NewNop()),
				nil, nil, h, zap.NewNop())
			p := &processor{w: w}
			p.Initialize(&kcl.InitializationInput{ShardId: "shard-1", ExtendedSequenceNumber: &kcl.ExtendedSequenceNumber{}})
			cp := &fakeCheckpointer{}
			p.ProcessRecords(&kcl.ProcessRecordsInput{Records: records("1"), Checkpointer: cp})
			if tc.abandon {
				h.fail = true
				w.procCancel()
			}
			p.ProcessRecords(&kcl.ProcessRecordsInput{Records: records("2", "3"), Checkpointer: cp})
			h.fail = false
			p.ProcessRecords(&kcl.ProcessRecordsInput{Records: records(), Checkpointer: cp}) // an empty read
			if tc.abandon {
				// Nothing after an abandoned batch is handled or acknowledged.
				p.ProcessRecords(&kcl.ProcessRecordsInput{Records: records("4"), Checkpointer: cp})
			}
			p.Shutdown(&kcl.ShutdownInput{ShutdownReason: tc.reason, Checkpointer: cp})
			if !slices.Equal(cp.checkpoints, tc.want) {
				t.Errorf("checkpoints = %v, want %v", cp.checkpoints, tc.want)
			}
			if tc.abandon && len(h.batches) != 1 {
				t.Errorf("handled batches %v after an abandoned one, want only the first", h.batches)
			}
		})
	}
}

// fakeMonitor records record ages and lease changes.
type fakeMonitor struct {
	nopMonitor
	mu     sync.Mutex
	ages   []time.Duration
	leases map[string]bool
}

func (m *fakeMonitor) RecordAge(shard string, age time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ages = append(m.ages, age)
}

func (m *fakeMonitor) LeaseGained(shard string) { m.setLease(shard, true) }
func (m *fakeMonitor) LeaseLost(shard string)   { m.setLease(shard, false) }

func (m *fakeMonitor) setLease(shard string, held bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]bool{}
	}
	m.leases[shard] = held
}

// TestProcessorReportsRecordAge: each batch reports the age of its newest
// record before it is handled, and an empty read (KCL's
// IncrRecordsProcessed with 0) reports 0: caught up.
func TestProcessorReportsRecordAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mon := &fakeMonitor{}
		cfg := Config{Name: "test", Stream: "s", Region: "us-east-1", WorkerID: "w", Monitor: mon}
		kclCfg := newKCLConfig(cfg, zap.NewNop())
		w := newWorker(cfg, kclCfg, nil, nil, &fakeHandler{}, zap.NewNop())
		p := &processor{w: w}
		p.Initialize(&kcl.InitializationInput{ShardId: "shard-1", ExtendedSequenceNumber: &kcl.ExtendedSequenceNumber{}})
		old := records("1", "2")
		old[1].ApproximateArrivalTimestamp = aws.Time(time.Now().Add(-1500 * time.Millisecond))
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: old, Checkpointer: &fakeCheckpointer{}})
		kclCfg.MonitoringService.IncrRecordsProcessed("shard-1", 0)

		if want := []time.Duration{1500 * time.Millisecond, 0}; !slices.Equal(mon.ages, want) {
			t.Errorf("record ages %v, want %v", mon.ages, want)
		}
		kclCfg.MonitoringService.LeaseGained("shard-1")
		kclCfg.MonitoringService.LeaseLost("shard-1")
		kclCfg.MonitoringService.LeaseGained("shard-2")
		if want := map[string]bool{"shard-1": false, "shard-2": true}; !maps.Equal(mon.leases, want) {
			t.Errorf("leases %v, want %v", mon.leases, want)
		}
	})
}

// resumingHandler records the shards it was told it resumed, and the
// batches it was given after.
type resumingHandler struct {
	fakeHandler
	resumed []string
}

func (h *resumingHandler) Resume(shardID string) { h.resumed = append(h.resumed, shardID) }

// TestProcessorTellsResumers: a handler that is a Resumer is told of each
// shard taken over before the shard's first batch.
func TestProcessorTellsResumers(t *testing.T) {
	h := &resumingHandler{}
	cfg := Config{Name: "test", Stream: "s", Region: "us-east-1", WorkerID: "w"}
	w := newWorker(cfg, newKCLConfig(cfg, zap.NewNop()), nil, nil, h, zap.NewNop())
	p := &processor{w: w}
	p.Initialize(&kcl.InitializationInput{ShardId: "shard-1", ExtendedSequenceNumber: &kcl.ExtendedSequenceNumber{}})
	if !slices.Equal(h.resumed, []string{"shard-1"}) || len(h.batches) != 0 {
		t.Fatalf("resumed %v before batches %v; want shard-1 before any batch", h.resumed, h.batches)
	}
	p.ProcessRecords(&kcl.ProcessRecordsInput{Records: records("1"), Checkpointer: &fakeCheckpointer{}})
	if len(h.batches) != 1 || len(h.resumed) != 1 {
		t.Errorf("batches %v, resumed %v; want one batch after one resume", h.batches, h.resumed)
	}
}
