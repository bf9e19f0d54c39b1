package store

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/fanout/fanout/internal/awstest"
)

func TestCreateTables(t *testing.T) {
	t.Parallel()
	lease := awstest.Name(t, "leases")
	s := newStoreWithoutTables(t)
	ctx := testContext(t)

	// Twice at once, as concurrent tasks do, then once more: all succeed.
	// (Not three at once: after the first round every caller describes
	// the tables, and kumo's DescribeTable races with itself.)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = s.CreateTables(ctx, lease) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("CreateTables at once: %v", err)
	}
	if err := s.CreateTables(ctx, lease); err != nil {
		t.Fatalf("CreateTables again: %v", err)
	}

	db, _ := clients(s)
	type index struct{ name, hash, rng string }
	for _, tc := range []struct {
		table     string
		hash, rng string
		indexes   []index
		stream    bool
	}{
		{s.tables.Agents, "agentId", "", []index{{"resourceArn-index", "resourceArn", ""}}, false},
		{s.tables.Subscribers, "producerId", "subscriberId", []index{{"subscriberId-index", "subscriberId", "producerId"}}, false},
		{s.tables.SubscriberEvents, "subscriberId", "timestamp", nil, true},
		{s.tables.DeadLetters, "id", "", []index{{"all-index", "listAll", "listKey"}, {"stage-index", "stage", "listKey"}, {"producer-index", "producerId", "listKey"}, {"subscriber-index", "subscriberId", "listKey"}}, false},
		{s.tables.Replays, "subscriberId", "id", []index{{"state-index", "state", "createdAt"}}, false},
		{lease, "ShardID", "", nil, false},
	} {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(tc.table)})
		if err != nil {
			t.Fatalf("DescribeTable %s: %v", tc.table, err)
		}
		d := out.Table
		if d.TableStatus != types.TableStatusActive {
			t.Errorf("table %s: status %s, want ACTIVE", tc.table, d.TableStatus)
		}
		if d.BillingModeSummary == nil || d.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
			t.Errorf("table %s: billing %+v, want PAY_PER_REQUEST", tc.table, d.BillingModeSummary)
		}
		if h, r := keys(d.KeySchema); h != tc.hash || r != tc.rng {
			t.Errorf("table %s: key (%q, %q), want (%q, %q)", tc.table, h, r, tc.hash, tc.rng)
		}
		var got []index
		for _, g := range d.GlobalSecondaryIndexes {
			h, r := keys(g.KeySchema)
			got = append(got, index{aws.ToString(g.IndexName), h, r})
			if g.Projection == nil || g.Projection.ProjectionType != types.ProjectionTypeAll {
				t.Errorf("table %s index %s: projection %+v, want ALL", tc.table, aws.ToString(g.IndexName), g.Projection)
			}
		}
		if !slices.Equal(got, tc.indexes) {
			t.Errorf("table %s: indexes %v, want %v", tc.table, got, tc.indexes)
		}
		streaming := d.StreamSpecification != nil && aws.ToBool(d.StreamSpecification.StreamEnabled)
		if streaming != tc.stream {
			t.Errorf("table %s: stream enabled %v, want %v", tc.table, streaming, tc.stream)
		}
		if tc.stream && d.StreamSpecification.StreamViewType != types.StreamViewTypeNewImage {
			t.Errorf("table %s: stream view %s, want NEW_IMAGE", tc.table, d.StreamSpecification.StreamViewType)
		}
	}

	for _, table := range []string{s.tables.SubscriberEvents, s.tables.Subscribers, s.tables.Replays} {
		ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatalf("DescribeTimeToLive: %v", err)
		}
		if got := ttl.TimeToLiveDescription; aws.ToString(got.AttributeName) != "expiresAt" || got.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
			t.Errorf("TTL of %s: %s on %q, want ENABLED on expiresAt", table, got.TimeToLiveStatus, aws.ToString(got.AttributeName))
		}
	}
}

// keys returns the hash and range key names of a key schema.
func keys(ks []types.KeySchemaElement) (hash, rng string) {
	for _, k := range ks {
		switch k.KeyType {
		case types.KeyTypeHash:
			hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			rng = aws.ToString(k.AttributeName)
		}
	}
	return hash, rng
}

func TestStreamARN(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	db, _ := clients(s)
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.tables.SubscriberEvents)})
	if err != nil {
		t.Fatalf("DescribeTable: %v", err)
	}
	got, err := s.StreamARN(ctx)
	if want := aws.ToString(out.Table.LatestStreamArn); err != nil || got != want || want == "" {
		t.Errorf("StreamARN = %q, %v; want %q, nil", got, err, want)
	}

	// A table without a stream is an error that says so.
	noStream := *s
	noStream.tables.SubscriberEvents = s.tables.Agents
	if arn, err := noStream.StreamARN(ctx); err == nil {
		t.Errorf("StreamARN of a table without stream = %q, want an error", arn)
	}

	// A stream without the new image is an error that says what to set.
	keysOnly := *s
	keysOnly.tables.SubscriberEvents = awstest.Name(t, "keys-only")
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(keysOnly.tables.SubscriberEvents),
		BillingMode:          types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
		StreamSpecification:  &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeKeysOnly},
	}); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	if arn, err := keysOnly.StreamARN(ctx); err == nil || !strings.Contains(err.Error(), "NEW_IMAGE") {
		t.Errorf("StreamARN of a KEYS_ONLY stream = %q, %v; want an error asking for NEW_IMAGE", arn, err)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	missing := *s
	missing.tables.Agents = awstest.Name(t, "missing")
	if err := missing.Ping(ctx); err == nil {
		t.Errorf("Ping without the Agents table = nil, want an error")
	}
}
