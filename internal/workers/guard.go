package workers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/backoff"
	"github.com/hodei-ci/hodei/internal/containers"
)

// transientError marks an error that may go away on a retry.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// Transient marks err as worth a retry.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// IsTransient is the default classification of provider errors: an error
// marked Transient, a timeout, a refused or reset connection, an engine
// that is unavailable or overloaded. A canceled call, a missing worker, an
// open circuit and anything else (bad image, bad request) are not retried.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var te transientError
	switch {
	case errors.As(err, &te):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, ErrNotFound), errors.Is(err, ErrCircuitOpen):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, containers.ErrUnavailable):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case cerrdefs.IsUnavailable(err), cerrdefs.IsDeadlineExceeded(err), cerrdefs.IsResourceExhausted(err):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Backoff is the wait between the attempts of a call.
type Backoff = backoff.Backoff

// CallOptions bound every call to a provider.
type CallOptions struct {
	// Timeout of one attempt of a call (30s; Create gets CreateTimeout,
	// 2 min, as it may pull an image).
	Timeout       time.Duration
	CreateTimeout time.Duration
	// Attempts is the most attempts of one call (3).
	Attempts int
	Backoff  Backoff
	// Classify says which errors are worth a retry (IsTransient).
	Classify func(error) bool
	// Breaker opens after BreakerThreshold failed calls in a row (5) and
	// lets one call through after BreakerCooldown (30s).
	BreakerThreshold int
	BreakerCooldown  time.Duration
}

func (o *CallOptions) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.CreateTimeout <= 0 {
		o.CreateTimeout = 2 * time.Minute
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Backoff.Base <= 0 {
		o.Backoff = Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}
	}
	if o.Classify == nil {
		o.Classify = IsTransient
	}
	if o.BreakerThreshold <= 0 {
		o.BreakerThreshold = 5
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = 30 * time.Second
	}
}

// Guarded is a Provider whose every call has a timeout, is retried with
// backoff on transient errors, and goes through a circuit breaker: a
// provider that keeps failing is not called for a while (calls fail at once
// with ErrCircuitOpen), and the breaker's state is logged, counted and
// shown by `hodei pools`.
type Guarded struct {
	p       Provider
	pool    string
	opts    CallOptions
	breaker *Breaker
	log     *slog.Logger
	m       *guardMetrics

	mu      sync.Mutex
	lastErr string
	lastAt  time.Time
}

var _ Provider = (*Guarded)(nil)

// Guard wraps the provider of a pool. metrics may be nil.
func Guard(p Provider, pool string, opts CallOptions, m *Metrics, log *slog.Logger) *Guarded {
	opts.defaults()
	if log == nil {
		log = slog.Default()
	}
	g := &Guarded{p: p, pool: pool, opts: opts, log: log.With("pool", pool)}
	if m != nil {
		g.m = &guardMetrics{calls: m.calls, circuit: m.circuit.WithLabelValues(pool)}
	}
	g.breaker = NewBreaker(opts.BreakerThreshold, opts.BreakerCooldown, func(from, to BreakerState) {
		switch to {
		case BreakerOpen:
			g.log.Error("worker provider keeps failing: circuit open, calls stop for a while", "from", from, "cooldown", opts.BreakerCooldown, "last_error", g.LastError())
		case BreakerHalfOpen:
			g.log.Info("worker provider: trying one call (circuit half-open)")
		case BreakerClosed:
			g.log.Info("worker provider works again: circuit closed")
		}
		if g.m != nil {
			g.m.circuit.Set(float64(to))
		}
	})
	return g
}

type guardMetrics struct {
	calls   *prometheus.CounterVec
	circuit prometheus.Gauge
}

// Unwrap returns the guarded provider.
func (g *Guarded) Unwrap() Provider { return g.p }

// Breaker returns the circuit breaker.
func (g *Guarded) Breaker() *Breaker { return g.breaker }

// LastError is the last error of a call, and when it happened.
func (g *Guarded) LastError() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastErr
}

