package workers

import (
	"fmt"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func pool(name string, min, max int, cost float64, cpu int64, labels ...string) PoolSnapshot {
	return PoolSnapshot{
		Config:    poolsfile.PoolConfig{Name: name, Min: min, Max: max, CostPerHour: cost, IdleTimeout: time.Minute, Shape: poolsfile.Shape{CPUMilli: cpu, Memory: 4 << 30, Labels: labels}},
		Labels:    append(slices.Clone(labels), "linux"),
		Healthy:   true,
		CanCreate: -1,
	}
}

func with(p PoolSnapshot, ws ...WorkerSnapshot) PoolSnapshot { p.Workers = ws; return p }

func w(id string, st WorkerState, jobs int) WorkerSnapshot {
	return WorkerSnapshot{ID: id, State: st, Jobs: jobs, CreatedAt: t0.Add(-time.Minute)}
}

func idleSince(id string, d time.Duration) WorkerSnapshot {
	x := w(id, WorkerIdle, 0)
	x.IdleSince = t0.Add(-d)
	return x
}

// show writes actions as "kind pool [worker]" lines, sorted.
func show(as []Action) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = strings.TrimSpace(fmt.Sprintf("%s %s %s", a.Kind, a.Pool, a.WorkerID))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func TestReactiveDecide(t *testing.T) {
	unhealthy := pool("a", 2, 4, 0, 1000)
	unhealthy.Healthy = false
	full := pool("a", 0, 4, 0, 1000)
	full.CanCreate = 1
	eph := pool("e", 0, 5, 0, 1000)
	eph.Config.Ephemeral = true
	slow := pool("a", 0, 2, 0, 1000)
	slow.Config.StartupDelay = time.Minute
	tests := []struct {
		name   string
		pools  []PoolSnapshot
		demand []Demand
		want   string
	}{
		{"nothing to do", []PoolSnapshot{with(pool("a", 1, 2, 0, 1000), w("a1", WorkerIdle, 0))}, nil, ""},
		{"start min", []PoolSnapshot{pool("a", 2, 4, 0, 1000)}, nil, "create a; create a"},
		{"pending count toward min", []PoolSnapshot{with(pool("a", 2, 4, 0, 1000), w("a1", WorkerPending, 0))}, nil, "create a"},
		{"min never above max", []PoolSnapshot{with(pool("a", 3, 3, 0, 1000), w("a1", WorkerBusy, 1), w("a2", WorkerDraining, 1))}, nil, "create a"},
		{"unhealthy provider creates nothing", []PoolSnapshot{unhealthy}, []Demand{{CPUMilli: 100, Jobs: 3}}, ""},
		{"demand goes to the cheapest pool that fits", []PoolSnapshot{pool("cheap", 0, 4, 0.1, 1000), pool("dear", 0, 4, 1, 1000)},
			[]Demand{{CPUMilli: 1000, Jobs: 2}}, "create cheap; create cheap"},
		{"labels must fit", []PoolSnapshot{pool("cheap", 0, 4, 0.1, 1000), pool("gpu", 0, 4, 1, 1000, "gpu")},
			[]Demand{{CPUMilli: 500, Labels: []string{"gpu"}, Jobs: 1}}, "create gpu"},
		{"shape must fit", []PoolSnapshot{pool("small", 0, 4, 0.1, 1000), pool("big", 0, 4, 1, 4000)},
			[]Demand{{CPUMilli: 2000, Jobs: 3}}, "create big; create big"},
		{"demand fitting no pool is left", []PoolSnapshot{pool("a", 0, 4, 0, 1000)}, []Demand{{CPUMilli: 8000, Jobs: 1}}, ""},
		{"spill to the next cheapest at max", []PoolSnapshot{pool("cheap", 0, 1, 0.1, 1000), pool("dear", 0, 4, 1, 1000)},
			[]Demand{{CPUMilli: 1000, Jobs: 3}}, "create cheap; create dear; create dear"},
		{"several jobs per worker", []PoolSnapshot{pool("a", 0, 4, 0, 1000)}, []Demand{{CPUMilli: 250, Jobs: 5}}, "create a; create a"},
		{"ephemeral: one job per worker", []PoolSnapshot{eph}, []Demand{{CPUMilli: 250, Jobs: 3}}, "create e; create e; create e"},
		{"starting workers serve demand first", []PoolSnapshot{with(pool("a", 0, 4, 0, 1000), w("a1", WorkerPending, 0))},
			[]Demand{{CPUMilli: 1000, Jobs: 2}}, "create a"},
		{"workers made for min serve demand", []PoolSnapshot{pool("a", 1, 4, 0, 1000)}, []Demand{{CPUMilli: 1000, Jobs: 1}}, "create a"},
		{"provider capacity bounds creation", []PoolSnapshot{full}, []Demand{{CPUMilli: 1000, Jobs: 3}}, "create a"},
		{"idle past timeout is drained", []PoolSnapshot{with(pool("a", 1, 4, 0, 1000), idleSince("a1", 2*time.Minute), idleSince("a2", 3*time.Minute))},
			nil, "drain a a2"},
		{"idle below timeout stays", []PoolSnapshot{with(pool("a", 0, 4, 0, 1000), idleSince("a1", 30*time.Second))}, nil, ""},
		{"never below min", []PoolSnapshot{with(pool("a", 2, 4, 0, 1000), idleSince("a1", time.Hour), idleSince("a2", time.Hour))}, nil, ""},
		{"no drain while demand waits for the pool", []PoolSnapshot{with(pool("a", 0, 4, 0, 1000), idleSince("a1", time.Hour), w("a2", WorkerBusy, 1))},
			[]Demand{{CPUMilli: 1000, Jobs: 1}}, ""},
		{"drained and done is terminated", []PoolSnapshot{with(pool("a", 0, 4, 0, 1000), w("a1", WorkerDraining, 0), w("a2", WorkerDraining, 1))},
			nil, "terminate a a1"},
		{"lost and exited are terminated, min replaces them", []PoolSnapshot{with(pool("a", 2, 4, 0, 1000), w("a1", WorkerLost, 0), w("a2", WorkerExited, 0))},
			nil, "create a; create a; terminate a a1; terminate a a2"},
		// Its replacement comes in the next decision, once it is gone.
		{"a worker that never joins is terminated", []PoolSnapshot{with(slow, WorkerSnapshot{ID: "a1", State: WorkerPending, CreatedAt: t0.Add(-4 * time.Minute)})},
			[]Demand{{CPUMilli: 1000, Jobs: 1}}, "terminate a a1"},
		{"drain requested does not count as active", []PoolSnapshot{with(pool("a", 1, 4, 0, 1000), WorkerSnapshot{ID: "a1", State: WorkerIdle, DrainRequested: true})},
			nil, "create a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := show(Reactive{}.Decide(Snapshot{Now: t0, Pools: tt.pools, Demand: tt.demand}))
			if got != tt.want {
				t.Errorf("actions:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestReactiveNeverExceedsMax is a property: whatever the snapshot, a
// decision never takes a pool above max nor, by draining, below min.
func TestReactiveNeverExceedsMax(t *testing.T) {
	states := []WorkerState{WorkerPending, WorkerIdle, WorkerBusy, WorkerDraining, WorkerLost, WorkerExited}
	for seed := uint64(0); seed < 2000; seed++ {
		r := newRand(seed)
		min, max := r.intn(4), 1+r.intn(5)
		if min > max {
			min = max
		}
		p := pool("a", min, max, 0, 1000)
		n := r.intn(max + 1)
		for i := 0; i < n; i++ {
			x := w(fmt.Sprint("a", i), states[r.intn(len(states))], r.intn(2))
			if x.State == WorkerIdle && x.Jobs == 0 {
				x.IdleSince = t0.Add(-time.Duration(r.intn(120)) * time.Second)
			}
			p.Workers = append(p.Workers, x)
		}
		demand := []Demand{{CPUMilli: int64(1 + r.intn(1500)), Jobs: r.intn(6)}}
		as := Reactive{}.Decide(Snapshot{Now: t0, Pools: []PoolSnapshot{p}, Demand: demand})
		creates, drains := 0, 0
		for _, a := range as {
			switch a.Kind {
			case ActionCreate:
				creates++
			case ActionDrain:
				drains++
			}
		}
		if n+creates > max {
			t.Fatalf("seed %d: %d workers + %d created > max %d (%s)", seed, n, creates, max, show(as))
		}
		active := 0
		for _, x := range p.Workers {
			if x.State == WorkerPending || x.State == WorkerIdle || x.State == WorkerBusy {
				active++
			}
		}
		if drains > 0 && active-drains < min {
			t.Fatalf("seed %d: drains %d of %d active, below min %d", seed, drains, active, min)
		}
	}
}

// newRand is a small deterministic generator (splitmix64).
type splitmix struct{ s uint64 }

func newRand(seed uint64) *splitmix { return &splitmix{seed} }

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *splitmix) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}

// TestReactiveContainerWorkers: queued jobs with an image get a worker
// each, made for their container, on a pool whose provider makes such
// workers (ContainerWorkers) even without the docker label; a worker
// starting for the same container is used first, one for another
// container is not; such workers do not count toward min, and one left
// idle is drained even at min.
func TestReactiveContainerWorkers(t *testing.T) {
	ca := &Container{Key: "a", Image: "busybox"}
	cb := &Container{Key: "b", Image: "alpine"}
	k8s := pool("k", 1, 5, 0, 1000, "k8s")
	k8s.Containers = true
	keyed := func(id, key string, st WorkerState) WorkerSnapshot {
		x := w(id, st, 0)
		x.Container = key
		if st == WorkerIdle {
			x.IdleSince = t0.Add(-time.Hour)
		}
		return x
	}
	demand := func(c *Container, jobs int) Demand {
		return Demand{CPUMilli: 500, Labels: []string{"docker", "k8s"}, Jobs: jobs, Container: c}
	}
	creates := func(as []Action) map[string]int {
		out := map[string]int{}
		for _, a := range as {
			if a.Kind != ActionCreate {
				continue
			}
			k := ""
			if a.Container != nil {
				k = a.Container.Key
			}
			out[k]++
		}
		return out
	}
	tests := []struct {
		name   string
		pool   PoolSnapshot
		demand []Demand
		want   map[string]int // creates by container key ("" for the pool's own)
		drains []string
	}{
		{"a worker per job", with(k8s, w("k0", WorkerIdle, 0)), []Demand{demand(ca, 2), demand(cb, 1)}, map[string]int{"a": 2, "b": 1}, nil},
		{"one starting for the container counts", with(k8s, w("k0", WorkerIdle, 0), keyed("ka", "a", WorkerPending)), []Demand{demand(ca, 2), demand(cb, 1)}, map[string]int{"a": 1, "b": 1}, nil},
		{"container workers are not min", with(k8s, keyed("ka", "a", WorkerBusy)), nil, map[string]int{"": 1}, nil},
		{"an idle container worker goes at min", with(k8s, w("k0", WorkerIdle, 0), keyed("ka", "a", WorkerIdle)), nil, map[string]int{}, []string{"ka"}},
		{"max bounds them", with(k8s, w("k0", WorkerBusy, 1), w("k1", WorkerBusy, 1), w("k2", WorkerBusy, 1)), []Demand{demand(ca, 5)}, map[string]int{"a": 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Snapshot{Now: t0, Pools: []PoolSnapshot{tt.pool}, Demand: tt.demand}
			as := Reactive{}.Decide(s)
			if got := creates(as); !maps.Equal(got, tt.want) {
				t.Errorf("creates %v, want %v (%s)", got, tt.want, show(as))
			}
			var drains []string
			for _, a := range as {
				if a.Kind == ActionDrain {
					drains = append(drains, a.WorkerID)
				}
			}
			if !slices.Equal(drains, tt.drains) {
				t.Errorf("drains %v, want %v", drains, tt.drains)
			}
			if n := len(FitsNoPool(s)); n != 0 {
				t.Errorf("%d demand groups fit no pool", n)
			}
		})
	}
	// A pool of a provider that makes no container workers, without an
	// engine: jobs with an image fit it not.
	plain := pool("p", 0, 5, 0, 1000, "k8s")
	s := Snapshot{Now: t0, Pools: []PoolSnapshot{plain}, Demand: []Demand{demand(ca, 1)}}
	if as := (Reactive{}).Decide(s); len(as) != 0 || len(FitsNoPool(s)) != 1 {
		t.Errorf("a pool without container workers: %s, %d unplaceable", show(as), len(FitsNoPool(s)))
	}
}
