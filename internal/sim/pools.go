package sim

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Autoscale modes of a simulation with pools.
const (
	AutoscaleStatic     = "static"     // every pool at max all the time
	AutoscaleReactive   = "reactive"   // workers.Reactive (through autoscale)
	AutoscalePredictive = "predictive" // autoscale with forecasts
)

// PoolOptions replace a workload's fleet by pools of workers that a scaler
// starts and stops (`hodei sim --pools FILE --autoscale MODE`).
type PoolOptions struct {
	Config *poolsfile.Config
	Mode   string
	// Period is the virtual time between two scaler decisions (default
	// 30 s).
	Period time.Duration
	// Autoscale tunes the scaler (Predictive is set from Mode).
	Autoscale autoscale.Options
}

// Pool worker states.
const (
	slotOff uint8 = iota
	slotPending
	slotUp
	slotDraining
)

// Event kinds of pools (after evReturn).
const (
	evScale uint8 = evReturn + 1 + iota
	evJoin
	evExit // an ephemeral worker leaves after its job
)

type slot struct {
	pool     int
	state    uint8
	gen      uint8
	jobs     int32
	created  int64
	idleFrom int64
}

type demandKey struct{ cpu, mem, gpu, labels int32 }

type poolAcct struct{ alive, idle int64 } // ns

// poolSim is the part of a Sim that runs the pools.
type poolSim struct {
	o      PoolOptions
	scaler *autoscale.Scaler // nil when static
	slots  []slot
	first  []int // first slot of each pool
	acct   []poolAcct
	queued map[demandKey]int
}

// poolFleet returns a copy of w whose fleet is the pools' workers at max:
// one slot per worker a pool may have.
func poolFleet(w *Workload, o *PoolOptions) (*Workload, *poolSim, error) {
	if o.Config == nil || len(o.Config.Pools) == 0 {
		return nil, nil, fmt.Errorf("pools: no pool")
	}
	switch o.Mode {
	case AutoscaleStatic, AutoscaleReactive, AutoscalePredictive:
	default:
		return nil, nil, fmt.Errorf("autoscale %q: want static, reactive or predictive", o.Mode)
	}
	if o.Period <= 0 {
		o.Period = 30 * time.Second
	}
	if w.GPUMilli {
		return nil, nil, fmt.Errorf("pools: the workload counts GPUs in thousandths; pools count whole GPUs")
	}
	ps := &poolSim{o: *o, queued: map[demandKey]int{}, acct: make([]poolAcct, len(o.Config.Pools))}
	if o.Mode != AutoscaleStatic {
		ao := o.Autoscale
		ao.Predictive = o.Mode == AutoscalePredictive
		ps.scaler = autoscale.New(ao)
	}
	cp := *w
	cp.Workers = nil
	for k, pc := range o.Config.Pools {
		ps.first = append(ps.first, len(cp.Workers))
		for i := range pc.Max {
			cp.Workers = append(cp.Workers, Worker{ID: fmt.Sprintf("%s-%04d", pc.Name, i+1), CPUMilli: pc.Shape.CPUMilli,
				MemoryMiB: pc.Shape.Memory >> 20, GPU: pc.Shape.GPU, Labels: pc.Shape.Labels, CostPerHour: pc.CostPerHour})
			ps.slots = append(ps.slots, slot{pool: k})
		}
	}
	if p, j, bad := cp.Unplaceable(); bad {
		return nil, nil, fmt.Errorf("job %s fits no pool's shape", cp.DescribeJob(p, j))
	}
	return &cp, ps, nil
}

// initPools takes down the workers a dynamic pool does not start with and
// schedules the first decision at the first submit.
func (s *Sim) initPools() {
	p := s.pools
	for i := range p.slots {
		sl := &p.slots[i]
		if p.o.Config.Pools[sl.pool].Ephemeral {
			// One job, then the worker exits (static: it is replaced at
			// once, so it takes one job at a time).
			s.wSpec[i].MaxJobs = 1
			if p.scaler == nil {
				s.Eng.UpsertWorker(s.wSpec[i])
			}
		}
		if p.scaler == nil {
			sl.state, sl.created, sl.idleFrom = slotUp, s.firstT, s.firstT
			continue
		}
		s.Eng.RemoveWorker(s.w.Workers[i].ID)
		s.wUp[i] = false
		s.up--
	}
	if p.scaler != nil {
		s.push(s.firstT, evScale, -1, 0)
	}
}

