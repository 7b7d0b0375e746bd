package workers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// ManagerConfig wires a Manager.
type ManagerConfig struct {
	Pools    *poolsfile.Config
	Registry *Registry // the providers the pools may name (required)
	Env      ProviderEnv
	// View is the orchestrator's live view (workers, demand).
	View func() *orchestrator.View
	// Scaler decides; Reactive{} by default.
	Scaler Scaler
	// Interval between two decisions (1s).
	Interval time.Duration
	Call     CallOptions
	// HistoryStep is how often a point of each pool's recent history is
	// kept (DefaultHistoryStep when zero); HistoryLen how many points
	// (DefaultHistoryLen when zero). See History.
	HistoryStep time.Duration
	HistoryLen  int
	// Registerer receives the metrics (none if nil).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Metrics of the worker manager and its providers.
type Metrics struct {
	calls   *prometheus.CounterVec
	circuit *prometheus.GaugeVec
	workers *prometheus.GaugeVec
	demand  *prometheus.GaugeVec
	actions *prometheus.CounterVec
}

// NewMetrics registers the metrics on r (if not nil).
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_worker_provider_calls_total",
			Help: "Calls to worker providers by pool, operation and result (ok, retry, error, circuit_open, canceled)."}, []string{"pool", "op", "result"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_worker_provider_circuit",
			Help: "Circuit breaker of each pool's provider: 0 closed, 1 half-open, 2 open (the provider keeps failing)."}, []string{"pool"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_workers",
			Help: "Workers the manager owns, by pool and state."}, []string{"pool", "state"}),
		demand: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_demand_jobs",
			Help: "Queued jobs that fit no running worker, by the pool they were given to."}, []string{"pool"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_pool_actions_total",
			Help: "Actions of the worker manager by pool and kind (create, drain, terminate)."}, []string{"pool", "action"}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.calls, m.circuit, m.workers, m.demand, m.actions} {
			if err := r.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					slog.Warn("register worker metrics", "err", err)
				}
			}
		}
	}
	return m
}

// Manager keeps the pools between their min and max (see Reactive). One
// goroutine (Run) owns its state; Pools and Close may be called from any.
type Manager struct {
	cfg     ManagerConfig
	log     *slog.Logger
	metrics *Metrics
	pools   map[string]*managedPool
	names   []string
	events  chan Event
	// life ends when Close is called; stop ends it. Run starts only while
	// it lasts, and ends when it does.
	life context.Context
	stop context.CancelFunc
	done chan struct{}
	ops  sync.WaitGroup // provider calls in flight

	mu      sync.Mutex // guards running, owned and status; never held during a provider call
	running bool       // Run has started (and closes done when it returns)
	owned   map[string]*ownedWorker
	status  []PoolStatus
	// stuck is the demand that fits no pool, and warned when each kind of
	// it was last logged.
	stuck  []Demand
	warned map[string]time.Time
	// history is each pool's recent points, oldest first (at most
	// cfg.HistoryLen); historyAt when the last point was kept.
	history   map[string][]HistoryPoint
	historyAt time.Time
}

// Defaults of ManagerConfig.HistoryStep and HistoryLen: an hour of points.
const (
	DefaultHistoryStep = 15 * time.Second
	DefaultHistoryLen  = 240
)

// HistoryPoint is a pool at one decision: what `GET
// /api/v1/pools/{pool}/history` returns and the pools page plots.
type HistoryPoint = wire.PoolPoint

type managedPool struct {
	cfg      poolsfile.PoolConfig
	p        *Guarded
	labels   []string
	capacity int // last known, -1 unknown
	// containers: the provider makes workers per container
	// (ContainerWorkers).
	containers bool
	// listed is set once the workers of a previous run were looked for
	// (or the provider cannot list); guarded by mu.
	listed bool
}

type ownedWorker struct {
	id          string
	pool        string
	createdAt   time.Time
	created     bool // the provider's Create returned
	idleSince   time.Time
	drain       bool // drain requested
	exited      bool
	terminating bool
	adopted     bool   // found at start, made by a previous run
	container   string // made for the jobs of this container key
}

