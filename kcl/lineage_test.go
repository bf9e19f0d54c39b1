package kcl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/fanout/fanout/internal/awstest"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	kclzap "github.com/vmware/vmware-go-kcl-v2/logger/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// lineageShard is a Kinesis shard for gate tests.
func lineageShard(id, parent, adjacent string) ktypes.Shard {
	s := ktypes.Shard{ShardId: aws.String(id)}
	if parent != "" {
		s.ParentShardId = aws.String(parent)
	}
	if adjacent != "" {
		s.AdjacentParentShardId = aws.String(adjacent)
	}
	return s
}

// listShardsStub answers ListShards with pages, linked by NextToken, as
// Kinesis does: a request with NextToken must not name the stream.
func listShardsStub(pages ...[]ktypes.Shard) func(*middleware.Stack) error {
	return listShardsFrom(func() [][]ktypes.Shard { return pages })
}

// listShardsFrom is listShardsStub with a new listing, from listing, for
// every first-page request.
func listShardsFrom(listing func() [][]ktypes.Shard) func(*middleware.Stack) error {
	var (
		mu    sync.Mutex
		pages [][]ktypes.Shard
	)
	answer := func(_ context.Context, in middleware.InitializeInput, _ middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		p, ok := in.Parameters.(*kinesis.ListShardsInput)
		if !ok {
			return middleware.InitializeOutput{}, middleware.Metadata{}, fmt.Errorf("stub: unexpected %T", in.Parameters)
		}
		mu.Lock()
		defer mu.Unlock()
		page := 0
		if p.NextToken == nil {
			pages = listing()
		} else {
			if p.StreamName != nil {
				return middleware.InitializeOutput{}, middleware.Metadata{}, errors.New("stub: StreamName with NextToken")
			}
			page, _ = strconv.Atoi(*p.NextToken)
		}
		out := &kinesis.ListShardsOutput{Shards: pages[page]}
		if page+1 < len(pages) {
			out.NextToken = aws.String(strconv.Itoa(page + 1))
		}
		return middleware.InitializeOutput{Result: out}, middleware.Metadata{}, nil
	}
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.ListShards", answer), middleware.After)
	}
}

// gatedStub is a Kinesis client whose ListShards is answered by the stub
// and gated by finished. The gate is added after the stub, as callers of
// newStreamsKinesis add it.
func gatedStub(finished func(context.Context, string) (bool, error), pages ...[]ktypes.Shard) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:     "us-east-1",
		APIOptions: []func(*middleware.Stack) error{listShardsStub(pages...), gateChildren(finished)},
	})
}

func listedIDs(t *testing.T, kc *kinesis.Client) []string {
	t.Helper()
	out, err := kc.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("s")})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if out.NextToken != nil {
		t.Fatalf("ListShards: next token %s, want one page", *out.NextToken)
	}
	ids := []string{}
	for _, s := range out.Shards {
		ids = append(ids, aws.ToString(s.ShardId))
	}
	return ids
}

