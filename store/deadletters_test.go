package store

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	s.pageSize = 1 // so that listing takes several pages
	ctx := testContext(t)

	at := time.Date(2026, 7, 1, 12, 0, 0, 123_000_000, time.UTC)
	letters := []DeadLetter{
		{ID: "agg-1", Stage: "aggregator", Reason: "invalid JSON", ShardID: "shardId-0", Seq: "1", Data: []byte("{not json\x00\xff"), At: at},
		{ID: "pub-2", Stage: "publisher", Reason: "queue missing", ShardID: "shardId-1", Seq: "2", Data: []byte(`{"a":1}`), At: at.Add(time.Second)},
		{ID: "agg-3", Stage: "aggregator", Reason: "empty record", ShardID: "shardId-0", Seq: "3", At: at.Add(2 * time.Second)},
	}
	for _, d := range letters {
		if created, err := s.PutDeadLetter(ctx, d); err != nil || !created {
			t.Fatalf("PutDeadLetter(%s) = %v, %v; want true, nil", d.ID, created, err)
		}
	}
	replay := letters[0]
	replay.Reason = "changed"
	if created, err := s.PutDeadLetter(ctx, replay); err != nil || created {
		t.Errorf("PutDeadLetter replay = %v, %v; want false, nil", created, err)
	}

	got, err := s.DeadLetters(ctx)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	slices.SortFunc(got, func(a, b DeadLetter) int { return strings.Compare(a.Seq, b.Seq) })
	if !reflect.DeepEqual(got, letters) {
		t.Errorf("DeadLetters =\n %+v\nwant\n %+v", got, letters)
	}
}

func TestDeadLetterDefaults(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	ctx := testContext(t)
	if _, err := s.PutDeadLetter(ctx, DeadLetter{Stage: "aggregator"}); err == nil {
		t.Errorf("PutDeadLetter without id = nil error, want one")
	}
	if _, err := s.PutDeadLetter(ctx, DeadLetter{ID: "x", Stage: "aggregator"}); err != nil {
		t.Fatalf("PutDeadLetter: %v", err)
	}
	got, err := s.DeadLetters(ctx)
	if err != nil || len(got) != 1 || got[0].At.IsZero() {
		t.Errorf("DeadLetters = %+v, %v; want one with a time", got, err)
	}
}