func (s *Sim) poolEvent(e event) {
	p := s.pools
	switch e.kind {
	case evScale:
		s.scale()
		if !s.Finished() && s.err == nil {
			s.push(s.now+int64(p.o.Period), evScale, -1, 0)
		}
	case evJoin:
		sl := &p.slots[e.idx]
		if sl.gen != e.attempt || sl.state != slotPending {
			return
		}
		sl.state = slotUp
		s.wUp[e.idx] = true
		s.up++
		s.Eng.UpsertWorker(s.wSpec[e.idx])
	case evExit:
		sl := &p.slots[e.idx]
		if sl.gen != e.attempt || sl.state != slotUp || sl.jobs != 0 {
			return
		}
		s.Eng.RemoveWorker(s.w.Workers[e.idx].ID)
		s.wUp[e.idx] = false
		s.up--
		p.acct[sl.pool].alive += s.now - sl.created
		p.acct[sl.pool].idle += s.now - sl.idleFrom
		sl.state = slotOff
		sl.gen++
	}
}

// jobQueued and jobStarted keep the demand of queued jobs; jobStarted and
// jobEnded the jobs of each pool worker.
func (p *poolSim) jobQueued(w *Workload, j int32, n int) {
	k := demandKey{w.JobCPU[j], w.JobMemMiB[j], w.JobGPU[j], w.JobLabels[j]}
	p.queued[k] += n
	if p.queued[k] == 0 {
		delete(p.queued, k)
	}
}

func (p *poolSim) jobStarted(w *Workload, wi int32, j int32, now int64) {
	p.jobQueued(w, j, -1)
	sl := &p.slots[wi]
	if sl.jobs == 0 {
		p.acct[sl.pool].idle += now - sl.idleFrom
	}
	sl.jobs++
}

// jobEnded returns whether the worker now exits (an ephemeral one, with
// a scaler to start others).
func (p *poolSim) jobEnded(wi int32, now int64) bool {
	sl := &p.slots[wi]
	sl.jobs--
	if sl.jobs == 0 {
		sl.idleFrom = now
	}
	return sl.jobs == 0 && p.scaler != nil && p.o.Config.Pools[sl.pool].Ephemeral
}

func (s *Sim) snapshot() workers.Snapshot {
	p := s.pools
	at := func(ns int64) time.Time { return Epoch.Add(time.Duration(ns)) }
	snap := workers.Snapshot{Now: s.Now()}
	for k, pc := range p.o.Config.Pools {
		ps := workers.PoolSnapshot{Config: pc, Labels: pc.Shape.Labels, Healthy: true, CanCreate: -1}
		for i := p.first[k]; i < p.first[k]+pc.Max; i++ {
			sl := &p.slots[i]
			ws := workers.WorkerSnapshot{ID: s.w.Workers[i].ID, Jobs: int(sl.jobs), CreatedAt: at(sl.created)}
			switch sl.state {
			case slotOff:
				continue
			case slotPending:
				ws.State = workers.WorkerPending
			case slotUp:
				ws.State = workers.WorkerBusy
				if sl.jobs == 0 {
					ws.State, ws.IdleSince = workers.WorkerIdle, at(sl.idleFrom)
				}
			case slotDraining:
				ws.State, ws.DrainRequested = workers.WorkerDraining, true
			}
			ps.Workers = append(ps.Workers, ws)
		}
		snap.Pools = append(snap.Pools, ps)
	}
	keys := make([]demandKey, 0, len(p.queued))
	for k := range p.queued {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, k int) bool {
		a, b := keys[i], keys[k]
		if a.cpu != b.cpu {
			return a.cpu > b.cpu
		}
		if a.mem != b.mem {
			return a.mem > b.mem
		}
		if a.gpu != b.gpu {
			return a.gpu > b.gpu
		}
		return a.labels < b.labels
	})
	for _, k := range keys {
		snap.Demand = append(snap.Demand, workers.Demand{CPUMilli: int64(k.cpu), Memory: int64(k.mem) << 20, GPU: int(k.gpu),
			Labels: s.w.Labels[k.labels], Jobs: p.queued[k]})
	}
	return snap
}

