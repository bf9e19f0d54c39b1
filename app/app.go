// Package app assembles fanout from its parts — AWS clients, store,
// pipeline workers, HTTP server — and runs them until told to stop. The
// production binary (main.go), the dev entry point (cmd/fanout-dev) and the
// end-to-end tests all run this one wiring.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/fanout/fanout/internal/sdkbody"
	"github.com/fanout/fanout/kcl"
	"github.com/fanout/fanout/metrics"
	"github.com/fanout/fanout/pipeline"
	"github.com/fanout/fanout/server"
	"github.com/fanout/fanout/store"
)

// App is one running fanout task: the HTTP API, both KCL workers and the
// replayer.
type App struct {
	cfg        Config
	log        *zap.Logger
	ln         net.Listener
	handler    http.Handler
	aggregator *kcl.Worker
	publisher  *kcl.Worker
	replayer   *pipeline.Replayer
	calls      *CallCounter
	metrics    *metrics.Metrics
	// emfOut receives the EMF lines (stdout, which the task's log driver
	// ships to CloudWatch Logs).
	emfOut io.Writer
}

// New connects to AWS through awsCfg, creates the resources when
// cfg.CreateResources is set, and opens the listener; the workers start in
// Run. Every AWS call it and its parts make is counted in Calls.
func New(ctx context.Context, cfg Config, awsCfg aws.Config, log *zap.Logger) (*App, error) {
	if awsCfg.Region == "" {
		return nil, errors.New("no AWS region: set AWS_REGION (e.g. us-east-1)")
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = defaultWorkerID()
	}
	m := metrics.New()
	calls := newCallCounter(m)
	awsCfg = awsCfg.Copy()
	awsCfg.APIOptions = append(awsCfg.APIOptions, calls.Middleware, sdkbody.HideWriterTo)
	awsCfg.Logger = sdkLogger(log)
	kcl.RouteGlobalLogs(log)

	ddb := dynamodb.NewFromConfig(awsCfg, skipChecksumOffAWS)
	kc := kinesis.NewFromConfig(awsCfg)
	streams := dynamodbstreams.NewFromConfig(awsCfg)
	account, err := callerAccount(ctx, sts.NewFromConfig(awsCfg), awsCfg.Region)
	if err != nil {
		return nil, err
	}
	st := store.New(ddb, sqs.NewFromConfig(awsCfg, skipSQSChecksumOffAWS), store.Tables{
		Agents:           cfg.AgentsTable,
		Subscribers:      cfg.SubscribersTable,
		SubscriberEvents: cfg.SubscriberEventsTable,
		DeadLetters:      cfg.DeadLettersTable,
		EventIDs:         cfg.EventIDsTable,
		Replays:          cfg.ReplaysTable,
	}, account)
	st.CountAgentCache(m.Cache(metrics.CacheAgents))

	if cfg.CreateResources {
		log.Info("creating missing resources", zap.String("stream", cfg.Stream))
		if err := st.CreateTables(ctx, cfg.AggregatorLeaseTable, cfg.PublisherLeaseTable); err != nil {
			return nil, err
		}
		if err := pipeline.EnsureStream(ctx, kc, cfg.Stream, cfg.StreamShards); err != nil {
			return nil, err
		}
	}
	if err := checkResources(ctx, cfg, st, kc); err != nil {
		return nil, err
	}
	streamARN, err := st.StreamARN(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (deploy the tables from deploy/, or set FANOUT_CREATE_RESOURCES=true for a local run)", err)
	}

	authn, err := newAuth(ctx, cfg, awsCfg, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on FANOUT_ADDR=%s: %w", cfg.Addr, err)
	}

	a := &App{cfg: cfg, log: log, ln: ln, calls: calls, metrics: m, emfOut: os.Stdout}
	agg := pipeline.NewAggregator(pipeline.AggregatorDeps{Subscribers: st, Agents: st, Events: st, EventIDs: st, DeadLetters: st, Metrics: m, OneEventItems: !cfg.PackEvents}, log)
	a.aggregator = kcl.NewKinesisWorker(kcl.Config{
		Name: cfg.AggregatorLeaseTable, Stream: cfg.Stream, Region: awsCfg.Region, WorkerID: cfg.WorkerID, MaxRecords: cfg.KinesisMaxRecords,
		Monitor: m.Worker(metrics.WorkerAggregator),
	}, kc, ddb, agg, log)
	pub := pipeline.NewPublisher(pipeline.PublisherDeps{Agents: st, Queues: st, DeadLetters: st, Metrics: m}, log)
	a.publisher = kcl.NewStreamsWorker(kcl.Config{
		Name: cfg.PublisherLeaseTable, Stream: streamARN, Region: awsCfg.Region, WorkerID: cfg.WorkerID,
		Monitor: m.Worker(metrics.WorkerPublisher),
	}, awsCfg, streams, ddb, pub, log)

	a.replayer = pipeline.NewReplayer(pipeline.ReplayerDeps{Replays: st, Agents: st, Queues: st, Metrics: m}, pipeline.ReplayerConfig{
		Owner: cfg.WorkerID, Rate: cfg.ReplayRate, PageItems: cfg.ReplayPageItems,
	}, log)

	ready := &readiness{
		running: func() bool { return a.aggregator.Running() && a.publisher.Running() },
		check: func(ctx context.Context) error {
			if err := st.Ping(ctx); err != nil {
				return err
			}
			return pipeline.PingStream(ctx, kc, cfg.Stream)
		},
		workers: map[string]stuckReporter{"aggregator": agg, "publisher": pub, "replayer": a.replayer},
	}
	ingest := pipeline.NewIngest(kc, cfg.Stream)
	redriver := pipeline.NewRedriver(pipeline.RedriverDeps{DeadLetters: st, Agents: st, Queues: st, Ingest: ingest})
	a.handler = server.New(server.Config{Auth: authn, Metrics: m}, server.Deps{
		Agents: st, Subscriptions: st, Events: ingest, Ready: ready, DeadLetters: st, Redriver: redriver, Replays: st,
	}, log)
	return a, nil
}

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Calls counts the AWS calls made so far, by service and operation.
func (a *App) Calls() *CallCounter { return a.calls }