// PoolStatus is what `hodei pools` shows of a pool: the API's type, made
// here and served as it is.
type PoolStatus = wire.Pool

// NewManager makes the providers of the pools. Start it with Run.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Pools == nil || len(cfg.Pools.Pools) == 0 {
		return nil, errors.New("worker manager: no pools")
	}
	if cfg.View == nil {
		return nil, errors.New("worker manager: no orchestrator view")
	}
	if cfg.Registry == nil {
		return nil, errors.New("worker manager: no provider registry")
	}
	if cfg.Scaler == nil {
		cfg.Scaler = Reactive{}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.HistoryStep <= 0 {
		cfg.HistoryStep = DefaultHistoryStep
	}
	if cfg.HistoryLen <= 0 {
		cfg.HistoryLen = DefaultHistoryLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Env.Logger == nil {
		cfg.Env.Logger = cfg.Logger
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger.With("component", "workers"), metrics: NewMetrics(cfg.Registerer),
		pools: map[string]*managedPool{}, events: make(chan Event, 1024), done: make(chan struct{}),
		owned: map[string]*ownedWorker{}, history: map[string][]HistoryPoint{},
	}
	m.life, m.stop = context.WithCancel(context.Background())
	for _, pc := range cfg.Pools.Pools {
		p, err := cfg.Registry.New(pc, cfg.Env)
		if err != nil {
			return nil, err
		}
		labels := append(slices.Clone(pc.Shape.Labels), runtime.GOOS, runtime.GOARCH)
		if pc.Provider == "local" && cfg.Env.Containers != nil {
			labels = append(labels, pipeline.DockerLabel)
		}
		cw, ok := p.(ContainerWorkers)
		m.pools[pc.Name] = &managedPool{cfg: pc, p: Guard(p, pc.Name, cfg.Call, m.metrics, m.log), labels: labels, capacity: -1,
			containers: ok && cw.MakesContainerWorkers()}
		m.names = append(m.names, pc.Name)
	}
	sort.Strings(m.names)
	m.publishStatus(nil)
	return m, nil
}

// Run decides and acts every interval until ctx ends or Close is called. It
// returns at once if Close was called before it; call it once.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	if m.life.Err() != nil {
		m.mu.Unlock()
		return
	}
	m.running = true
	m.mu.Unlock()
	defer close(m.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.life, cancel)()
	for _, name := range m.names {
		go m.forward(ctx, m.pools[name].p.Events())
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	m.async(func() { m.refreshCapacity(ctx) })
	// The workers a previous run left are counted before the first
	// decision, so that none is created twice.
	m.adopt(ctx)
	m.reconcile(ctx)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case e := <-m.events:
			m.onEvent(e)
		case <-t.C:
			if n%30 == 0 {
				m.async(func() { m.refreshCapacity(ctx) })
				if m.unlisted() {
					m.async(func() { m.adopt(ctx) })
				}
			}
			m.reconcile(ctx)
		}
	}
}