// scale asks the scaler what to do and does it.
func (s *Sim) scale() {
	p := s.pools
	acts := p.scaler.Decide(s.snapshot())
	index := map[string]int{}
	for k, pc := range p.o.Config.Pools {
		index[pc.Name] = k
	}
	created := 0
	for _, a := range acts {
		k, ok := index[a.Pool]
		if !ok {
			s.err = fmt.Errorf("at %s the scaler acted on unknown pool %q", time.Duration(s.now), a.Pool)
			return
		}
		pc := p.o.Config.Pools[k]
		switch a.Kind {
		case workers.ActionCreate:
			i := -1
			for x := p.first[k]; x < p.first[k]+pc.Max; x++ {
				if p.slots[x].state == slotOff {
					i = x
					break
				}
			}
			if i < 0 {
				s.err = fmt.Errorf("at %s the scaler created a worker in pool %s, which is at max (%d)", time.Duration(s.now), pc.Name, pc.Max)
				return
			}
			sl := &p.slots[i]
			sl.state, sl.created, sl.idleFrom, sl.jobs = slotPending, s.now, s.now, 0
			sl.gen++
			s.push(s.now+int64(pc.StartupDelay), evJoin, int32(i), sl.gen)
			created++
		case workers.ActionDrain, workers.ActionTerminate:
			i, ok := s.wIndex[a.WorkerID]
			if !ok || p.slots[i].pool != k || p.slots[i].state == slotOff {
				s.err = fmt.Errorf("at %s the scaler acted on unknown worker %q of pool %s", time.Duration(s.now), a.WorkerID, pc.Name)
				return
			}
			sl := &p.slots[i]
			if a.Kind == workers.ActionDrain {
				// Only idle workers are drained: they leave the engine at
				// once and take no new job.
				if sl.state == slotUp && sl.jobs == 0 {
					sl.state = slotDraining
					s.Eng.RemoveWorker(a.WorkerID)
					s.wUp[i] = false
					s.up--
				}
				continue
			}
			if sl.jobs > 0 {
				s.err = fmt.Errorf("at %s the scaler terminated worker %s, which runs %d jobs", time.Duration(s.now), a.WorkerID, sl.jobs)
				return
			}
			if sl.state == slotUp {
				s.Eng.RemoveWorker(a.WorkerID)
				s.wUp[i] = false
				s.up--
			}
			p.acct[k].alive += s.now - sl.created
			p.acct[k].idle += s.now - sl.idleFrom
			sl.state = slotOff
			sl.gen++
		}
	}
	if created == 0 && s.running == 0 && s.queued > 0 && s.next == len(s.arrive) {
		for _, sl := range p.slots {
			// A starting worker, or one that joined at this instant and
			// has not been planned on yet, may still take the jobs.
			if sl.state == slotPending || sl.state == slotUp && sl.jobs == 0 {
				return
			}
		}
		s.err = fmt.Errorf("stalled at %s: %d jobs queued, none running, and the scaler starts no worker", time.Duration(s.now), s.queued)
	}
}

// PoolResult is one pool's part of a run with pools.
type PoolResult struct {
	Pool            string
	WorkerHours     float64
	IdleWorkerHours float64
	Cost            float64
	// Forecast, for predictive runs: the model, and the WAPE and MAPE of
	// its 15-minute forecasts.
	Model        string
	ForecastWAPE float64
	ForecastMAPE float64
	Predictive   bool
}

