package storetest

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fanout/fanout/store"
)

// deadLetters returns s's dead letters by id, failing t on error.
func deadLetters(t *testing.T, s Store) []store.DeadLetter {
	t.Helper()
	dls, err := s.DeadLetters(testContext(t))
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	slices.SortFunc(dls, func(a, b store.DeadLetter) int { return strings.Compare(a.ID, b.ID) })
	return dls
}

// putDeadLetter puts d into s, failing t unless it is created.
func putDeadLetter(t *testing.T, s Store, d store.DeadLetter) {
	t.Helper()
	if created, err := s.PutDeadLetter(testContext(t), d); err != nil || !created {
		t.Fatalf("PutDeadLetter(%s) = %v, %v; want created", d.ID, created, err)
	}
}

// testPutDeadLetterIsIdempotent: a dead letter is kept once per id, as
// first written; DeadLetters lists every one.
func testPutDeadLetterIsIdempotent(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := testContext(t)
	if got := deadLetters(t, s); len(got) != 0 {
		t.Errorf("DeadLetters of a new store = %+v, want none", got)
	}
	at := time.Date(2025, 7, 1, 12, 0, 0, 123_456_789, time.FixedZone("CEST", 2*3600))
	a := store.DeadLetter{ID: "aggregator/shardId-1/7", Stage: "aggregator", Reason: "record is not an event",
		ShardID: "shardId-1", Seq: "7", Data: []byte("garbage"), At: at}
	b := store.DeadLetter{ID: "publisher/s/p/e", Stage: "publisher", Reason: "queue missing", ShardID: "shardId-2", Seq: "8", At: at}
	putDeadLetter(t, s, a)
	replay := a
	replay.Reason, replay.Data = "another reason", []byte("other data")
	if created, err := s.PutDeadLetter(ctx, replay); err != nil || created {
		t.Errorf("PutDeadLetter of a replay = %v, %v; want false, nil", created, err)
	}
	putDeadLetter(t, s, b)

	wantA, wantB := a, b
	wantA.At, wantB.At = at.UTC().Truncate(time.Millisecond), at.UTC().Truncate(time.Millisecond)
	wantA.DataBytes = len(a.Data)
	if got, want := deadLetters(t, s), []store.DeadLetter{wantA, wantB}; !reflect.DeepEqual(got, want) {
		t.Errorf("DeadLetters =\n%+v\nwant\n%+v", got, want)
	}
}

// testPutDeadLetterBounds: data over 256 KiB and reasons over 4 KiB are
// cut, saying so; a dead letter without a time gets one.
func testPutDeadLetterBounds(t *testing.T, h Harness) {
	s := h.New(t)
	data := bytes.Repeat([]byte("d"), 300<<10)
	reason := strings.Repeat("é", 3000) // 6000 bytes
	putDeadLetter(t, s, store.DeadLetter{ID: "big", Stage: "aggregator", Reason: reason, ShardID: "shardId-1", Seq: "1", Data: data})
	got := deadLetters(t, s)
	if len(got) != 1 {
		t.Fatalf("DeadLetters = %d, want one", len(got))
	}
	d := got[0]
	if !bytes.Equal(d.Data, data[:256<<10]) || d.DataBytes != len(data) || !d.Truncated {
		t.Errorf("dead letter data of %d bytes, DataBytes %d, Truncated %v; want its first 256 KiB, %d, true", len(d.Data), d.DataBytes, d.Truncated, len(data))
	}
	if len(d.Reason) > 4<<10 || !utf8.ValidString(d.Reason) || !strings.HasSuffix(d.Reason, " [truncated]") ||
		!strings.HasPrefix(reason, strings.TrimSuffix(d.Reason, " [truncated]")) {
		t.Errorf("reason of %d bytes ending %q: want at most 4 KiB of the reason's whole characters, ending \" [truncated]\"", len(d.Reason), d.Reason[max(0, len(d.Reason)-20):])
	}
	if !isStored(d.At) {
		t.Errorf("dead letter put without a time has At %v, want the time it was put", d.At)
	}
	if want := (store.DeadLetter{ID: "big", Stage: "aggregator", ShardID: "shardId-1", Seq: "1"}); d.ID != want.ID || d.Stage != want.Stage || d.ShardID != want.ShardID || d.Seq != want.Seq {
		t.Errorf("dead letter %s/%s/%s/%s, want %+v", d.ID, d.Stage, d.ShardID, d.Seq, want)
	}
}

// testPutDeadLetterRejects: a dead letter that can never be written is
// store.ErrRejected.
func testPutDeadLetterRejects(t *testing.T, h Harness) {
	s := h.New(t)
	for _, tc := range []struct {
		name string
		d    store.DeadLetter
	}{
		{"no id", store.DeadLetter{Stage: "aggregator", ShardID: "shardId-1", Seq: "1"}},
		{"id over 2048 bytes", store.DeadLetter{ID: strings.Repeat("i", 2049), Stage: "aggregator"}},
		{"too big despite truncation", store.DeadLetter{ID: "x", Stage: "aggregator", Seq: strings.Repeat("9", 410*1024)}},
	} {
		if created, err := s.PutDeadLetter(testContext(t), tc.d); !errors.Is(err, store.ErrRejected) || created {
			t.Errorf("%s: PutDeadLetter = %v, %v; want store.ErrRejected", tc.name, created, err)
		}
	}
	if got := deadLetters(t, s); len(got) != 0 {
		t.Errorf("DeadLetters = %+v, want none", got)
	}
}