func TestGateChildren(t *testing.T) {
	t.Parallel()
	errLookup := errors.New("lease table unavailable")
	tests := []struct {
		name     string
		pages    [][]ktypes.Shard
		finished map[string]bool
		failing  map[string]bool
		want     []string
	}{
		{"no lineage", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("b", "", "")}}, nil, nil, []string{"a", "b"}},
		{"parent finished", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("b", "a", "")}}, map[string]bool{"a": true}, nil, []string{"a", "b"}},
		{"parent unfinished", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("b", "a", ""), lineageShard("c", "a", "")}}, nil, nil, []string{"a"}},
		{"parent trimmed", [][]ktypes.Shard{{lineageShard("b", "a", "")}}, nil, nil, []string{"b"}},
		{"adjacent parent unfinished", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("x", "", ""), lineageShard("m", "a", "x")}}, map[string]bool{"a": true}, nil, []string{"a", "x"}},
		{"both parents finished", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("x", "", ""), lineageShard("m", "a", "x")}}, map[string]bool{"a": true, "x": true}, nil, []string{"a", "x", "m"}},
		{"adjacent parent trimmed", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("m", "a", "x")}}, map[string]bool{"a": true}, nil, []string{"a", "m"}},
		{"lookup error", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("b", "a", "")}}, nil, map[string]bool{"a": true}, []string{"a"}},
		{"grandchild", [][]ktypes.Shard{{lineageShard("a", "", ""), lineageShard("b", "a", ""), lineageShard("c", "b", "")}}, map[string]bool{"a": true}, nil, []string{"a", "b"}},
		{"parent on an earlier page", [][]ktypes.Shard{{lineageShard("a", "", "")}, {lineageShard("b", "a", "")}}, nil, nil, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			finished := func(_ context.Context, id string) (bool, error) {
				if tc.failing[id] {
					return true, errLookup
				}
				return tc.finished[id], nil
			}
			if got := listedIDs(t, gatedStub(finished, tc.pages...)); !slices.Equal(got, tc.want) {
				t.Errorf("visible shards %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGateChildrenKeepsShownShards(t *testing.T) {
	t.Parallel()
	child := lineageShard("b", "a", "")
	listings := [][]ktypes.Shard{
		{child},                            // parent trimmed: b shown
		{lineageShard("a", "", ""), child}, // a listed again, unfinished
	}
	calls := 0
	kc := kinesis.New(kinesis.Options{
		Region: "us-east-1",
		APIOptions: []func(*middleware.Stack) error{
			listShardsFrom(func() [][]ktypes.Shard {
				calls++
				return [][]ktypes.Shard{listings[min(calls, len(listings))-1]}
			}),
			gateChildren(func(context.Context, string) (bool, error) { return false, nil }),
		},
	})
	for i, want := range [][]string{{"b"}, {"a", "b"}} {
		// Taking b back would make KCL delete b's lease row.
		if got := listedIDs(t, kc); !slices.Equal(got, want) {
			t.Errorf("listing %d: visible %v, want %v", i, got, want)
		}
	}
}

func TestGateChildrenCachesOnlyFinished(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		done    bool
		lookups int
	)
	finished := func(_ context.Context, id string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		return done, nil
	}
	kc := gatedStub(finished, []ktypes.Shard{lineageShard("a", "", ""), lineageShard("b", "a", ""), lineageShard("c", "a", "")})
	steps := []struct {
		finish      bool
		want        []string
		wantLookups int
	}{
		{false, []string{"a"}, 1},           // siblings share one lookup
		{false, []string{"a"}, 2},           // "not finished" is asked again
		{true, []string{"a", "b", "c"}, 3},  // now finished
		{false, []string{"a", "b", "c"}, 3}, // cached: finished is permanent
	}
	for i, s := range steps {
		mu.Lock()
		done = s.finish
		mu.Unlock()
		got := listedIDs(t, kc)
		mu.Lock()
		n := lookups
		mu.Unlock()
		if !slices.Equal(got, s.want) || n != s.wantLookups {
			t.Errorf("listing %d: visible %v after %d lookups, want %v after %d", i, got, n, s.want, s.wantLookups)
		}
	}
}

// createLeaseTable creates a KCL lease table the way the service does
// (on demand, before any worker starts).
func (e streamsAWS) createLeaseTable(t *testing.T, name string) {
	t.Helper()
	e.createTable(t, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String(checkpoint.LeaseKeyKey), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String(checkpoint.LeaseKeyKey), KeyType: dtypes.KeyTypeHash}},
		BillingMode:          dtypes.BillingModePayPerRequest,
	})
}

// kclTestConfig is a KCL configuration for tests: fast shard sync and
// reads, TRIM_HORIZON, warnings and errors logged to t.
func kclTestConfig(t *testing.T, app, table string) *config.KinesisClientLibConfiguration {
	t.Helper()
	log := kclzap.NewZapLogger(zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Sugar())
	return config.NewKinesisClientLibConfig(app, "stream-"+app, "us-east-1", "worker-"+app).
		WithTableName(table).
		WithInitialPositionInStream(config.TRIM_HORIZON).
		WithShardSyncIntervalMillis(500).
		WithIdleTimeBetweenReadsInMillis(200).
		WithLogger(log)
}

