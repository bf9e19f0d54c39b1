package server

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/store"
)

func TestSubscribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		lookupErr  error // for agent "L"
		subErr     error
		status     int
		wantErr    []string
		subscribed [][2]string // {producer, subscriber}
	}{
		{name: "ok", path: "/agents/L/subscriptions/P", status: 204, subscribed: [][2]string{{"P", "L"}}},
		{name: "self", path: "/agents/L/subscriptions/L", status: 204, subscribed: [][2]string{{"L", "L"}}},
		{name: "listener missing", path: "/agents/X/subscriptions/P", status: 404, wantErr: []string{`listener agent "X" not found`}},
		{name: "producer missing", path: "/agents/L/subscriptions/X", status: 404, wantErr: []string{`producer agent "X" not found`}},
		{name: "producer id too long", path: "/agents/L/subscriptions/" + strings.Repeat("p", 300), status: 404, wantErr: []string{"producer agent id is longer than 256"}},
		{name: "lookup failure", path: "/agents/L/subscriptions/P", lookupErr: errors.New("timeout"), status: 503, wantErr: []string{"service unavailable"}},
		{name: "subscribe failure", path: "/agents/L/subscriptions/P", subErr: fmt.Errorf("put: %w", store.ErrRetryLater), status: 503, wantErr: []string{"retry later"}, subscribed: [][2]string{{"P", "L"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "L", "P")
			if tc.lookupErr != nil {
				f.agents.errFor["L"] = tc.lookupErr
			}
			f.subs.err = tc.subErr
			rec := f.do(t, http.MethodPut, tc.path, "", nil)
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
			} else {
				checkStatus(t, rec, tc.status)
				if rec.Body.Len() != 0 {
					t.Errorf("204 with body %q", rec.Body.String())
				}
			}
			if !slices.Equal(f.subs.subscribed, tc.subscribed) {
				t.Errorf("Subscribe calls = %q, want %q", f.subs.subscribed, tc.subscribed)
			}
		})
	}
}

func TestSubscribeIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{}, "L", "P")
	for i := range 2 {
		if rec := f.do(t, http.MethodPut, "/agents/L/subscriptions/P", "", nil); rec.Code != 204 {
			t.Fatalf("PUT #%d: status %d, want 204", i+1, rec.Code)
		}
	}
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		path         string
		err          error
		status       int
		wantErr      []string
		unsubscribed [][2]string
	}{
		{name: "ok", path: "/agents/L/subscriptions/P", status: 204, unsubscribed: [][2]string{{"P", "L"}}},
		{name: "producer gone", path: "/agents/L/subscriptions/gone", status: 204, unsubscribed: [][2]string{{"gone", "L"}}},
		{name: "producer id too long", path: "/agents/L/subscriptions/" + strings.Repeat("p", 300), status: 204},
		{name: "listener missing", path: "/agents/X/subscriptions/P", status: 404, wantErr: []string{`listener agent "X" not found`}},
		{name: "store failure", path: "/agents/L/subscriptions/P", err: errors.New("boom"), status: 503, wantErr: []string{"service unavailable, retry later"}, unsubscribed: [][2]string{{"P", "L"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "L", "P")
			f.subs.err = tc.err
			rec := f.do(t, http.MethodDelete, tc.path, "", nil)
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
			} else {
				checkStatus(t, rec, tc.status)
			}
			if !slices.Equal(f.subs.unsubscribed, tc.unsubscribed) {
				t.Errorf("Unsubscribe calls = %q, want %q", f.subs.unsubscribed, tc.unsubscribed)
			}
		})
	}
}

func TestListSubscriptions(t *testing.T) {
	t.Parallel()
	cest := time.FixedZone("CEST", 2*3600)
	tests := []struct {
		name    string
		path    string
		subs    []store.Subscription
		err     error
		status  int
		want    string
		wantErr []string
	}{
		{name: "two", path: "/agents/L/subscriptions", status: 200,
			subs: []store.Subscription{
				{ProducerID: "P1", SubscriberID: "L", CreatedAt: time.Date(2025, 7, 1, 14, 0, 0, 5_999_999, cest)},
				{ProducerID: "P2", SubscriberID: "L", CreatedAt: time.Date(2025, 7, 2, 0, 0, 0, 0, time.UTC)},
			},
			want: `{"listenerId":"L","subscriptions":[{"producerId":"P1","createdAt":"2025-07-01T12:00:00.005Z"},{"producerId":"P2","createdAt":"2025-07-02T00:00:00.000Z"}]}`},
		{name: "none is an empty array", path: "/agents/L/subscriptions", status: 200, want: `{"listenerId":"L","subscriptions":[]}`},
		{name: "listener missing", path: "/agents/X/subscriptions", status: 404, wantErr: []string{`listener agent "X" not found`}},
		{name: "store failure", path: "/agents/L/subscriptions", err: errors.New("boom"), status: 503, wantErr: []string{"service unavailable, retry later"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{}, "L")
			for _, sub := range tc.subs {
				f.store.AddSubscription(sub)
			}
			f.subs.err = tc.err
			rec := f.do(t, http.MethodGet, tc.path, "", nil)
			if tc.wantErr != nil {
				checkErrorContains(t, rec, tc.status, tc.wantErr...)
				return
			}
			checkStatus(t, rec, tc.status)
			if got := strings.TrimSpace(rec.Body.String()); got != tc.want {
				t.Errorf("body = %s, want %s", got, tc.want)
			}
		})
	}
}