// Run serves the API and runs both workers until ctx is cancelled, then
// stops them within cfg.ShutdownTimeout: the listener closes, in-flight
// requests drain, batches in hand finish and are checkpointed, leases are
// released. It returns nil after a clean stop, or the first error that
// stopped the task.
func (a *App) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return a.aggregator.Run(gctx, a.cfg.ShutdownTimeout)
	})
	g.Go(func() error {
		return a.publisher.Run(gctx, a.cfg.ShutdownTimeout)
	})
	g.Go(func() error {
		return a.replayer.Run(gctx, a.cfg.ShutdownTimeout)
	})
	g.Go(func() error {
		return server.Serve(gctx, a.ln, a.handler, a.cfg.ShutdownTimeout)
	})
	if a.cfg.EMFNamespace != "" {
		g.Go(func() error {
			a.writeEMF(gctx)
			return nil
		})
	}
	a.log.Info("fanout running", zap.String("addr", a.Addr()), zap.String("worker_id", a.cfg.WorkerID))
	err := g.Wait()
	if a.cfg.EMFNamespace != "" {
		a.flushEMF()
	}
	if err != nil {
		return err
	}
	a.log.Info("fanout stopped")
	return nil
}

// writeEMF writes the task's metrics as EMF lines to a.emfOut every
// metrics.EMFInterval until ctx ends (Run writes them once more after the
// stop, so a stopping task's last counts reach CloudWatch).
func (a *App) writeEMF(ctx context.Context) {
	tick := time.NewTicker(metrics.EMFInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.flushEMF()
		}
	}
}

// flushEMF writes the EMF lines once. A failed write is logged (stdout
// gone): metrics are not worth stopping the task for.
func (a *App) flushEMF() {
	if err := a.metrics.WriteEMF(a.emfOut, a.cfg.EMFNamespace, time.Now()); err != nil {
		a.log.Warn("metrics not written", zap.Error(err))
	}
}

// callerAccount asks STS where fanout runs: the partition and account of
// its credentials, in region. Queue policies name their queues' exact ARNs
// from it.
func callerAccount(ctx context.Context, c *sts.Client, region string) (store.Account, error) {
	out, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	switch {
	case err != nil && unreachable(err):
		return store.Account{}, fmt.Errorf("cannot reach AWS (sts:GetCallerIdentity): check AWS_ENDPOINT_URL and the network: %w", err)
	case err != nil:
		return store.Account{}, fmt.Errorf("cannot identify the AWS account (sts:GetCallerIdentity): check credentials: %w", err)
	}
	caller, err := arn.Parse(aws.ToString(out.Arn))
	if err != nil || aws.ToString(out.Account) == "" {
		return store.Account{}, fmt.Errorf("cannot identify the AWS account: sts:GetCallerIdentity answered account %q, ARN %q", aws.ToString(out.Account), aws.ToString(out.Arn))
	}
	return store.Account{Partition: caller.Partition, Region: region, ID: aws.ToString(out.Account)}, nil
}

// defaultWorkerID names this task in the lease tables: the host name (the
// task's on Fargate) and a random suffix, so a restarted task never
// mistakes its predecessor's leases for its own.
func defaultWorkerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// skipChecksumOffAWS keeps DynamoDB's response CRC32 check against AWS and
// drops it when an endpoint override (AWS_ENDPOINT_URL, an emulator) is in
// use: kumo sends no checksum, and every response would log a warning.
func skipChecksumOffAWS(o *dynamodb.Options) {
	if !offAWS(o.BaseEndpoint) {
		return
	}
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		const id = "DynamoDB:ResponseChecksumValidation"
		if _, ok := stack.Deserialize.Get(id); !ok {
			return nil
		}
		_, err := stack.Deserialize.Remove(id)
		return err
	})
}

// skipSQSChecksumOffAWS keeps the SQS client's MD5 check of sent and
// received messages against AWS and drops it when an endpoint override (an
// emulator) is in use. For a send that a FIFO queue deduplicates, AWS
// answers with the MD5 of the body just sent, while emulators (kumo,
// LocalStack-alikes) answer with the original message's, which the check
// rejects: the emulator then behaves as AWS does.
func skipSQSChecksumOffAWS(o *sqs.Options) {
	if offAWS(o.BaseEndpoint) {
		o.DisableMessageChecksumValidation = true
	}
}

// offAWS reports whether endpoint, a client's endpoint override (nil:
// none), is something other than AWS: an emulator. An override naming an
// AWS host (a VPC interface endpoint, a FIPS endpoint) is AWS.
func offAWS(endpoint *string) bool {
	if endpoint == nil {
		return false
	}
	u, err := url.Parse(*endpoint)
	if err != nil {
		return true
	}
	host := strings.ToLower(u.Hostname())
	for _, suffix := range []string{".amazonaws.com", ".amazonaws.com.cn", ".api.aws"} {
		if strings.HasSuffix(host, suffix) {
			return false
		}
	}
	return true
}