func TestCheckpointFinished(t *testing.T) {
	t.Parallel()
	emu := newStreamsAWS(t)
	table := awstest.Name(t, "leases")
	emu.createLeaseTable(t, table)
	cp := checkpoint.NewDynamoCheckpoint(kclTestConfig(t, table, table)).WithDynamoDB(emu.ddb)
	lease := func(id, seq string) {
		t.Helper()
		s := &partition.ShardStatus{ID: id, Mux: &sync.RWMutex{}}
		if err := cp.GetLease(s, "worker"); err != nil {
			t.Fatalf("lease %s: %v", id, err)
		}
		if seq == "" {
			return
		}
		s.SetCheckpoint(seq)
		if err := cp.CheckpointSequence(s); err != nil {
			t.Fatalf("checkpoint %s at %s: %v", id, seq, err)
		}
	}
	lease("ended", checkpoint.ShardEnd)
	lease("midway", "4000000000000000017")
	lease("leased", "")

	finished := checkpointFinished(cp)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	missingTable := checkpoint.NewDynamoCheckpoint(kclTestConfig(t, table+"-missing", table+"-missing")).WithDynamoDB(emu.ddb)
	tests := []struct {
		name    string
		finish  func(context.Context, string) (bool, error)
		ctx     context.Context
		shard   string
		want    bool
		wantErr bool
	}{
		{"SHARD_END", finished, context.Background(), "ended", true, false},
		{"checkpoint mid-shard", finished, context.Background(), "midway", false, false},
		{"leased, no checkpoint", finished, context.Background(), "leased", false, false},
		{"no lease row", finished, context.Background(), "absent", false, false},
		{"lease table missing", checkpointFinished(missingTable), context.Background(), "ended", false, true},
		{"context cancelled", finished, cancelled, "ended", false, true},
	}
	for _, tc := range tests {
		got, err := tc.finish(tc.ctx, tc.shard)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: got %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "shard="+tc.shard) {
			t.Errorf("%s: error %q does not name the shard", tc.name, err)
		}
	}
}

// rolloverStreams is an in-memory DynamoDB stream that has rolled over: a
// closed parent shard and open children, which the emulator never produces.
// Parent reads are slow: at most parentPerRead records each, and none at all
// until DescribeStream (one per KCL shard sync) has been called holdSyncs
// times, modelling a parent whose reads lag (throttled, or just taken over).
// The hold makes the race deterministic without the gate: KCL leases one
// shard per sync in map order, so every child is leased within three syncs,
// finds no parent checkpoint and starts at once. Without it, a child leased
// after the parent's first checkpoint would wait (KCL's own check), and the
// violation would depend on map order.
type rolloverStreams struct {
	arn           string
	parent        string
	parentPerRead int
	holdSyncs     int

	mu        sync.Mutex
	describes int
	shards    []*rolloverShard
}

type rolloverShard struct {
	id, parent string
	closed     bool
	records    []stypes.Record
}

// newRolloverStreams returns parent shard "A" with parentRecords records,
// closed, and children "B" and "C" of A with childRecords records each.
func newRolloverStreams(arn string, parentRecords, childRecords int) *rolloverStreams {
	mk := func(id, parent string, base int64, n int, closed bool) *rolloverShard {
		s := &rolloverShard{id: id, parent: parent, closed: closed}
		for i := range n {
			seq := strconv.FormatInt(base+int64(i), 10)
			key := map[string]stypes.AttributeValue{"pk": &stypes.AttributeValueMemberS{Value: id + "-" + strconv.Itoa(i)}}
			s.records = append(s.records, stypes.Record{
				EventName: stypes.OperationTypeInsert,
				Dynamodb: &stypes.StreamRecord{
					SequenceNumber:              aws.String(seq),
					Keys:                        key,
					NewImage:                    key,
					ApproximateCreationDateTime: aws.Time(time.Now()),
				},
			})
		}
		return s
	}
	return &rolloverStreams{
		arn:           arn,
		parent:        "A",
		parentPerRead: 5,
		holdSyncs:     6,
		shards: []*rolloverShard{
			mk("A", "", 4_000_000_000_000_000_000, parentRecords, true),
			mk("B", "A", 5_000_000_000_000_000_000, childRecords, false),
			mk("C", "A", 6_000_000_000_000_000_000, childRecords, false),
		},
	}
}

func (f *rolloverStreams) shard(id string) (*rolloverShard, error) {
	for _, s := range f.shards {
		if s.id == id {
			return s, nil
		}
	}
	return nil, &stypes.ResourceNotFoundException{Message: aws.String("no shard " + id)}
}