func (m *Manager) forward(ctx context.Context, ch <-chan Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-ch:
			select {
			case m.events <- e:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (m *Manager) onEvent(e Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.owned[e.ID]
	if w == nil {
		return
	}
	switch e.Kind {
	case EventExited:
		w.exited = true
		m.log.Info("worker exited", "worker", e.ID, "pool", e.Pool, "exit_code", e.ExitCode, "err", e.Err)
	case EventGone:
		delete(m.owned, e.ID)
	}
}

// reconcile takes a snapshot, asks the scaler, and starts the actions.
func (m *Manager) reconcile(ctx context.Context) {
	now := time.Now()
	v := m.cfg.View()
	byID := map[string]*orchestrator.WorkerView{}
	if v != nil {
		for i := range v.Workers {
			byID[v.Workers[i].ID] = &v.Workers[i]
		}
	}
	snap := Snapshot{Now: now}
	if v != nil {
		for _, d := range v.Demand {
			dd := Demand{CPUMilli: d.CPUMilli, Memory: d.Memory, GPU: d.GPU, Labels: d.Labels, Jobs: d.Jobs}
			if c := d.Container; c != nil {
				dd.Container = &Container{Key: c.Key, Image: c.Image, Services: c.Services}
			}
			snap.Demand = append(snap.Demand, dd)
		}
	}
	m.mu.Lock()
	for _, name := range m.names {
		mp := m.pools[name]
		ps := PoolSnapshot{Config: mp.cfg, Labels: mp.labels, Healthy: mp.p.Breaker().State(now) != BreakerOpen, CanCreate: mp.capacity,
			Containers: mp.containers}
		for _, w := range m.owned {
			if w.pool != name || w.terminating {
				continue
			}
			ws := WorkerSnapshot{ID: w.id, CreatedAt: w.createdAt, DrainRequested: w.drain, State: WorkerPending, Container: w.container}
			if wv := byID[w.id]; wv != nil {
				ws.Jobs = len(wv.Jobs)
				switch wv.State {
				case state.WorkerIdle:
					ws.State = WorkerIdle
				case state.WorkerBusy:
					ws.State = WorkerBusy
				case state.WorkerDraining:
					ws.State = WorkerDraining
				case state.WorkerLost, state.WorkerGone:
					ws.State = WorkerLost
				}
			}
			if w.exited {
				ws.State = WorkerExited
			}
			if ws.State == WorkerIdle && ws.Jobs == 0 {
				if w.idleSince.IsZero() {
					w.idleSince = now
				}
			} else {
				w.idleSince = time.Time{}
			}
			ws.IdleSince = w.idleSince
			ps.Workers = append(ps.Workers, ws)
		}
		sort.Slice(ps.Workers, func(i, k int) bool { return ps.Workers[i].ID < ps.Workers[k].ID })
		snap.Pools = append(snap.Pools, ps)
	}
	m.mu.Unlock()

	actions := m.cfg.Scaler.Decide(snap)
	for _, a := range actions {
		m.apply(ctx, a, now)
	}
	m.publishStatus(&snap)
}

// apply starts one action; provider calls run on their own goroutines so
// that a slow provider does not hold the others up.
func (m *Manager) apply(ctx context.Context, a Action, now time.Time) {
	mp := m.pools[a.Pool]
	if mp == nil {
		m.log.Error("scaler named an unknown pool", "pool", a.Pool)
		return
	}
	if _, ok := mp.p.Unwrap().(Drainer); a.Kind == ActionDrain && !ok {
		// A worker that cannot be told to drain would stay idle with its
		// drain requested, and never be removed: terminate it (a job
		// placed on it at that moment loses its attempt, as on a lost
		// worker).
		a.Kind, a.Reason = ActionTerminate, a.Reason+"; its provider cannot drain"
	}
	if m.metrics != nil {
		m.metrics.actions.WithLabelValues(a.Pool, string(a.Kind)).Inc()
	}
	switch a.Kind {
	case ActionCreate:
		id := newWorkerID(a.Pool)
		spec := NewWorkerSpec(mp.cfg, id, a.Container)
		ow := &ownedWorker{id: id, pool: a.Pool, createdAt: now, container: spec.Container}
		m.mu.Lock()
		m.owned[id] = ow
		m.mu.Unlock()
		m.log.Info("creating worker", "pool", a.Pool, "worker", id, "container", spec.Container, "reason", a.Reason)
		m.async(func() {
			_, err := mp.p.Create(ctx, spec)
			m.mu.Lock()
			defer m.mu.Unlock()
			if err != nil {
				m.log.Error("create worker failed", "pool", a.Pool, "worker", id, "err", err)
				delete(m.owned, id)
				// It may exist in part: make sure it does not.
				m.async(func() { _ = mp.p.Unwrap().Terminate(context.WithoutCancel(ctx), id) })
				return
			}
			if w := m.owned[id]; w != nil {
				w.created = true
			}
		})
	case ActionDrain:
		m.mu.Lock()
		w := m.owned[a.WorkerID]
		if w != nil {
			w.drain = true
		}
		m.mu.Unlock()
		m.log.Info("draining worker", "pool", a.Pool, "worker", a.WorkerID, "reason", a.Reason)
		m.async(func() {
			if err := mp.p.Drain(ctx, a.WorkerID); err != nil && !errors.Is(err, ErrNotFound) {
				m.log.Warn("drain worker failed; it will be asked again", "worker", a.WorkerID, "err", err)
				m.mu.Lock()
				if w := m.owned[a.WorkerID]; w != nil {
					w.drain = false
				}
				m.mu.Unlock()
			}
		})
	case ActionTerminate:
		m.mu.Lock()
		w := m.owned[a.WorkerID]
		if w == nil || w.terminating {
			m.mu.Unlock()
			return
		}
		w.terminating = true
		m.mu.Unlock()
		m.terminate(ctx, mp, a)
	}
}

// NewWorkerSpec is what the Manager asks the provider of pool for, for
// worker id: the pool's shape, labels and image; with a container c, a
// worker for one job of that container, which runs in the job's image
// with its services beside it, takes that job (its exclusive container
// label keeps others away; it has the docker label that jobs with an
// image ask for) and leaves.
func NewWorkerSpec(pool poolsfile.PoolConfig, id string, c *Container) WorkerSpec {
	sh := pool.Shape
	spec := WorkerSpec{ID: id, Pool: pool.Name, Image: pool.Docker.Image,
		Resources: Resources{CPUMilli: sh.CPUMilli, Memory: sh.Memory, GPU: sh.GPU},
		Labels:    slices.Clone(sh.Labels), Ephemeral: pool.Ephemeral}
	if c != nil {
		spec.Image, spec.Container, spec.Services, spec.Ephemeral = c.Image, c.Key, c.Services, true
		spec.Labels = append(spec.Labels, pipeline.DockerLabel, pipeline.ContainerLabel(c.Key))
	}
	return spec
}

// terminate calls the provider to terminate a worker marked terminating.
func (m *Manager) terminate(ctx context.Context, mp *managedPool, a Action) {
	m.log.Info("terminating worker", "pool", a.Pool, "worker", a.WorkerID, "reason", a.Reason)
	m.async(func() {
		err := mp.p.Terminate(ctx, a.WorkerID)
		m.mu.Lock()
		defer m.mu.Unlock()
		if err != nil {
			m.log.Warn("terminate worker failed; it will be tried again", "worker", a.WorkerID, "err", err)
			if w := m.owned[a.WorkerID]; w != nil {
				w.terminating = false
			}
			return
		}
		delete(m.owned, a.WorkerID)
	})
}

func (m *Manager) async(f func()) {
	m.ops.Add(1)
	go func() {
		defer m.ops.Done()
		f()
	}()
}

func (m *Manager) publishStatus(snap *Snapshot) {
	var assigned map[string]PoolDemand
	if snap != nil {
		assigned = AssignDemand(*snap)
	}
	out := make([]PoolStatus, 0, len(m.names))
	now := time.Now()
	capacity := map[string]int{}
	adopted := map[string]int{}
	m.mu.Lock()
	for name, mp := range m.pools {
		capacity[name] = mp.capacity
	}
	for _, w := range m.owned {
		if w.adopted && !w.terminating {
			adopted[w.pool]++
		}
	}
	m.mu.Unlock()
	for _, name := range m.names {
		mp := m.pools[name]
		st := PoolStatus{Name: name, Provider: mp.cfg.Provider, Min: mp.cfg.Min, Max: mp.cfg.Max, Ephemeral: mp.cfg.Ephemeral,
			CostPerHour: mp.cfg.CostPerHour, Circuit: mp.p.Breaker().State(now).String(), LastError: mp.p.LastError(),
			Demand: assigned[name].Jobs, Capacity: capacity[name], Adopted: adopted[name]}
		if snap != nil {
			for _, ps := range snap.Pools {
				if ps.Config.Name != name {
					continue
				}
				st.Size = len(ps.Workers)
				for _, w := range ps.Workers {
					switch w.State {
					case WorkerPending:
						st.Pending++
					case WorkerIdle:
						st.Idle++
					case WorkerBusy:
						st.Busy++
					case WorkerDraining:
						st.Draining++
					}
				}
			}
		}
		if f, ok := m.cfg.Scaler.(Forecaster); ok {
			if n, ok := f.Forecast(name); ok {
				st.Forecast = &n
			}
		}
		if a, ok := m.cfg.Scaler.(Accountant); ok {
			if acct, ok := a.Account(name); ok {
				st.Account = &acct
			}
		}
		if m.metrics != nil {
			m.metrics.workers.WithLabelValues(name, "pending").Set(float64(st.Pending))
			m.metrics.workers.WithLabelValues(name, "idle").Set(float64(st.Idle))
			m.metrics.workers.WithLabelValues(name, "busy").Set(float64(st.Busy))
			m.metrics.workers.WithLabelValues(name, "draining").Set(float64(st.Draining))
			m.metrics.demand.WithLabelValues(name).Set(float64(st.Demand))
		}
		out = append(out, st)
	}
	var stuck []Demand
	if snap != nil {
		stuck = FitsNoPool(*snap)
	}
	for _, d := range stuck {
		k := fmt.Sprintf("%d/%d/%d/%v", d.CPUMilli, d.Memory, d.GPU, d.Labels)
		if at, ok := m.warned[k]; ok && now.Sub(at) < 10*time.Minute {
			continue
		}
		if m.warned == nil {
			m.warned = map[string]time.Time{}
		}
		m.warned[k] = now
		m.log.Warn("queued jobs fit no running worker and no pool's shape: they wait for an agent that fits",
			"jobs", d.Jobs, "cpu_milli", d.CPUMilli, "memory", d.Memory, "gpu", d.GPU, "labels", d.Labels)
	}
	m.mu.Lock()
	m.status, m.stuck = out, stuck
	if snap != nil && now.Sub(m.historyAt) >= m.cfg.HistoryStep {
		m.historyAt = now
		for _, st := range out {
			pt := HistoryPoint{At: now, Demand: st.Demand, Workers: st.Size, Busy: st.Busy, Forecast: st.Forecast}
			if st.Account != nil {
				pt.WorkerHours, pt.Cost = &st.Account.WorkerHours, &st.Account.Cost
			}
			h := append(m.history[st.Name], pt)
			if len(h) > m.cfg.HistoryLen {
				h = slices.Clone(h[len(h)-m.cfg.HistoryLen:])
			}
			m.history[st.Name] = h
		}
	}
	m.mu.Unlock()
}

// History returns the recent points of a pool, oldest first: one each
// ManagerConfig.HistoryStep, the last HistoryLen of them; false if there is
// no such pool.
func (m *Manager) History(pool string) ([]HistoryPoint, bool) {
	if m.pools[pool] == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.history[pool]), true
}

// SchedulerPools returns the pools as the scheduler sees them when it says
// why a job waits (orchestrator.Config.Pools): the shape and labels of the
// workers each would create, and its size and max as of the last decision.
func (m *Manager) SchedulerPools() []scheduler.Pool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]scheduler.Pool, 0, len(m.names))
	for i, name := range m.names {
		mp := m.pools[name]
		sh := mp.cfg.Shape
		p := scheduler.Pool{Name: name, Labels: mp.labels, Max: mp.cfg.Max, Containers: mp.containers,
			Capacity: scheduler.Resources{CPUMilli: sh.CPUMilli, Memory: sh.Memory, GPU: sh.GPU}}
		if i < len(m.status) && m.status[i].Name == name {
			p.Size, p.Starting = m.status[i].Size, m.status[i].Pending
		}
		out = append(out, p)
	}
	return out
}

