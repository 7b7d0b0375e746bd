package workers

import (
	"sync"
	"time"
)

// BreakerState is the state of a circuit breaker.
type BreakerState int

// States, in the order of the hodei_worker_provider_circuit gauge.
const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerHalfOpen lets one trial call through; its outcome closes or
	// opens the circuit again.
	BreakerHalfOpen
	// BreakerOpen lets no call through until the cooldown has passed.
	BreakerOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// Breaker is a circuit breaker: after threshold failed calls in a row it
// opens and refuses calls for cooldown; then it lets one call through
// (half-open): a success closes it, a failure opens it again. Time comes in
// as an argument, so that tests drive it. It is safe for concurrent use.
type Breaker struct {
	threshold int
	cooldown  time.Duration
	onChange  func(from, to BreakerState)

	mu       sync.Mutex
	state    BreakerState
	failures int       // in a row, while closed
	openedAt time.Time // while open
	trial    bool      // a half-open trial call is out
}

// NewBreaker returns a closed breaker. onChange, if not nil, is called on
// every change of state, outside the breaker's lock.
func NewBreaker(threshold int, cooldown time.Duration, onChange func(from, to BreakerState)) *Breaker {
	return &Breaker{threshold: max(threshold, 1), cooldown: cooldown, onChange: onChange}
}

// Allow reports whether a call may go now. A call it allows must be
// followed by Success, Failure or Cancel.
func (b *Breaker) Allow(now time.Time) bool {
	b.mu.Lock()
	from := b.state
	ok := false
	switch b.state {
	case BreakerClosed:
		ok = true
	case BreakerOpen:
		if now.Sub(b.openedAt) >= b.cooldown {
			b.state = BreakerHalfOpen
			b.trial = true
			ok = true
		}
	case BreakerHalfOpen:
		if !b.trial {
			b.trial = true
			ok = true
		}
	}
	to := b.state
	b.mu.Unlock()
	b.changed(from, to)
	return ok
}

// Success records a call that worked: the circuit closes.
func (b *Breaker) Success(time.Time) {
	b.mu.Lock()
	from := b.state
	b.state, b.failures, b.trial = BreakerClosed, 0, false
	b.mu.Unlock()
	b.changed(from, BreakerClosed)
}

// Failure records a call that failed.
func (b *Breaker) Failure(now time.Time) {
	b.mu.Lock()
	from := b.state
	switch b.state {
	case BreakerClosed:
		b.failures++
		if b.failures >= b.threshold {
			b.state, b.openedAt = BreakerOpen, now
		}
	case BreakerHalfOpen:
		b.state, b.openedAt, b.trial = BreakerOpen, now, false
	case BreakerOpen:
		// A call allowed before the circuit opened: it opens for longer.
		b.openedAt = now
	}
	to := b.state
	b.mu.Unlock()
	b.changed(from, to)
}

// Cancel records a call whose caller gave up: it says nothing of the
// provider, but frees the half-open trial.
func (b *Breaker) Cancel() {
	b.mu.Lock()
	if b.state == BreakerHalfOpen {
		b.trial = false
	}
	b.mu.Unlock()
}

// State is the state now (an open circuit whose cooldown has passed is
// reported half-open).
func (b *Breaker) State(now time.Time) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && now.Sub(b.openedAt) >= b.cooldown {
		return BreakerHalfOpen
	}
	return b.state
}

func (b *Breaker) changed(from, to BreakerState) {
	if from != to && b.onChange != nil {
		b.onChange(from, to)
	}
}
