// Package kcl runs record handlers over streams with leases: it is
// fanout's only user of vmware-go-kcl-v2. It holds the worker settings,
// the DynamoDB-Streams-as-Kinesis adapter (streams.go), the gate that keeps
// a child shard from being read before its parent is finished
// (lineage.go), and the routing of KCL's logs into zap (log.go). Callers
// give it a Handler; it gives the handler each shard's batches in order
// and checkpoints a batch only once the handler says it is durable.
package kcl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	"go.uber.org/zap"

	"github.com/fanout/fanout/internal/backoff"
)

// KCL settings. vmware-go-kcl-v2's defaults suit batch jobs, not a service
// (AWS-NOTES.md has the measurements behind each value).
const (
	// shardSyncMillis: KCL takes at most one new lease per sync, and every
	// sync reads the checkpoint of each shard the worker does not hold. At
	// the default 60 s two shards took 64-151 s to lease at start; at 1 s
	// 1-3 s, but the idle reads cost ~$21 a month (deploy/README.md). 2 s
	// halves that and still leases a shard within seconds.
	shardSyncMillis = 2000
	// idleBetweenReadsMillis: below 200 ms KCL-Go's own limiter of 5
	// GetRecords/s per shard adds latency; the default 1000 gives p50 ~0.5 s.
	idleBetweenReadsMillis = 200
	// failoverMillis: how long a lease lives unrenewed, hence how long a
	// killed task's shards wait for another task (~ this value, measured).
	failoverMillis = 10000
	// leaseRefreshMillis: renew well inside failoverMillis.
	leaseRefreshMillis = 2500
	// maxRecordsPerRead: DynamoDB Streams' GetRecords maximum; for Kinesis
	// it bounds a batch (and thus what a crash may replay).
	maxRecordsPerRead = 1000
	// readInterval spaces one shard's reads when batches keep coming.
	// KCL-Go allows itself 5 GetRecords/s per shard and, past that, stalls
	// until the next second: reading back-to-back under a steady trickle
	// hit that stall and doubled p50 latency. A little over 200 ms between
	// reads never reaches the limit.
	readInterval = 210 * time.Millisecond
	// parentPollMillis: KCL's wait for a parent shard; our lineage gate
	// hides children until the parent is done, so it rarely waits at all.
	parentPollMillis = 1000
)

// kclCallTimeout bounds one AWS call made for KCL. KCL passes
// context.TODO(), so a hung call would stall its shard, and a stop, for
// ever; 5 s is far above a normal call and well inside the stop budget.
const kclCallTimeout = 5 * time.Second

// withCallTimeout gives each call of a client kclCallTimeout.
func withCallTimeout(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fanout-call-timeout",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			ctx, cancel := context.WithTimeout(ctx, kclCallTimeout)
			defer cancel()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// stopMargin is how much of the shutdown budget is kept for releasing
// leases after in-flight batches are abandoned.
const stopMargin = 3 * time.Second

// Handler makes one shard batch durable downstream. Handle is called with
// one shard's batches one at a time, in shard order, and from several
// shards at once; it returns nil once every record is handled durably (or
// set aside), and an error only when ctx is cancelled first, in which case
// nothing of the batch is checkpointed and the shard's next owner reads it
// again. Records of a DynamoDB stream carry a Change (see DecodeChange).
type Handler interface {
	Handle(ctx context.Context, shardID string, records []types.Record) error
}

// A Resumer is a Handler told when it takes a shard over, before its
// first batch: writes an earlier owner (or an earlier lease of this
// worker) made from records after the checkpoint may be there already.
type Resumer interface {
	Resume(shardID string)
}

// Config names one KCL application.
type Config struct {
	// Name is the KCL application name and its lease table.
	Name string
	// Stream is what KCL reads: the Kinesis stream name, or the DynamoDB
	// stream ARN for the publisher.
	Stream   string
	Region   string
	WorkerID string
	// Monitor receives the worker's leases, reads and lag; nil records
	// nothing.
	Monitor Monitor
	// MaxRecords bounds the records of one read (one batch); 0 is
	// maxRecordsPerRead.
	MaxRecords int
}

func (c Config) monitor() Monitor {
	if c.Monitor == nil {
		return nopMonitor{}
	}
	return c.Monitor
}

// Worker runs one KCL worker and feeds its shards' batches to a handler.
type Worker struct {
	cfg     Config
	kclCfg  *config.KinesisClientLibConfiguration
	kc      *kinesis.Client
	cp      checkpoint.Checkpointer
	handler Handler
	monitor Monitor
	log     *zap.Logger

	running atomic.Bool
	// procCtx is cancelled when a stop runs out of time: batches still
	// retrying are abandoned unacknowledged and replayed by the next owner.
	procCtx    context.Context
	procCancel context.CancelFunc
}

// newKCLConfig returns the KCL configuration shared by both workers.
func newKCLConfig(cfg Config, log *zap.Logger) *config.KinesisClientLibConfiguration {
	return config.NewKinesisClientLibConfig(cfg.Name, cfg.Stream, cfg.Region, cfg.WorkerID).
		WithTableName(cfg.Name).
		WithInitialPositionInStream(config.TRIM_HORIZON).
		WithShardSyncIntervalMillis(shardSyncMillis).
		WithIdleTimeBetweenReadsInMillis(idleBetweenReadsMillis).
		WithFailoverTimeMillis(failoverMillis).
		WithLeaseRefreshWaitTime(leaseRefreshMillis).
		WithMaxRecords(cmp.Or(cfg.MaxRecords, maxRecordsPerRead)).
		WithLeaseStealing(false).
		WithMonitoringService(monitoring{cfg.monitor()}).
		WithLogger(kclLogger{log.With(zap.String("worker", cfg.Name)).WithOptions(zap.AddCallerSkip(1)).Sugar()})
}

// leaseClient returns a copy of db for KCL's lease table calls, each
// bounded by kclCallTimeout.
func leaseClient(db *dynamodb.Client) *dynamodb.Client {
	return dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, withCallTimeout)
	})
}