// Unplaceable returns the queued demand that fits no running worker and no
// pool's shape, as of the last decision.
func (m *Manager) Unplaceable() []Demand {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.stuck)
}

// Pools returns the state of every pool, as of the last decision.
func (m *Manager) Pools() []PoolStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.status)
}

// Close stops deciding, waits for the calls in flight, and terminates every
// worker the manager owns (they belong to this server).
func (m *Manager) Close(ctx context.Context) {
	// Once stop has returned, a Run that has not marked itself running
	// never will: it sees life ended under mu.
	m.stop()
	m.mu.Lock()
	running := m.running
	m.mu.Unlock()
	if running {
		<-m.done
	}
	m.ops.Wait()
	m.mu.Lock()
	ids := make([]*ownedWorker, 0, len(m.owned))
	for _, w := range m.owned {
		ids = append(ids, w)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.pools[w.pool].p.Unwrap().Terminate(ctx, w.id); err != nil {
				m.log.Warn("terminate worker at shutdown", "worker", w.id, "err", err)
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	clear(m.owned)
	m.mu.Unlock()
}

// unlisted says whether a pool's provider still has to be asked for the
// workers of a previous run (its List failed).
func (m *Manager) unlisted() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mp := range m.pools {
		if !mp.listed {
			return true
		}
	}
	return false
}

// adopt asks the providers that can list (Lister) for the workers a
// previous run of this server created and left, and makes them the
// manager's own: the live ones count in their pool (the running first,
// then the oldest, at most max with the workers the pool has), so that
// none is created twice and idle ones are scaled down as usual; those that
// exited, or are over max, are terminated. A pool whose List fails is
// asked again later (Run: every 30 decisions).
func (m *Manager) adopt(ctx context.Context) {
	for _, name := range m.names {
		mp := m.pools[name]
		m.mu.Lock()
		done := mp.listed
		m.mu.Unlock()
		if done {
			continue
		}
		lister, ok := mp.p.Lister()
		if !ok {
			m.mu.Lock()
			mp.listed = true
			m.mu.Unlock()
			continue
		}
		found, err := lister.List(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("list the workers of a previous run; asking again later", "pool", name, "err", err)
			}
			continue
		}
		m.adoptPool(ctx, mp, found)
	}
}