func (g *Guarded) call(ctx context.Context, op string, timeout time.Duration, fn func(ctx context.Context) error) error {
	if !g.breaker.Allow(time.Now()) {
		g.count(op, "circuit_open")
		return ErrCircuitOpen
	}
	var err error
	for n := 1; ; n++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = fn(cctx)
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) {
			// A missing worker is an answer, not a failure of the provider.
			g.breaker.Success(time.Now())
			g.count(op, "ok")
			return err
		}
		if ctx.Err() != nil {
			// The caller gave up: that says nothing of the provider.
			g.breaker.Cancel()
			g.count(op, "canceled")
			return err
		}
		if n >= g.opts.Attempts || !g.opts.Classify(err) {
			break
		}
		g.count(op, "retry")
		g.log.Debug("provider call failed; retrying", "op", op, "attempt", n, "err", err)
		if g.opts.Backoff.Wait(ctx, n) != nil {
			g.breaker.Cancel()
			return err
		}
	}
	g.mu.Lock()
	g.lastErr, g.lastAt = op+": "+err.Error(), time.Now()
	g.mu.Unlock()
	g.breaker.Failure(time.Now())
	g.count(op, "error")
	g.log.Warn("provider call failed", "op", op, "err", err)
	return err
}

// callFor is call for a provider method that also returns a value.
func callFor[T any](g *Guarded, ctx context.Context, op string, timeout time.Duration, fn func(ctx context.Context) (T, error)) (T, error) {
	var v T
	err := g.call(ctx, op, timeout, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

func (g *Guarded) count(op, result string) {
	if g.m != nil {
		g.m.calls.WithLabelValues(g.pool, op, result).Inc()
	}
}

// Create creates a worker.
func (g *Guarded) Create(ctx context.Context, spec WorkerSpec) (WorkerRef, error) {
	return callFor(g, ctx, "create", g.opts.CreateTimeout, func(ctx context.Context) (WorkerRef, error) { return g.p.Create(ctx, spec) })
}

// Terminate removes a worker.
func (g *Guarded) Terminate(ctx context.Context, id string) error {
	return g.call(ctx, "terminate", g.opts.Timeout, func(ctx context.Context) error { return g.p.Terminate(ctx, id) })
}

// Status asks for a worker's status.
func (g *Guarded) Status(ctx context.Context, id string) (WorkerStatus, error) {
	return callFor(g, ctx, "status", g.opts.Timeout, func(ctx context.Context) (WorkerStatus, error) { return g.p.Status(ctx, id) })
}

// Logs copies a worker's output. It is not retried (w may have part of it).
func (g *Guarded) Logs(ctx context.Context, id string, w io.Writer) error {
	if !g.breaker.Allow(time.Now()) {
		return ErrCircuitOpen
	}
	cctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	err := g.p.Logs(cctx, id, w)
	if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
		g.breaker.Failure(time.Now())
		return err
	}
	g.breaker.Success(time.Now())
	return err
}

// Capacity asks what the provider can still create.
func (g *Guarded) Capacity(ctx context.Context) (Capacity, error) {
	return callFor(g, ctx, "capacity", g.opts.Timeout, g.p.Capacity)
}

// Drain tells a worker to take no new jobs, if the provider can.
func (g *Guarded) Drain(ctx context.Context, id string) error {
	d, ok := g.p.(Drainer)
	if !ok {
		return nil
	}
	return g.call(ctx, "drain", g.opts.Timeout, func(ctx context.Context) error { return d.Drain(ctx, id) })
}

// Lister returns the guarded provider's List behind the guard (timeout,
// retries, breaker, metrics), if the provider can list.
func (g *Guarded) Lister() (Lister, bool) {
	if _, ok := g.p.(Lister); !ok {
		return nil, false
	}
	return guardedLister{g}, true
}

type guardedLister struct{ g *Guarded }

// List lists through the guard.
func (l guardedLister) List(ctx context.Context) ([]ListedWorker, error) {
	return callFor(l.g, ctx, "list", l.g.opts.Timeout, l.g.p.(Lister).List)
}

// Events passes the provider's events on.
func (g *Guarded) Events() <-chan Event { return g.p.Events() }
