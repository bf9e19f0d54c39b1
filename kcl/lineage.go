package kcl

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

// KCL-Go v1.0.0 makes a child shard's consumer wait for its parent's
// SHARD_END only when the parent already has a checkpoint; a child leased
// before that (or leased first: KCL picks shards in map order) runs beside
// its parent and breaks per-key order across a reshard. gateChildren closes
// the gap outside KCL: a shard KCL cannot see, it cannot lease.

// gateChildren returns a kinesis APIOptions function that filters
// ListShards output: a shard whose parent (or adjacent parent) is itself in
// the listing and not finished is hidden, so KCL cannot lease it yet. A
// parent absent from the listing (trimmed) does not hide its children.
//
// The middleware goes first in the Initialize step, so it wraps whatever
// answers ListShards (Kinesis, or the DynamoDB Streams adapter); it reads
// every page (following NextToken) before filtering, since a parent on
// another page is still in the listing, and returns one page. A "finished"
// answer is cached for the life of the returned function (finished is
// permanent); a lookup error hides the child this time only (fail closed:
// KCL lists shards again at its next sync). Once shown, a shard stays shown
// (even if a trimmed parent were listed again): KCL deletes the lease row of
// a shard that disappears from the listing. Other operations pass through.
// Safe for concurrent use.
func gateChildren(finished func(ctx context.Context, shardID string) (bool, error)) func(*middleware.Stack) error {
	g := &childGate{finished: finished, done: make(map[string]bool), shown: make(map[string]bool)}
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fanout.GateChildren", g.handle), middleware.Before)
	}
}

// childGate holds the finished-parent cache shared by every call through
// one gateChildren option.
type childGate struct {
	finished func(ctx context.Context, shardID string) (bool, error)

	mu    sync.Mutex
	done  map[string]bool // shard id -> finished; only true is stored
	shown map[string]bool // shards ever returned to KCL
}

func (g *childGate) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	params, ok := in.Parameters.(*kinesis.ListShardsInput)
	if !ok {
		return next.HandleInitialize(ctx, in)
	}
	out, md, err := next.HandleInitialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	page, ok := out.Result.(*kinesis.ListShardsOutput)
	if !ok {
		return out, md, fmt.Errorf("gate child shards: ListShards returned %T", out.Result)
	}
	shards := append([]ktypes.Shard(nil), page.Shards...)
	for page.NextToken != nil {
		// Kinesis rejects StreamName together with NextToken.
		more := in
		more.Parameters = &kinesis.ListShardsInput{NextToken: page.NextToken, MaxResults: params.MaxResults}
		out, md, err = next.HandleInitialize(ctx, more)
		if err != nil {
			return out, md, err
		}
		if page, ok = out.Result.(*kinesis.ListShardsOutput); !ok {
			return out, md, fmt.Errorf("gate child shards: ListShards returned %T", out.Result)
		}
		shards = append(shards, page.Shards...)
	}

	gated := *page
	gated.Shards = g.visible(ctx, shards)
	gated.NextToken = nil
	out.Result = &gated
	return out, md, nil
}

// visible returns the shards, in listing order, whose listed parents are
// all finished.
func (g *childGate) visible(ctx context.Context, shards []ktypes.Shard) []ktypes.Shard {
	listed := make(map[string]bool, len(shards))
	for _, s := range shards {
		listed[aws.ToString(s.ShardId)] = true
	}
	asked := make(map[string]bool) // this listing's answers, so siblings share one lookup
	isFinished := func(id string) bool {
		if fin, ok := asked[id]; ok {
			return fin
		}
		fin := g.isFinished(ctx, id)
		asked[id] = fin
		return fin
	}

	out := make([]ktypes.Shard, 0, len(shards))
	for _, s := range shards {
		id := aws.ToString(s.ShardId)
		g.mu.Lock()
		show := g.shown[id]
		g.mu.Unlock()
		if !show {
			show = true
			for _, parent := range []string{aws.ToString(s.ParentShardId), aws.ToString(s.AdjacentParentShardId)} {
				if parent != "" && listed[parent] && !isFinished(parent) {
					show = false
					break
				}
			}
		}
		if show {
			g.mu.Lock()
			g.shown[id] = true
			g.mu.Unlock()
			out = append(out, s)
		}
	}
	return out
}

// isFinished answers from the cache, else asks; an error counts as not
// finished.
func (g *childGate) isFinished(ctx context.Context, shardID string) bool {
	g.mu.Lock()
	cached := g.done[shardID]
	g.mu.Unlock()
	if cached {
		return true
	}
	fin, err := g.finished(ctx, shardID)
	if err != nil || !fin {
		return false
	}
	g.mu.Lock()
	g.done[shardID] = true
	g.mu.Unlock()
	return true
}

// checkpointFetcher is the part of KCL's checkpoint.Checkpointer the gate
// reads; *checkpoint.DynamoCheckpoint satisfies it.
type checkpointFetcher interface {
	FetchCheckpoint(shard *partition.ShardStatus) error
}

// checkpointFinished reports from the lease table whether a shard's
// checkpoint is SHARD_END. A shard without a lease row or checkpoint is not
// finished. KCL's checkpointer takes no context: ctx is only checked before
// the read.
func checkpointFinished(cp checkpointFetcher) func(ctx context.Context, shardID string) (bool, error) {
	return func(ctx context.Context, shardID string) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("fetch checkpoint shard=%s: %w", shardID, err)
		}
		shard := &partition.ShardStatus{ID: shardID, Mux: &sync.RWMutex{}}
		err := cp.FetchCheckpoint(shard)
		if errors.Is(err, checkpoint.ErrSequenceIDNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("fetch checkpoint shard=%s: %w", shardID, err)
		}
		return shard.GetCheckpoint() == checkpoint.ShardEnd, nil
	}
}