func (m *Manager) adoptPool(ctx context.Context, mp *managedPool, found []ListedWorker) {
	name := mp.cfg.Name
	rank := func(p Phase) int {
		switch p {
		case PhaseRunning:
			return 0
		case PhaseCreating:
			return 1
		}
		return 2
	}
	sort.SliceStable(found, func(i, k int) bool {
		a, b := found[i], found[k]
		if ra, rb := rank(a.Status.Phase), rank(b.Status.Phase); ra != rb {
			return ra < rb
		}
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.Ref.ID < b.Ref.ID
	})
	now := time.Now()
	var terminate []Action
	adopted := 0
	m.mu.Lock()
	size := 0
	for _, w := range m.owned {
		if w.pool == name && !w.terminating && !w.exited {
			size++
		}
	}
	for _, f := range found {
		id := f.Ref.ID
		if id == "" || m.owned[id] != nil {
			continue
		}
		// The join window of an adopted worker starts now: its agent
		// reconnects to the restarted server by itself.
		w := &ownedWorker{id: id, pool: name, createdAt: now, created: true, adopted: true}
		m.owned[id] = w
		switch {
		case rank(f.Status.Phase) == 2:
			w.exited, w.terminating = true, true
			terminate = append(terminate, Action{Kind: ActionTerminate, Pool: name, WorkerID: id,
				Reason: "left by a previous run, " + string(f.Status.Phase) + ": " + f.Status.Detail})
		case size >= mp.cfg.Max:
			w.terminating = true
			terminate = append(terminate, Action{Kind: ActionTerminate, Pool: name, WorkerID: id,
				Reason: fmt.Sprintf("left by a previous run, over the pool's max (%d)", mp.cfg.Max)})
		default:
			size++
			adopted++
		}
	}
	mp.listed = true
	m.mu.Unlock()
	if len(found) > 0 {
		m.log.Info("found the workers of a previous run", "pool", name, "found", len(found), "adopted", adopted, "terminated", len(terminate))
	}
	for _, a := range terminate {
		if m.metrics != nil {
			m.metrics.actions.WithLabelValues(a.Pool, string(a.Kind)).Inc()
		}
		m.terminate(ctx, mp, a)
	}
}

// refreshCapacity asks each provider what it can still create; the next
// decisions respect it. Run calls it at start and every 30 decisions.
func (m *Manager) refreshCapacity(ctx context.Context) {
	for _, name := range m.names {
		mp := m.pools[name]
		c, err := mp.p.Capacity(ctx)
		m.mu.Lock()
		if err != nil {
			mp.capacity = -1
		} else {
			mp.capacity = c.Workers
		}
		m.mu.Unlock()
	}
}

func newWorkerID(pool string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s", pool, hex.EncodeToString(b[:]))
}