// newWorker builds a Worker whose KCL reads through kc (built by the
// caller with the lineage gate installed) and keeps leases in db.
func newWorker(cfg Config, kclCfg *config.KinesisClientLibConfiguration, kc *kinesis.Client, cp checkpoint.Checkpointer, h Handler, log *zap.Logger) *Worker {
	kclCfg.ParentShardPollIntervalMillis = parentPollMillis
	ctx, cancel := context.WithCancel(context.Background())
	return &Worker{cfg: cfg, kclCfg: kclCfg, kc: kc, cp: cp, handler: h, monitor: cfg.monitor(), log: log.With(zap.String("worker", cfg.Name)), procCtx: ctx, procCancel: cancel}
}

// NewKinesisWorker returns the worker that reads the Kinesis stream
// cfg.Stream through kc into h. Leases live in the table cfg.Name.
func NewKinesisWorker(cfg Config, kc *kinesis.Client, leases *dynamodb.Client, h Handler, log *zap.Logger) *Worker {
	kclCfg := newKCLConfig(cfg, log)
	cp := checkpoint.NewDynamoCheckpoint(kclCfg).WithDynamoDB(leaseClient(leases))
	gated := kinesis.New(kc.Options(), func(o *kinesis.Options) {
		o.APIOptions = append(o.APIOptions, gateChildren(checkpointFinished(cp)), withCallTimeout)
	})
	return newWorker(cfg, kclCfg, gated, cp, h, log)
}

// NewStreamsWorker returns the worker that reads a table's DynamoDB stream
// (cfg.Stream is its ARN) through streams into h. Each record's Data is a
// Change. Leases live in the table cfg.Name.
func NewStreamsWorker(cfg Config, awsCfg aws.Config, streams StreamsReader, leases *dynamodb.Client, h Handler, log *zap.Logger) *Worker {
	kclCfg := newKCLConfig(cfg, log)
	cp := checkpoint.NewDynamoCheckpoint(kclCfg).WithDynamoDB(leaseClient(leases))
	kc := newStreamsKinesis(awsCfg, streams, cfg.Stream, func(o *kinesis.Options) {
		o.APIOptions = append(o.APIOptions, gateChildren(checkpointFinished(cp)), withCallTimeout)
	})
	return newWorker(cfg, kclCfg, kc, cp, h, log)
}

// Running reports whether the worker has started and not stopped.
func (w *Worker) Running() bool { return w.running.Load() }

