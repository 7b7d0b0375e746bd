package workers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// listerFake is a provider whose workers outlive the manager (a Lister),
// with no Drain: what the kubernetes provider is, in memory.
type listerFake struct {
	events chan Event

	mu         sync.Mutex
	live       map[string]bool
	listed     []ListedWorker
	listErrs   int // List fails this many times first
	lists      int
	created    []string
	terminated []string
}

func newListerFake(listed ...ListedWorker) *listerFake {
	f := &listerFake{events: make(chan Event, 64), live: map[string]bool{}, listed: listed}
	for _, w := range listed {
		f.live[w.Ref.ID] = true
	}
	return f
}

func (f *listerFake) Create(_ context.Context, spec WorkerSpec) (WorkerRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, spec.ID)
	f.live[spec.ID] = true
	return WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "fake"}, nil
}

func (f *listerFake) Terminate(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.terminated = append(f.terminated, id)
	delete(f.live, id)
	return nil
}

func (f *listerFake) Status(_ context.Context, id string) (WorkerStatus, error) {
	return WorkerStatus{}, ErrNotFound
}
func (f *listerFake) Logs(context.Context, string, io.Writer) error { return ErrNotFound }
func (f *listerFake) Capacity(context.Context) (Capacity, error) {
	return Capacity{Workers: -1, CPUMilli: -1, Memory: -1}, nil
}
func (f *listerFake) Events() <-chan Event { return f.events }

func (f *listerFake) List(context.Context) ([]ListedWorker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErrs > 0 {
		f.listErrs--
		return nil, Transient(errors.New("api server unavailable"))
	}
	out := slices.Clone(f.listed)
	// What this run created is listed too, as by labels.
	for _, id := range f.created {
		if f.live[id] {
			out = append(out, ListedWorker{Ref: WorkerRef{ID: id, Pool: "p"}, Status: WorkerStatus{ID: id, Phase: PhaseRunning}})
		}
	}
	return out, nil
}

func (f *listerFake) calls() (created, terminated []string, lists int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.created), slices.Clone(f.terminated), f.lists
}

// viewFake is the orchestrator's view, set by the test.
type viewFake struct {
	v atomic.Pointer[orchestrator.View]
}

func (v *viewFake) set(workers []orchestrator.WorkerView, demand []orchestrator.DemandView) {
	v.v.Store(&orchestrator.View{At: time.Now(), Workers: workers, Demand: demand})
}