// poolResult fills the pool fields of r; the run ended at lastT.
func (s *Sim) poolResult(r *Result) {
	p := s.pools
	acct := append([]poolAcct(nil), p.acct...)
	for _, sl := range p.slots {
		if sl.state == slotOff {
			continue
		}
		acct[sl.pool].alive += s.lastT - sl.created
		if sl.jobs == 0 {
			acct[sl.pool].idle += s.lastT - sl.idleFrom
		}
	}
	var stats map[string]autoscale.PoolStats
	if p.scaler != nil {
		stats = p.scaler.Stats()
	}
	r.Autoscale = p.o.Mode
	r.WorkerHours, r.IdleWorkerHours, r.Cost = 0, 0, 0
	var all struct{ abs, act float64 }
	var capTime [3]float64 // resource-seconds the live workers offered
	for k, pc := range p.o.Config.Pools {
		alive := float64(acct[k].alive) / float64(time.Second)
		capTime[0] += alive * float64(pc.Shape.CPUMilli)
		capTime[1] += alive * float64(pc.Shape.Memory>>20)
		capTime[2] += alive * float64(pc.Shape.GPU)
		pr := PoolResult{Pool: pc.Name, WorkerHours: float64(acct[k].alive) / float64(time.Hour),
			IdleWorkerHours: float64(acct[k].idle) / float64(time.Hour)}
		pr.Cost = pr.WorkerHours * pc.CostPerHour
		if st, ok := stats[pc.Name]; ok && p.o.Mode == AutoscalePredictive {
			pr.Model, pr.ForecastWAPE, pr.ForecastMAPE, pr.Predictive = st.Model, st.Accuracy.WAPE(), st.Accuracy.MAPE(), st.Predictive
			all.abs += st.Accuracy.AbsErr
			all.act += st.Accuracy.Actual
		}
		r.WorkerHours += pr.WorkerHours
		r.IdleWorkerHours += pr.IdleWorkerHours
		r.Cost += pr.Cost
		r.Detail.Pools = append(r.Detail.Pools, pr)
	}
	// Utilization of pools is over the workers that were alive, not over
	// every worker the pools may have.
	util := [3]*float64{&r.Detail.CPUUtil, &r.Detail.MemUtil, &r.Detail.GPUUtil}
	r.Utilization = 0
	for i := range capTime {
		*util[i] = 0
		if capTime[i] > 0 {
			*util[i] = s.busy[i] / capTime[i]
		}
		r.Utilization = max(r.Utilization, *util[i])
	}
	r.Utilization = math.Round(r.Utilization*1e4) / 1e4
	if p.o.Mode == AutoscalePredictive && all.act > 0 {
		v := math.Round(all.abs/all.act*1e4) / 1e4
		r.ForecastMAPE = &v
	}
	r.WorkerHours, r.IdleWorkerHours, r.Cost = round3(r.WorkerHours), round3(r.IdleWorkerHours), round3(r.Cost)
}

// WritePools writes the pools' part of a readable report (nothing for a run
// without pools).
func WritePools(out io.Writer, r *Result) {
	if r.Autoscale != "" {
		io.WriteString(out, describePools(r))
	}
}

func describePools(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "autoscale  %s: %.1f worker-hours, %.1f idle (%.0f%%), cost %.2f", r.Autoscale, r.WorkerHours, r.IdleWorkerHours,
		100*r.IdleWorkerHours/max(r.WorkerHours, 1e-9), r.Cost)
	if r.ForecastMAPE != nil {
		fmt.Fprintf(&b, ", forecast WAPE at 15 min %.1f%%", 100**r.ForecastMAPE)
	}
	b.WriteString("\n")
	for _, pr := range r.Detail.Pools {
		fmt.Fprintf(&b, "  pool %-10s %8.1f worker-hours %8.1f idle  cost %8.2f", pr.Pool, pr.WorkerHours, pr.IdleWorkerHours, pr.Cost)
		if pr.Model != "" {
			fmt.Fprintf(&b, "  %s model, WAPE %.1f%% MAPE %.1f%%", pr.Model, 100*pr.ForecastWAPE, 100*pr.ForecastMAPE)
		}
		b.WriteString("\n")
	}
	return b.String()
}
