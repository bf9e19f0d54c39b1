package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		max     time.Duration
	}{{0, base + time.Millisecond}, {1, 2*base + time.Millisecond}, {3, 8*base + time.Millisecond}, {40, Max + time.Millisecond}, {-1, base + time.Millisecond}} {
		for range 200 {
			if d := Delay(tc.attempt); d <= 0 || d > tc.max {
				t.Fatalf("Delay(%d) = %v, want in (0, %v]", tc.attempt, d, tc.max)
			}
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(cancelled ctx, 1h) = true, want false at once")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep(ctx, 1ms) = false, want true")
	}
}
