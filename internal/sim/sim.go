package sim

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
)

// Epoch is the virtual time of a workload's time zero: a Monday, so that the
// generator's day 0 is a weekday.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options configures a simulation run.
type Options struct {
	Policy    scheduler.Policy
	Aging     time.Duration    // passed to the engine (0: its default)
	Lookahead int              // passed to the engine (0: its default)
	Scorer    scheduler.Scorer // set on every worker ("": the engine's default)
	// Engine holds the hodei policy's tuning knobs (WorkWeight, Slack,
	// PathWeight, FairShareDelay); zero values take the engine's defaults.
	Engine scheduler.Config
	// Check verifies every assignment as it is made (the job is queued and
	// its needs are done, the worker is up and has room for it) and that
	// every job ran exactly once; a violation ends the run with an error.
	Check bool
	// Churn is the rate of worker losses, per hour of virtual time, over
	// the whole fleet (a Poisson process; 0 for none). A lost worker's
	// running jobs go back to the queue; it returns after ChurnDown.
	Churn     float64
	ChurnDown time.Duration // default 10 minutes
	Seed      uint64        // for churn
	// Pools, when set, replace the workload's fleet by pools whose workers
	// a scaler starts and stops (see pools.go).
	Pools *PoolOptions
	// Shards, when above 1, splits the fleet and the jobs among that many
	// independent engines, split as ShardBy says (ShardByPool when empty;
	// see shard.go). 0 and 1 run one engine.
	Shards  int
	ShardBy string
}

// Job states.
const (
	jobWaiting uint8 = iota // needs not done, or pipeline not admitted
	jobQueued
	jobRunning
	jobDone
)

// Event kinds.
const (
	evFinish uint8 = iota
	evLose
	evReturn
)

type event struct {
	t       int64 // virtual ns from time zero
	seq     uint64
	idx     int32 // job, or worker for evReturn
	kind    uint8
	attempt uint8
}

type eventHeap []event

