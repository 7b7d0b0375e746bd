// Package backoff waits between the tries of something that may fail for a
// while (a stream not yet created, a server restarting, a provider
// overloaded): exponentially longer waits up to a bound, with jitter, and
// never past the end of the caller's context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: the wait before retry n is
// Base×2^(n-1), at most Max, less up to Jitter of it taken at random.
type Backoff struct {
	Base   time.Duration // first wait
	Max    time.Duration // longest wait
	Jitter float64       // fraction of a wait taken off at random, 0..1
}

// Delay is the wait before retry n (1 for the first retry), given a random
// number r in [0, 1).
func (b Backoff) Delay(n int, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		// Take off up to Jitter of the delay, so that many callers that
		// failed together do not retry together.
		d -= time.Duration(float64(d) * b.Jitter * r)
	}
	return d
}

// Wait waits the delay before retry n, or until ctx ends: it returns ctx's
// error then, nil after a full wait.
func (b Backoff) Wait(ctx context.Context, n int) error {
	t := time.NewTimer(b.Delay(n, rand.Float64()))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