// Run starts the worker and blocks until ctx is cancelled, then stops it:
// no new reads, the batches in hand finish and are checkpointed, leases are
// released. The stop takes at most stopTimeout; batches still retrying when
// only stopMargin is left are abandoned without a checkpoint (a later owner
// replays them, harmlessly). A worker cannot be run twice.
func (w *Worker) Run(ctx context.Context, stopTimeout time.Duration) error {
	kw := worker.NewWorker(&processorFactory{w: w}, w.kclCfg).WithKinesis(w.kc).WithCheckpointer(w.cp)
	if err := kw.Start(); err != nil {
		return fmt.Errorf("start %s worker on %s: %w", w.cfg.Name, w.cfg.Stream, err)
	}
	w.running.Store(true)
	w.log.Info("worker started", zap.String("stream", w.cfg.Stream), zap.String("worker_id", w.cfg.WorkerID))
	<-ctx.Done()
	defer w.running.Store(false)

	done := make(chan struct{})
	go func() { kw.Shutdown(); close(done) }()
	abandon := time.NewTimer(max(stopTimeout-stopMargin, 0))
	defer abandon.Stop()
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	for {
		select {
		case <-done:
			w.procCancel()
			w.log.Info("worker stopped")
			return nil
		case <-abandon.C:
			w.log.Warn("stop running out of time: abandoning batches in flight; they will be replayed")
			w.procCancel()
		case <-deadline.C:
			w.procCancel()
			return fmt.Errorf("%s worker did not stop within %s", w.cfg.Name, stopTimeout)
		}
	}
}

// processorFactory gives KCL one processor per shard lease.
type processorFactory struct{ w *Worker }

func (f *processorFactory) CreateProcessor() kcl.IRecordProcessor {
	return &processor{w: f.w}
}

// processor handles one shard's batches in order and checkpoints each
// only after the handler made it durable downstream.
type processor struct {
	w         *Worker
	shardID   string
	lastLagAt time.Time
	// abandoned: a batch was given up unacknowledged (stop out of time).
	// Nothing after it may be acknowledged, SHARD_END included, or that
	// batch would be skipped by the next owner.
	abandoned bool
	mu        sync.Mutex // KCL calls one processor from one goroutine; this guards Shutdown racing it
}

func (p *processor) Initialize(in *kcl.InitializationInput) {
	p.shardID = in.ShardId
	if r, ok := p.w.handler.(Resumer); ok {
		r.Resume(in.ShardId)
	}
	p.w.log.Info("lease acquired", zap.String("shard_id", in.ShardId), zap.String("checkpoint", aws.ToString(in.ExtendedSequenceNumber.SequenceNumber)))
}

func (p *processor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(in.Records) == 0 || p.abandoned {
		return
	}
	if at := in.Records[len(in.Records)-1].ApproximateArrivalTimestamp; at != nil {
		p.w.monitor.RecordAge(p.shardID, time.Since(*at))
	}
	if err := p.w.handler.Handle(p.w.procCtx, p.shardID, in.Records); err != nil {
		// Stopping: leave the batch unacknowledged for the next owner.
		p.abandoned = true
		p.w.log.Warn("batch abandoned; the next owner replays it", zap.String("shard_id", p.shardID), zap.Error(err))
		return
	}
	last := in.Records[len(in.Records)-1].SequenceNumber
	if err := in.Checkpointer.Checkpoint(last); err != nil {
		// The lease may have moved: the new owner replays from its last
		// checkpoint, and every write downstream is idempotent.
		p.w.log.Warn("checkpoint failed", zap.String("shard_id", p.shardID), zap.String("seq", aws.ToString(last)), zap.Error(err))
	}
	if in.CacheEntryTime != nil { // when KCL started the read that returned this batch
		backoff.Sleep(p.w.procCtx, time.Until(in.CacheEntryTime.Add(readInterval)))
	}
}

func (p *processor) Shutdown(in *kcl.ShutdownInput) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.ShutdownReason != kcl.TERMINATE {
		p.w.log.Info("lease released", zap.String("shard_id", p.shardID))
		return
	}
	if p.abandoned || p.w.procCtx.Err() != nil {
		p.w.log.Warn("shard end not checkpointed: its last batch was not handled; the next owner reads it again", zap.String("shard_id", p.shardID))
		return
	}
	// Shard end: record it, or the shard's children wait forever.
	for attempt := 0; ; attempt++ {
		err := in.Checkpointer.Checkpoint(nil)
		if err == nil {
			p.w.log.Info("shard finished", zap.String("shard_id", p.shardID))
			return
		}
		if errors.Is(p.w.procCtx.Err(), context.Canceled) {
			p.w.log.Warn("shard end not checkpointed; the next owner will read the shard to its end again", zap.String("shard_id", p.shardID), zap.Error(err))
			return
		}
		p.w.log.Warn("checkpoint shard end failed, retrying", zap.String("shard_id", p.shardID), zap.Error(err))
		backoff.Sleep(p.w.procCtx, backoff.Delay(attempt))
	}
}