func (f *rolloverStreams) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	if aws.ToString(in.StreamArn) != f.arn {
		return nil, &stypes.ResourceNotFoundException{Message: in.StreamArn}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	desc := &stypes.StreamDescription{StreamArn: aws.String(f.arn)}
	for _, s := range f.shards {
		rng := &stypes.SequenceNumberRange{StartingSequenceNumber: s.records[0].Dynamodb.SequenceNumber}
		if s.closed {
			rng.EndingSequenceNumber = s.records[len(s.records)-1].Dynamodb.SequenceNumber
		}
		sh := stypes.Shard{ShardId: aws.String(s.id), SequenceNumberRange: rng}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		desc.Shards = append(desc.Shards, sh)
	}
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: desc}, nil
}

func (f *rolloverStreams) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	s, err := f.shard(aws.ToString(in.ShardId))
	if err != nil {
		return nil, err
	}
	pos := 0
	switch in.ShardIteratorType {
	case stypes.ShardIteratorTypeTrimHorizon:
	case stypes.ShardIteratorTypeLatest:
		pos = len(s.records)
	case stypes.ShardIteratorTypeAtSequenceNumber, stypes.ShardIteratorTypeAfterSequenceNumber:
		pos = slices.IndexFunc(s.records, func(r stypes.Record) bool {
			return aws.ToString(r.Dynamodb.SequenceNumber) == aws.ToString(in.SequenceNumber)
		})
		if pos < 0 {
			return nil, &stypes.TrimmedDataAccessException{Message: in.SequenceNumber}
		}
		if in.ShardIteratorType == stypes.ShardIteratorTypeAfterSequenceNumber {
			pos++
		}
	default:
		return nil, fmt.Errorf("fake streams: iterator type %s", in.ShardIteratorType)
	}
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String(s.id + "/" + strconv.Itoa(pos))}, nil
}

func (f *rolloverStreams) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	id, p, _ := strings.Cut(aws.ToString(in.ShardIterator), "/")
	s, err := f.shard(id)
	if err != nil {
		return nil, err
	}
	pos, err := strconv.Atoi(p)
	if err != nil {
		return nil, &stypes.ExpiredIteratorException{Message: in.ShardIterator}
	}
	n := len(s.records) - pos
	if in.Limit != nil {
		n = min(n, int(*in.Limit))
	}
	if s.id == f.parent {
		f.mu.Lock()
		held := f.describes < f.holdSyncs
		f.mu.Unlock()
		if held {
			n = 0
		}
		n = min(n, f.parentPerRead)
	}
	out := &dynamodbstreams.GetRecordsOutput{Records: s.records[pos : pos+n]}
	if !s.closed || pos+n < len(s.records) {
		out.NextShardIterator = aws.String(s.id + "/" + strconv.Itoa(pos+n))
	}
	return out, nil
}

// processed is one record as a record processor saw it.
type processed struct{ shard, seq string }

// orderRecorder collects, across shards, the order records were processed.
type orderRecorder struct {
	mu   sync.Mutex
	seen []processed
	errs []error
}

func (r *orderRecorder) add(p processed, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	r.seen = append(r.seen, p)
}

func (r *orderRecorder) snapshot() ([]processed, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen), slices.Clone(r.errs)
}

// CreateProcessor makes orderRecorder a KCL record processor factory.
func (r *orderRecorder) CreateProcessor() kcl.IRecordProcessor { return &recordingProcessor{rec: r} }

// recordingProcessor records each record, checkpoints after each batch and
// checkpoints SHARD_END on TERMINATE, as the publisher does.
type recordingProcessor struct {
	rec   *orderRecorder
	shard string
}

func (p *recordingProcessor) Initialize(in *kcl.InitializationInput) { p.shard = in.ShardId }

func (p *recordingProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	for _, r := range in.Records {
		_, err := DecodeChange(r.Data)
		p.rec.add(processed{p.shard, aws.ToString(r.SequenceNumber)}, err)
	}
	if n := len(in.Records); n > 0 {
		if err := in.Checkpointer.Checkpoint(in.Records[n-1].SequenceNumber); err != nil {
			p.rec.add(processed{}, fmt.Errorf("checkpoint shard %s: %w", p.shard, err))
		}
	}
}

func (p *recordingProcessor) Shutdown(in *kcl.ShutdownInput) {
	if in.ShutdownReason != kcl.TERMINATE {
		return
	}
	if err := in.Checkpointer.Checkpoint(nil); err != nil {
		p.rec.add(processed{}, fmt.Errorf("checkpoint SHARD_END of %s: %w", p.shard, err))
	}
}