func startFakeManager(t *testing.T, pool poolsfile.PoolConfig, p Provider, view *viewFake) (*Manager, context.CancelFunc) {
	t.Helper()
	reg := NewRegistry()
	reg.Register("fake", func(poolsfile.PoolConfig, ProviderEnv) (Provider, error) { return p, nil })
	m, err := NewManager(ManagerConfig{
		Pools: &poolsfile.Config{Pools: []poolsfile.PoolConfig{pool}}, Registry: reg, View: view.v.Load,
		Interval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	t.Cleanup(func() {
		cancel()
		m.Close(context.Background())
	})
	return m, cancel
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func listed(id string, phase Phase, age time.Duration) ListedWorker {
	return ListedWorker{Ref: WorkerRef{ID: id, Pool: "p"}, Status: WorkerStatus{ID: id, Phase: phase}, CreatedAt: time.Now().Add(-age)}
}

func fakePool(min, max int) poolsfile.PoolConfig {
	return poolsfile.PoolConfig{Name: "p", Provider: "fake", Min: min, Max: max, IdleTimeout: 50 * time.Millisecond,
		Shape: poolsfile.Shape{CPUMilli: 1000, Memory: 1 << 30}}
}

// TestManagerAdoptsListedWorkers: the workers a previous run left are
// counted in their pool at start (the running first, then the oldest, up to
// max), those over max and those that exited are terminated, no worker is
// created for demand they cover, and adopted workers are scaled down like
// any other (terminated directly: the provider cannot drain).
func TestManagerAdoptsListedWorkers(t *testing.T) {
	f := newListerFake(
		listed("p-old", PhaseRunning, 3*time.Hour),
		listed("p-pending", PhaseCreating, 4*time.Hour),
		listed("p-new", PhaseRunning, time.Hour),
		listed("p-done", PhaseExited, 2*time.Hour),
		listed("p-deleting", PhaseGone, 2*time.Hour),
	)
	view := &viewFake{}
	// Two queued jobs, each the size of a worker: the two adopted workers
	// (still joining) cover them.
	view.set(nil, []orchestrator.DemandView{{CPUMilli: 1000, Memory: 1 << 30, Jobs: 2}})
	m, _ := startFakeManager(t, fakePool(1, 2), f, view)
	pollUntil(t, "the exited and surplus workers to be terminated", func() bool {
		_, term, _ := f.calls()
		return len(term) == 3
	})
	_, term, _ := f.calls()
	slices.Sort(term)
	if !slices.Equal(term, []string{"p-deleting", "p-done", "p-pending"}) {
		t.Errorf("terminated %v, want the exited, the deleted and the surplus (pending) worker", term)
	}
	pollUntil(t, "the pool's status to count the adopted workers", func() bool {
		st := m.Pools()[0]
		return st.Size == 2 && st.Adopted == 2 && st.Pending == 2 && st.Demand == 2
	})
	if created, _, _ := f.calls(); len(created) != 0 {
		t.Fatalf("created %v for demand that adopted workers cover", created)
	}

	// The agents joined; the jobs ran and were canceled; both idle. Min is
	// 1: one is scaled down (terminated: no drain), the other stays.
	view.set([]orchestrator.WorkerView{{ID: "p-old", Pool: "p", State: "idle"}, {ID: "p-new", Pool: "p", State: "idle"}}, nil)
	pollUntil(t, "one idle adopted worker to be terminated", func() bool {
		_, term, _ := f.calls()
		return len(term) == 4 && m.Pools()[0].Size == 1
	})
	created, term, _ := f.calls()
	if len(created) != 0 || !slices.Contains([]string{"p-old", "p-new"}, term[3]) {
		t.Errorf("created %v, terminated %v", created, term)
	}
	if st := m.Pools()[0]; st.Adopted != 1 || st.Idle != 1 {
		t.Errorf("pool after the scale down: %+v", st)
	}
}

// TestManagerAdoptionRespectsMax: a List that fails (after the guard's
// retries) is tried again later; by then the manager has created a worker
// for min, and what it finds is adopted only up to max.
func TestManagerAdoptionRespectsMax(t *testing.T) {
	f := newListerFake(listed("p-a", PhaseRunning, time.Hour), listed("p-b", PhaseRunning, 2*time.Hour))
	f.listErrs = 3 // every attempt the guard makes of the first List
	view := &viewFake{}
	view.set(nil, nil)
	m, cancel := startFakeManager(t, fakePool(1, 2), f, view)
	pollUntil(t, "the first List's three attempts and a later one", func() bool {
		_, _, lists := f.calls()
		return lists >= 4
	})
	pollUntil(t, "the pool to hold max", func() bool {
		_, term, _ := f.calls()
		st := m.Pools()[0]
		return len(term) == 1 && st.Size == 2 && st.Adopted == 1
	})
	created, term, _ := f.calls()
	if len(created) != 1 || term[0] != "p-a" {
		t.Errorf("created %v, terminated %v: want one created for min, the younger leftover terminated", created, term)
	}
	// Close terminates what the manager owns, adopted or not.
	cancel()
	m.Close(context.Background())
	_, term, _ = f.calls()
	slices.Sort(term)
	want := []string{"p-a", "p-b", created[0]}
	slices.Sort(want)
	if !slices.Equal(term, want) {
		t.Errorf("terminated %v after Close, want %v", term, want)
	}
}

// TestGuardedList: List goes through the guard: a transient failure is
// retried within the call, a provider without List has no Lister, and a
// List that keeps failing counts toward the circuit breaker.
func TestGuardedList(t *testing.T) {
	t.Parallel()
	f := newListerFake(listed("p-a", PhaseRunning, time.Hour))
	f.listErrs = 1
	opts := CallOptions{Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}, BreakerThreshold: 2}
	g := Guard(f, "p", opts, nil, nil)
	l, ok := g.Lister()
	if !ok {
		t.Fatal("a provider with List has no Lister behind its guard")
	}
	got, err := l.List(context.Background())
	if _, _, lists := f.calls(); err != nil || len(got) != 1 || lists != 2 {
		t.Fatalf("List = %v, %v after %d calls; want p-a after one retry", got, err, lists)
	}
	f.listErrs = 6
	for range 2 {
		if _, err := l.List(context.Background()); err == nil {
			t.Fatal("List succeeded while the provider fails")
		}
	}
	if g.Breaker().State(time.Now()) != BreakerOpen {
		t.Errorf("breaker %v after two failed Lists, want open", g.Breaker().State(time.Now()))
	}
	if _, err := l.List(context.Background()); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("List with the circuit open: %v", err)
	}
	if _, ok := Guard(&fakeProvider{}, "q", opts, nil, nil).Lister(); ok {
		t.Error("a provider without List has a Lister")
	}
}

// TestManagerCloseRacesRun: Close may be called while Run is starting, or
// before it; whichever wins, Run returns and Close does not wait forever
// (under -race, neither touches the other's state unguarded).
func TestManagerCloseRacesRun(t *testing.T) {
	// Round 0: Close wins outright (it returns before Run is called); the
	// others race them.
	for i := 0; i < 50; i++ {
		reg := NewRegistry()
		f := newListerFake()
		reg.Register("fake", func(poolsfile.PoolConfig, ProviderEnv) (Provider, error) { return f, nil })
		view := &viewFake{}
		view.set(nil, nil)
		m, err := NewManager(ManagerConfig{
			Pools: &poolsfile.Config{Pools: []poolsfile.PoolConfig{fakePool(0, 1)}}, Registry: reg, View: view.v.Load,
			Interval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		ran, closed := make(chan struct{}), make(chan struct{})
		run := func() {
			defer close(ran)
			m.Run(context.Background()) // never cancelled: only Close can end it
		}
		closeIt := func() {
			defer close(closed)
			m.Close(context.Background())
		}
		if i == 0 {
			closeIt()
			go run()
		} else {
			go run()
			go closeIt()
		}
		for what, ch := range map[string]chan struct{}{"Run to return": ran, "Close to return": closed} {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: timed out waiting for %s", i, what)
			}
		}
	}
}
