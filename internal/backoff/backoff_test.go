package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestDelayDoublesUpToMax(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n, w := range map[int]time.Duration{0: 100, 1: 100, 2: 200, 3: 400, 4: 800, 5: 1000, 60: 1000} {
		if got := b.Delay(n, 0.5); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w*time.Millisecond)
		}
	}
	j := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	for _, r := range []float64{0, 0.3, 0.99} {
		if d := j.Delay(3, r); d > 400*time.Millisecond || d < 200*time.Millisecond {
			t.Errorf("jittered Delay(3, %v) = %s, want within [200ms, 400ms]", r, d)
		}
	}
}

// Wait waits the delay of its retry, on the clock: the bubble's clock
// moves only when every goroutine in it waits, so the time it shows
// elapsed is exactly what Wait waited.
func TestWaitWaitsTheDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second}
		for n, want := range map[int]time.Duration{1: 50 * time.Millisecond, 3: 200 * time.Millisecond, 10: 2 * time.Second} {
			start := time.Now()
			if err := b.Wait(t.Context(), n); err != nil {
				t.Fatalf("Wait(%d): %v", n, err)
			}
			if got := time.Since(start); got != want {
				t.Errorf("Wait(%d) waited %s, want %s", n, got, want)
			}
		}
	})
}

// Wait ends with its context, not with its delay: a stopping caller is not
// held for the rest of a wait.
func TestWaitEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Base: time.Minute, Max: time.Minute}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := b.Wait(ctx, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait: %v, want the context's deadline", err)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("Wait returned after %s, want 3s (its context's end)", got)
		}

		canceled, cancelNow := context.WithCancel(t.Context())
		cancelNow()
		if err := b.Wait(canceled, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait on a canceled context: %v, want context.Canceled", err)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("Wait on a canceled context waited %s", got-3*time.Second)
		}
	})
}