// stopWorker shuts a KCL worker down, failing the test if that takes more
// than 30 s (Shutdown itself has no timeout).
func stopWorker(t *testing.T, w *worker.Worker) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		w.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("KCL worker did not shut down within 30 s")
	}
}

// TestGateOrdersChildrenAfterParentUnderKCL runs a real KCL worker over the
// DynamoDB Streams adapter on a stream that has rolled over: with the gate,
// no child record is processed before the parent's last; without it, KCL
// processes children beside their parent.
func TestGateOrdersChildrenAfterParentUnderKCL(t *testing.T) {
	t.Parallel()
	const parentRecords, childRecords = 50, 10
	emu := newStreamsAWS(t)
	for _, tc := range []struct {
		name  string
		gated bool
	}{{"gated", true}, {"ungated", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := awstest.Name(t, "lineage-"+tc.name)
			emu.createLeaseTable(t, app)
			kclCfg := kclTestConfig(t, app, app)
			cp := checkpoint.NewDynamoCheckpoint(kclCfg).WithDynamoDB(emu.ddb)
			streams := newRolloverStreams("arn:aws:dynamodb:us-east-1:000000000000:table/"+app+"/stream/1", parentRecords, childRecords)
			var opts []func(*kinesis.Options)
			if tc.gated {
				opts = append(opts, func(o *kinesis.Options) {
					o.APIOptions = append(o.APIOptions, gateChildren(checkpointFinished(cp)))
				})
			}
			kc := newStreamsKinesis(emu.cfg, streams, streams.arn, opts...)

			rec := &orderRecorder{}
			w := worker.NewWorker(rec, kclCfg).WithKinesis(kc).WithCheckpointer(cp)
			if err := w.Start(); err != nil {
				t.Fatalf("start worker: %v", err)
			}
			const total = parentRecords + 2*childRecords
			deadline := time.Now().Add(60 * time.Second)
			for {
				seen, _ := rec.snapshot()
				if len(seen) >= total {
					break
				}
				if time.Now().After(deadline) {
					stopWorker(t, w)
					t.Fatalf("processed %d of %d records before the deadline", len(seen), total)
				}
				time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
			}
			stopWorker(t, w)

			seen, errs := rec.snapshot()
			for _, err := range errs {
				t.Errorf("record processor: %v", err)
			}
			assertExactlyOnce(t, streams, seen)
			lastParent := streams.shards[0].records[parentRecords-1].Dynamodb.SequenceNumber
			parentEnd := slices.Index(seen, processed{"A", aws.ToString(lastParent)})
			firstChild := slices.IndexFunc(seen, func(p processed) bool { return p.shard != "A" })
			if parentEnd < 0 || firstChild < 0 {
				t.Fatalf("parent end at %d, first child record at %d: both must be processed", parentEnd, firstChild)
			}
			switch {
			case tc.gated && firstChild < parentEnd:
				t.Errorf("child record %v processed at %d, before the parent's last record at %d", seen[firstChild], firstChild, parentEnd)
			case !tc.gated && firstChild > parentEnd:
				t.Errorf("without the gate the first child record came at %d, after the parent's end at %d: the test no longer shows the race the gate prevents", firstChild, parentEnd)
			}
		})
	}
}

// assertExactlyOnce fails unless seen holds every record of the stream
// once, in sequence order within each shard.
func assertExactlyOnce(t *testing.T, streams *rolloverStreams, seen []processed) {
	t.Helper()
	byShard := map[string][]string{}
	for _, p := range seen {
		byShard[p.shard] = append(byShard[p.shard], p.seq)
	}
	for _, s := range streams.shards {
		var want []string
		for _, r := range s.records {
			want = append(want, aws.ToString(r.Dynamodb.SequenceNumber))
		}
		got := byShard[s.id]
		if !slices.Equal(got, want) {
			t.Errorf("shard %s: processed %d records %v, want each of its %d once in order", s.id, len(got), abbreviate(got), len(want))
		}
		delete(byShard, s.id)
	}
	for id := range byShard {
		t.Errorf("records processed from unknown shard %s", id)
	}
}

// abbreviate shortens a list of sequence numbers for a failure message.
func abbreviate(seqs []string) string {
	if len(seqs) <= 6 {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("[%s %s %s ... %s]", seqs[0], seqs[1], seqs[2], seqs[len(seqs)-1])
}
