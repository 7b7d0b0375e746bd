package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hodei-ci/hodei/internal/containers"
)

func TestIsTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("bad image"), false},
		{Transient(errors.New("busy")), true},
		{fmt.Errorf("create: %w", Transient(errors.New("busy"))), true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{context.Canceled, false},
		{ErrNotFound, false},
		{ErrCircuitOpen, false},
		{fmt.Errorf("x: %w", containers.ErrUnavailable), true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{fmt.Errorf("post: %w", syscall.ECONNRESET), true},
		{cerrdefs.ErrUnavailable.WithMessage("daemon restarting"), true},
		{cerrdefs.ErrNotFound.WithMessage("no such image"), false},
		{cerrdefs.ErrInvalidArgument.WithMessage("bad"), false},
		{cerrdefs.ErrConflict.WithMessage("name in use"), false},
		{timeoutErr{}, true},
	}
	for _, tt := range tests {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		if got := b.Delay(n, 0.5); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w*time.Millisecond)
		}
	}
	j := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	for _, r := range []float64{0, 0.3, 0.999} {
		d := j.Delay(3, r)
		if d > 400*time.Millisecond || d < 200*time.Millisecond {
			t.Errorf("jittered Delay(3, %v) = %s, want within [200ms, 400ms]", r, d)
		}
	}
}

// fakeProvider fails its calls as told.
type fakeProvider struct {
	mu    sync.Mutex
	calls int
	errs  []error // returned in order; nil after the list
	block chan struct{}
	ev    chan Event
}

func (f *fakeProvider) next(ctx context.Context) error {
	f.mu.Lock()
	f.calls++
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fakeProvider) Create(ctx context.Context, s WorkerSpec) (WorkerRef, error) {
	return WorkerRef{ID: s.ID}, f.next(ctx)
}
func (f *fakeProvider) Terminate(ctx context.Context, id string) error { return f.next(ctx) }
func (f *fakeProvider) Status(ctx context.Context, id string) (WorkerStatus, error) {
	return WorkerStatus{ID: id}, f.next(ctx)
}
func (f *fakeProvider) Logs(ctx context.Context, id string, w io.Writer) error { return f.next(ctx) }
func (f *fakeProvider) Capacity(ctx context.Context) (Capacity, error) {
	return Capacity{Workers: -1}, f.next(ctx)
}
func (f *fakeProvider) Events() <-chan Event { return f.ev }

func (f *fakeProvider) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func fastOpts() CallOptions {
	return CallOptions{Timeout: time.Second, Attempts: 3, Backoff: Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond},
		BreakerThreshold: 2, BreakerCooldown: time.Hour}
}

func TestGuardRetriesTransientErrors(t *testing.T) {
	busy := Transient(errors.New("busy"))
	f := &fakeProvider{errs: []error{busy, busy}}
	reg := prometheus.NewRegistry()
	g := Guard(f, "p", fastOpts(), NewMetrics(reg), quiet)
	if err := g.Terminate(context.Background(), "w"); err != nil {
		t.Fatalf("terminate after two transient errors: %v", err)
	}
	if f.count() != 3 {
		t.Errorf("%d calls, want 3", f.count())
	}
	if n := value(g.m.calls.WithLabelValues("p", "terminate", "retry")); n != 2 {
		t.Errorf("retries counted: %v", n)
	}

	// Three transient errors: the third attempt is the last.
	f = &fakeProvider{errs: []error{busy, busy, busy, nil}}
	g = Guard(f, "p", fastOpts(), nil, quiet)
	if err := g.Terminate(context.Background(), "w"); !errors.Is(err, busy) || f.count() != 3 {
		t.Errorf("err %v after %d calls, want busy after 3", err, f.count())
	}

	// A permanent error is not retried.
	bad := errors.New("no such image")
	f = &fakeProvider{errs: []error{bad}}
	g = Guard(f, "p", fastOpts(), nil, quiet)
	if _, err := g.Create(context.Background(), WorkerSpec{ID: "w"}); !errors.Is(err, bad) || f.count() != 1 {
		t.Errorf("err %v after %d calls, want no retry", err, f.count())
	}
	// Not found is an answer: no retry, no failure.
	f = &fakeProvider{errs: []error{ErrNotFound}}
	g = Guard(f, "p", fastOpts(), nil, quiet)
	if _, err := g.Status(context.Background(), "w"); !errors.Is(err, ErrNotFound) || g.Breaker().State(time.Now()) != BreakerClosed {
		t.Errorf("status of a missing worker: %v, breaker %s", err, g.Breaker().State(time.Now()))
	}
}

func TestGuardTimeout(t *testing.T) {
	f := &fakeProvider{block: make(chan struct{})}
	opts := fastOpts()
	opts.Timeout = 20 * time.Millisecond
	opts.Attempts = 2
	g := Guard(f, "p", opts, nil, quiet)
	err := g.Terminate(context.Background(), "w")
	if !errors.Is(err, context.DeadlineExceeded) || f.count() != 2 {
		t.Errorf("err %v after %d calls, want a timeout after 2 attempts", err, f.count())
	}
}

func TestGuardCircuitOpens(t *testing.T) {
	bad := errors.New("engine broken")
	f := &fakeProvider{errs: []error{bad, bad, bad}}
	opts := fastOpts()
	opts.BreakerCooldown = 30 * time.Millisecond
	reg := prometheus.NewRegistry()
	g := Guard(f, "p", opts, NewMetrics(reg), quiet)
	for i := 0; i < 2; i++ {
		if _, err := g.Capacity(context.Background()); !errors.Is(err, bad) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if s := g.Breaker().State(time.Now()); s != BreakerOpen {
		t.Fatalf("after 2 failures (threshold 2): %s", s)
	}
	if g.LastError() != "capacity: engine broken" {
		t.Errorf("last error %q", g.LastError())
	}
	if v := value(g.m.circuit); v != float64(BreakerOpen) {
		t.Errorf("circuit gauge %v", v)
	}
	// Open: not called at all.
	if _, err := g.Capacity(context.Background()); !errors.Is(err, ErrCircuitOpen) || f.count() != 2 {
		t.Errorf("open circuit: err %v, %d calls", err, f.count())
	}
	// After the cooldown, one trial: it fails and the circuit opens again.
	pollUntil(t, "the circuit to half-open after its cooldown", func() bool { return g.Breaker().State(time.Now()) == BreakerHalfOpen })
	if _, err := g.Capacity(context.Background()); !errors.Is(err, bad) || g.Breaker().State(time.Now()) != BreakerOpen {
		t.Errorf("failed trial: %v, %s", err, g.Breaker().State(time.Now()))
	}
	// The next trial works: closed.
	pollUntil(t, "the circuit to half-open after its cooldown", func() bool { return g.Breaker().State(time.Now()) == BreakerHalfOpen })
	if _, err := g.Capacity(context.Background()); err != nil || g.Breaker().State(time.Now()) != BreakerClosed {
		t.Errorf("good trial: %v, %s", err, g.Breaker().State(time.Now()))
	}
	if v := value(g.m.circuit); v != float64(BreakerClosed) {
		t.Errorf("circuit gauge %v after closing", v)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