func (h eventHeap) less(a, b int) bool {
	if h[a].t != h[b].t {
		return h[a].t < h[b].t
	}
	return h[a].seq < h[b].seq
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// Sim is one simulation run of a workload against a fresh engine. Use Run,
// or NewSim and Step to look at the engine between instants.
type Sim struct {
	w *Workload
	o Options
	// Eng is the engine (the first shard's with Options.Shards).
	Eng *scheduler.Engine
	adm *scheduler.Admission

	engs      []*scheduler.Engine // one per shard; engs[0] is Eng
	shard     *shardPlan
	shardWall []time.Duration // time in each engine's Plan

	now int64

	// per job
	state    []uint8
	attempts []uint8
	left     []int32 // needs not yet done
	ready    []int64
	start    []int64
	end      []int64
	worker   []int32 // where the job runs (or last ran)
	pipeOf   []int32
	depStart []int32
	deps     []int32
	idWidth  int

	// per pipeline
	pleft   []int32
	pfinish []int64
	arrive  []int32 // pipelines in arrival order
	next    int
	held    map[string]int32 // pipelines waiting for admission

	// per worker
	wIndex map[string]int32
	wSpec  []scheduler.WorkerSpec
	wUp    []bool
	wUsed  [][3]int64 // check mode
	wJobs  []int32    // running jobs per worker (check mode)
	up     int

	events eventHeap
	seq    uint64
	rng    *rand.Rand

	done      int
	started   int64 // wall clock, ns
	wall      time.Duration
	planWall  time.Duration
	planCalls int
	busy      [3]float64 // cpu-milli-seconds, MiB-seconds, gpu-seconds
	requeued  int
	losses    int
	firstT    int64
	lastT     int64
	err       error
	maxQueued int
	queued    int
	running   int
	starts    int

	// Resources in use, integrated over the arrival window (first to last
	// submit) for the utilization while pipelines arrive.
	inUse     [3]float64
	inUseArea [3]float64
	lastSeen  int64
	lastSub   int64
	hourArea  [][3]float64 // resources in use integrated per hour from the first submit

	pools *poolSim // nil without Options.Pools
}

// integrate accumulates the resources in use from the last instant to t.
func (s *Sim) integrate(t int64) {
	if s.lastSeen < s.lastSub {
		dt := float64(min(t, s.lastSub)-s.lastSeen) / 1e9
		for k := range s.inUse {
			s.inUseArea[k] += s.inUse[k] * dt
		}
	}
	const hour = int64(time.Hour)
	for from := s.lastSeen; from < t; {
		h := (from - s.firstT) / hour
		to := min(t, s.firstT+(h+1)*hour)
		for int(h) >= len(s.hourArea) {
			s.hourArea = append(s.hourArea, [3]float64{})
		}
		dt := float64(to-from) / 1e9
		for k := range s.inUse {
			s.hourArea[h][k] += s.inUse[k] * dt
		}
		from = to
	}
	s.lastSeen = t
}

// NewSim prepares a run of w under o.
func NewSim(w *Workload, o Options) (*Sim, error) {
	if o.Policy == "" {
		o.Policy = scheduler.PolicyHodei
	}
	switch o.Policy {
	case scheduler.PolicyFIFO, scheduler.PolicyLeastLoaded, scheduler.PolicyHodei:
	default:
		return nil, fmt.Errorf("policy %q: want fifo, least-loaded or hodei", o.Policy)
	}
	if o.ChurnDown <= 0 {
		o.ChurnDown = 10 * time.Minute
	}
	if o.Churn < 0 || math.IsNaN(o.Churn) || math.IsInf(o.Churn, 0) {
		return nil, fmt.Errorf("churn %v: want a rate of losses per hour, 0 or more", o.Churn)
	}
	if len(w.Workers) == 0 || len(w.Pipelines) == 0 {
		return nil, fmt.Errorf("empty workload: %d workers, %d pipelines", len(w.Workers), len(w.Pipelines))
	}
	var pools *poolSim
	if o.Pools != nil {
		if o.Churn > 0 {
			return nil, fmt.Errorf("churn does not go with pools")
		}
		var err error
		if w, pools, err = poolFleet(w, o.Pools); err != nil {
			return nil, err
		}
	}
	if o.Shards > 1 && pools != nil {
		return nil, fmt.Errorf("shards do not go with pools")
	}
	shards, err := partition(w, max(o.Shards, 1), o.ShardBy)
	if err != nil {
		return nil, err
	}
	engs := make([]*scheduler.Engine, shards.n)
	for i := range engs {
		engs[i] = scheduler.NewEngine(scheduler.Config{Policy: o.Policy, Aging: cmp.Or(o.Aging, o.Engine.Aging), Lookahead: o.Lookahead,
			WorkWeight: o.Engine.WorkWeight, PathWeight: o.Engine.PathWeight, WorkKnee: o.Engine.WorkKnee, FairShareDelay: o.Engine.FairShareDelay,
			Slack: o.Engine.Slack, Window: o.Engine.Window})
	}
	n := w.NumJobs()
	s := &Sim{
		w: w, o: o,
		Eng:       engs[0],
		engs:      engs,
		shard:     shards,
		shardWall: make([]time.Duration, shards.n),
		adm:       scheduler.NewAdmission(),

		state:    make([]uint8, n),
		attempts: make([]uint8, n),
		left:     make([]int32, n),
		ready:    make([]int64, n),
		start:    make([]int64, n),
		end:      make([]int64, n),
		worker:   make([]int32, n),
		pipeOf:   w.pipelineOf(),
		idWidth:  len(strconv.Itoa(max(n-1, 0))),

		pleft:   make([]int32, len(w.Pipelines)),
		pfinish: make([]int64, len(w.Pipelines)),
		held:    map[string]int32{},

		wIndex: make(map[string]int32, len(w.Workers)),
		wUp:    make([]bool, len(w.Workers)),
		rng:    rand.New(rand.NewPCG(o.Seed, 0x5eed)),
	}
	s.pools = pools
	s.depStart, s.deps = w.dependents()
	for j := range n {
		s.left[j] = w.NeedStart[j+1] - w.NeedStart[j]
		s.worker[j] = -1
	}
	for i, p := range w.Pipelines {
		s.pleft[i] = p.Jobs
	}
	s.arrive = make([]int32, len(w.Pipelines))
	for i := range s.arrive {
		s.arrive[i] = int32(i)
	}
	sort.SliceStable(s.arrive, func(a, b int) bool {
		return w.Pipelines[s.arrive[a]].Submit < w.Pipelines[s.arrive[b]].Submit
	})
	s.firstT = int64(w.Pipelines[s.arrive[0]].Submit)
	s.lastSub = int64(w.Pipelines[s.arrive[len(s.arrive)-1]].Submit)
	s.lastSeen = s.firstT
	if o.Check {
		s.wUsed = make([][3]int64, len(w.Workers))
		s.wJobs = make([]int32, len(w.Workers))
	}
	s.wSpec = make([]scheduler.WorkerSpec, len(w.Workers))
	for i, wk := range w.Workers {
		if _, dup := s.wIndex[wk.ID]; dup {
			return nil, fmt.Errorf("two workers have id %q", wk.ID)
		}
		s.wIndex[wk.ID] = int32(i)
		ls := slices.Clone(wk.Labels)
		sort.Strings(ls)
		s.wSpec[i] = scheduler.WorkerSpec{
			ID: wk.ID, Pool: strings.Join(ls, ";"), Labels: wk.Labels, Scorer: o.Scorer,
			Capacity: scheduler.Resources{CPUMilli: wk.CPUMilli, Memory: wk.MemoryMiB << 20, GPU: wk.GPU},
		}
		s.workerEng(int32(i)).UpsertWorker(s.wSpec[i])
		s.wUp[i] = true
	}
	s.up = len(w.Workers)
	if s.pools != nil {
		s.initPools()
	}
	if o.Churn > 0 {
		s.scheduleLoss(s.firstT)
	}
	return s, nil
}

// workerEng returns the engine of worker i's shard.
func (s *Sim) workerEng(i int32) *scheduler.Engine { return s.engs[s.shard.worker[i]] }

// jobEng returns the engine of job j's shard.
func (s *Sim) jobEng(j int32) *scheduler.Engine { return s.engs[s.shard.job[j]] }

// JobID is the engine's ID of job j: its global number, zero-padded so that
// IDs sort in submission order.
func (s *Sim) JobID(j int32) string {
	d := strconv.Itoa(int(j))
	if len(d) >= s.idWidth {
		return d
	}
	return strings.Repeat("0", s.idWidth-len(d)) + d
}

func (s *Sim) jobIndex(id string) (int32, bool) {
	v, err := strconv.ParseInt(id, 10, 32)
	if err != nil || v < 0 || int(v) >= len(s.state) {
		return 0, false
	}
	return int32(v), true
}

// Now returns the virtual time of the last instant processed.
func (s *Sim) Now() time.Time { return Epoch.Add(time.Duration(s.now)) }

func (s *Sim) push(t int64, kind uint8, idx int32, attempt uint8) {
	s.seq++
	s.events.push(event{t: t, seq: s.seq, idx: idx, kind: kind, attempt: attempt})
}

func (s *Sim) scheduleLoss(from int64) {
	gap := s.rng.ExpFloat64() / s.o.Churn * float64(time.Hour)
	s.push(from+int64(gap)+1, evLose, -1, 0)
}

// Finished reports whether every job has run.
func (s *Sim) Finished() bool { return s.done == len(s.state) }

// Step processes every event of the next instant, then asks the engine for
// a plan and starts its assignments. It returns false when the run is over
// (or failed: see Err).
func (s *Sim) Step() bool {
	if s.err != nil || s.Finished() {
		return false
	}
	if s.started == 0 {
		s.started = time.Now().UnixNano()
	}
	t := int64(math.MaxInt64)
	if s.next < len(s.arrive) {
		t = int64(s.w.Pipelines[s.arrive[s.next]].Submit)
	}
	if len(s.events) > 0 {
		t = min(t, s.events[0].t)
	}
	if t == math.MaxInt64 {
		s.err = fmt.Errorf("stalled at %s: %d of %d jobs done, %d queued that no worker takes",
			time.Duration(s.now), s.done, len(s.state), s.queued)
		return false
	}
	s.integrate(t)
	s.now = t
	now := s.Now()
	// Arrivals first (they were submitted before anything that happens at
	// their instant), then other events in the order they were scheduled.
	for s.next < len(s.arrive) && int64(s.w.Pipelines[s.arrive[s.next]].Submit) == t {
		s.arrival(s.arrive[s.next], now)
		s.next++
	}
	for len(s.events) > 0 && s.events[0].t == t {
		e := s.events.pop()
		switch e.kind {
		case evFinish:
			s.finish(e.idx, e.attempt, now)
		case evLose:
			s.lose(now)
		case evReturn:
			s.wUp[e.idx] = true
			s.up++
			s.workerEng(e.idx).UpsertWorker(s.wSpec[e.idx])
		default:
			s.poolEvent(e)
		}
		if s.err != nil {
			return false
		}
	}
	s.plan(now)
	s.wall = time.Duration(time.Now().UnixNano() - s.started)
	if s.err == nil && !s.Finished() && s.running == 0 && s.next == len(s.arrive) && s.up == len(s.wUp) && s.pools == nil {
		s.err = fmt.Errorf("stalled at %s: %d of %d jobs done, %d queued that the engine does not place on an idle fleet",
			time.Duration(s.now), s.done, len(s.state), s.queued)
	}
	return s.err == nil && !s.Finished()
}

// Err returns what ended the run early, if anything.
func (s *Sim) Err() error { return s.err }

func (s *Sim) arrival(p int32, now time.Time) {
	pl := &s.w.Pipelines[p]
	if pl.Group >= 0 && !s.adm.Admit(pl.ID, s.w.Groups[pl.Group], int(pl.Limit)) {
		s.held[pl.ID] = p
		return
	}
	s.admit(p, now)
}

func (s *Sim) admit(p int32, now time.Time) {
	w := s.w
	pl := &w.Pipelines[p]
	spec := scheduler.PipelineSpec{ID: pl.ID, Tenant: w.Tenants[pl.Tenant], Priority: int(pl.Priority),
		Jobs: make([]scheduler.JobSpec, pl.Jobs)}
	ids := make([]string, pl.Jobs)
	for k := range ids {
		ids[k] = s.JobID(pl.First + int32(k))
	}
	for k := range spec.Jobs {
		j := pl.First + int32(k)
		var needs []string
		if nn := w.JobNeeds(j); len(nn) > 0 {
			needs = make([]string, len(nn))
			for i, n := range nn {
				needs[i] = ids[n-pl.First]
			}
		}
		spec.Jobs[k] = scheduler.JobSpec{
			ID: ids[k], Key: w.Strings[w.JobKey[j]], Needs: needs, Labels: w.Labels[w.JobLabels[j]],
			Priority: int(pl.Priority),
			Request: scheduler.Resources{CPUMilli: int64(w.JobCPU[j]), Memory: int64(w.JobMemMiB[j]) << 20,
				GPU: int(w.JobGPU[j])},
		}
	}
	if len(s.engs) == 1 {
		s.Eng.AddPipeline(spec)
	} else {
		// Each shard gets the pipeline with its own jobs (needs on another
		// shard's jobs are unknown to it, and the engine ignores them).
		for sh, e := range s.engs {
			part := spec
			part.Jobs = nil
			for k := range spec.Jobs {
				if s.shard.job[pl.First+int32(k)] == int32(sh) {
					part.Jobs = append(part.Jobs, spec.Jobs[k])
				}
			}
			if len(part.Jobs) > 0 {
				e.AddPipeline(part)
			}
		}
	}
	for k := range spec.Jobs {
		if j := pl.First + int32(k); s.left[j] == 0 {
			s.enqueue(j, ids[k], now)
		}
	}
}

func (s *Sim) enqueue(j int32, id string, now time.Time) {
	s.state[j] = jobQueued
	s.ready[j] = s.now
	s.queued++
	s.maxQueued = max(s.maxQueued, s.queued)
	if s.pools != nil {
		s.pools.jobQueued(s.w, j, 1)
	}
	s.jobEng(j).Enqueue(id, now)
}

func (s *Sim) finish(j int32, attempt uint8, now time.Time) {
	if s.attempts[j] != attempt || s.state[j] != jobRunning {
		return // the job was requeued after its worker was lost
	}
	w := s.w
	s.state[j] = jobDone
	s.running--
	s.end[j] = s.now
	s.lastT = s.now
	s.done++
	s.account(j, w.JobDur[j])
	id := s.JobID(j)
	s.jobEng(j).Finish(id, now, w.JobDur[j], true)
	for _, d := range s.deps[s.depStart[j]:s.depStart[j+1]] {
		s.left[d]--
		if s.left[d] == 0 {
			s.enqueue(d, s.JobID(d), now)
		}
	}
	p := s.pipeOf[j]
	s.pleft[p]--
	if s.pleft[p] > 0 {
		return
	}
	pl := &w.Pipelines[p]
	s.pfinish[p] = s.now
	if len(s.engs) == 1 {
		s.Eng.RemovePipeline(pl.ID)
	} else {
		var in uint64 // shards holding some of its jobs
		for j := pl.First; j < pl.First+pl.Jobs; j++ {
			in |= 1 << s.shard.job[j]
		}
		for sh, e := range s.engs {
			if in&(1<<sh) != 0 {
				e.RemovePipeline(pl.ID)
			}
		}
	}
	if pl.Group >= 0 {
		for _, id := range s.adm.Done(pl.ID) {
			q, ok := s.held[id]
			if !ok {
				s.err = fmt.Errorf("admission admitted unknown run %q", id)
				return
			}
			delete(s.held, id)
			s.admit(q, now)
		}
	}
}

// account adds the resources job j held for d to the busy totals and takes
// them off its worker.
func (s *Sim) account(j int32, d time.Duration) {
	w := s.w
	sec := d.Seconds()
	s.inUse[0] -= float64(w.JobCPU[j])
	s.inUse[1] -= float64(w.JobMemMiB[j])
	s.inUse[2] -= float64(w.JobGPU[j])
	s.busy[0] += float64(w.JobCPU[j]) * sec
	s.busy[1] += float64(w.JobMemMiB[j]) * sec
	s.busy[2] += float64(w.JobGPU[j]) * sec
	if wi := s.worker[j]; wi >= 0 && s.pools != nil {
		if s.pools.jobEnded(wi, s.now) {
			s.push(s.now, evExit, wi, s.pools.slots[wi].gen)
		}
	}
	if wi := s.worker[j]; wi >= 0 && s.o.Check {
		u := &s.wUsed[wi]
		u[0] -= int64(w.JobCPU[j])
		u[1] -= int64(w.JobMemMiB[j])
		u[2] -= int64(w.JobGPU[j])
		s.wJobs[wi]--
	}
}

func (s *Sim) lose(now time.Time) {
	if s.Finished() {
		return
	}
	s.scheduleLoss(s.now)
	if s.up == 0 {
		return
	}
	k := s.rng.IntN(s.up)
	wi := int32(-1)
	for i, u := range s.wUp {
		if u {
			if k == 0 {
				wi = int32(i)
				break
			}
			k--
		}
	}
	s.wUp[wi] = false
	s.up--
	s.losses++
	for _, id := range s.workerEng(wi).RemoveWorker(s.w.Workers[wi].ID) {
		j, ok := s.jobIndex(id)
		if !ok || s.state[j] != jobRunning {
			s.err = fmt.Errorf("engine returned job %q from lost worker %s, which is not running", id, s.w.Workers[wi].ID)
			return
		}
		if s.o.Check && s.worker[j] != wi {
			s.err = fmt.Errorf("engine says job %q ran on lost worker %s; it runs on %s", id, s.w.Workers[wi].ID, s.w.Workers[s.worker[j]].ID)
			return
		}
		s.running--
		ran := s.now - s.start[j]
		s.account(j, time.Duration(ran))
		s.attempts[j]++
		s.requeued++
		queuedBefore := s.start[j] - s.ready[j]
		s.enqueue(j, id, now)
		s.ready[j] = s.now - queuedBefore // wait counts the time queued in every attempt
	}
	if s.o.Check && s.wJobs[wi] != 0 {
		s.err = fmt.Errorf("lost worker %s still had %d jobs the engine did not return", s.w.Workers[wi].ID, s.wJobs[wi])
		return
	}
	s.push(s.now+int64(s.o.ChurnDown), evReturn, wi, 0)
}

func (s *Sim) plan(now time.Time) {
	for sh := range s.engs {
		s.planShard(int32(sh), now)
		if s.err != nil {
			return
		}
	}
	s.planCalls++
}

// planShard asks shard sh's engine for a plan and starts its assignments.
func (s *Sim) planShard(sh int32, now time.Time) {
	t0 := time.Now()
	as := s.engs[sh].Plan(now)
	d := time.Since(t0)
	s.planWall += d
	s.shardWall[sh] += d
	w := s.w
	for _, a := range as {
		j, ok := s.jobIndex(a.JobID)
		wi, wok := s.wIndex[a.WorkerID]
		switch {
		case !ok:
			s.err = fmt.Errorf("at %s the engine assigned unknown job %q", time.Duration(s.now), a.JobID)
		case !wok:
			s.err = fmt.Errorf("at %s the engine assigned job %q to unknown worker %q", time.Duration(s.now), a.JobID, a.WorkerID)
		case s.state[j] != jobQueued:
			s.err = fmt.Errorf("at %s the engine assigned job %q, which is not queued (state %d)", time.Duration(s.now), a.JobID, s.state[j])
		case !s.wUp[wi]:
			s.err = fmt.Errorf("at %s the engine assigned job %q to lost worker %q", time.Duration(s.now), a.JobID, a.WorkerID)
		case s.shard.job[j] != sh || s.shard.worker[wi] != sh:
			s.err = fmt.Errorf("at %s the engine of shard %d assigned job %q of shard %d to worker %q of shard %d",
				time.Duration(s.now), sh, a.JobID, s.shard.job[j], a.WorkerID, s.shard.worker[wi])
		}
		if s.err != nil {
			return
		}
		if s.o.Check {
			if s.left[j] != 0 {
				s.err = fmt.Errorf("at %s job %s started before its needs were done", time.Duration(s.now), w.DescribeJob(int(s.pipeOf[j]), j))
				return
			}
			u := &s.wUsed[wi]
			u[0] += int64(w.JobCPU[j])
			u[1] += int64(w.JobMemMiB[j])
			u[2] += int64(w.JobGPU[j])
			s.wJobs[wi]++
			wk := &w.Workers[wi]
			if u[0] > wk.CPUMilli || u[1] > wk.MemoryMiB || u[2] > int64(wk.GPU) || !hasAll(wk.Labels, w.Labels[w.JobLabels[j]]) {
				s.err = fmt.Errorf("at %s job %s placed on worker %s over its capacity or without its labels: in use cpu %d/%d, memory %d/%d MiB, gpu %d/%d, labels %v want %v",
					time.Duration(s.now), w.DescribeJob(int(s.pipeOf[j]), j), wk.ID, u[0], wk.CPUMilli, u[1], wk.MemoryMiB, u[2], wk.GPU, wk.Labels, w.Labels[w.JobLabels[j]])
				return
			}
		}
		s.inUse[0] += float64(w.JobCPU[j])
		s.inUse[1] += float64(w.JobMemMiB[j])
		s.inUse[2] += float64(w.JobGPU[j])
		s.state[j] = jobRunning
		s.queued--
		s.running++
		s.starts++
		s.start[j] = s.now
		s.worker[j] = wi
		if s.pools != nil {
			s.pools.jobStarted(w, wi, j, s.now)
		}
		s.push(s.now+int64(w.JobDur[j]), evFinish, j, s.attempts[j])
	}
}

// Run simulates w under o and returns the metrics.
func Run(w *Workload, o Options) (*Result, error) {
	s, err := NewSim(w, o)
	if err != nil {
		return nil, err
	}
	for s.Step() {
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.Result()
}
