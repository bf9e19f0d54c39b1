package awstest_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/fanout/fanout/internal/awstest"
)

// roundTripHandler returns a handler through a stack with RoundTrip(d)
// whose final handler records when it was reached.
func roundTripHandler(t *testing.T, d time.Duration, reached *[]time.Time) middleware.Handler {
	t.Helper()
	stack := middleware.NewStack("test", smithyhttp.NewStackRequest)
	if err := awstest.RoundTrip(d)(stack); err != nil {
		t.Fatal(err)
	}
	return middleware.DecorateHandler(middleware.HandlerFunc(func(ctx context.Context, in any) (any, middleware.Metadata, error) {
		*reached = append(*reached, time.Now())
		return nil, middleware.Metadata{}, nil
	}), stack)
}

func TestRoundTripDelaysEveryCall(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, time.Second} {
		synctest.Test(t, func(t *testing.T) {
			var reached []time.Time
			h := roundTripHandler(t, d, &reached)
			start := time.Now()
			for range 3 {
				if _, _, err := h.Handle(context.Background(), "input"); err != nil {
					t.Fatalf("d=%s: %v", d, err)
				}
			}
			if len(reached) != 3 {
				t.Fatalf("d=%s: %d requests sent for 3 calls", d, len(reached))
			}
			// The bubble's clock moves only when every goroutine waits:
			// the times below are exact, not measured.
			for i, at := range reached {
				if got, want := at.Sub(start), time.Duration(i+1)*d; got != want {
					t.Errorf("d=%s: call %d sent after %s, want %s", d, i, got, want)
				}
			}
		})
	}
}

func TestRoundTripStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reached []time.Time
		h := roundTripHandler(t, time.Hour, &reached)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, _, err := h.Handle(ctx, "input")
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("call returned %v before its round trip or a cancel", err)
		default:
		}
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		default:
			t.Fatal("call still waiting after its context was cancelled")
		}
		if got := time.Since(start); got != time.Minute {
			t.Errorf("returned after %s, want at the cancel (1m0s)", got)
		}
		if len(reached) != 0 {
			t.Errorf("request sent %d times after a cancel, want never", len(reached))
		}
	})
}
