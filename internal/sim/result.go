package sim

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/forecast"
)

// Result is what one run measured. The JSON fields are those of
// "hodei sim --json"; Detail holds more for the readable report.
type Result struct {
	Policy            string  `json:"policy"`
	Pipelines         int     `json:"pipelines"`
	Jobs              int     `json:"jobs"`
	MeanPipelineS     float64 `json:"mean_pipeline_s"`
	P50PipelineS      float64 `json:"p50_pipeline_s"`
	P95PipelineS      float64 `json:"p95_pipeline_s"`
	MeanWaitS         float64 `json:"mean_wait_s"`
	P50WaitS          float64 `json:"p50_wait_s"`
	P95WaitS          float64 `json:"p95_wait_s"`
	P99WaitS          float64 `json:"p99_wait_s"`
	MaxTenantSlowdown float64 `json:"max_tenant_slowdown"`
	PriorityP95WaitS  float64 `json:"priority_p95_wait_s"`
	MakespanS         float64 `json:"makespan_s"`
	Utilization       float64 `json:"utilization"`
	WorkerHours       float64 `json:"worker_hours"`
	Decisions         uint64  `json:"decisions"`
	DecisionsPerSec   float64 `json:"decisions_per_sec"`
	WallS             float64 `json:"wall_s"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	// With pools (see pools.go): the mode, the idle part of WorkerHours,
	// the cost, and the WAPE of the predictive scaler's 15-minute forecasts.
	Autoscale       string   `json:"autoscale,omitempty"`
	IdleWorkerHours float64  `json:"idle_worker_hours,omitempty"`
	Cost            float64  `json:"cost,omitempty"`
	ForecastMAPE    *float64 `json:"forecast_mape,omitempty"`
	// With Options.Shards above 1: how the run was split, and what each
	// shard was given and did.
	ShardBy string      `json:"shard_by,omitempty"`
	Shards  []ShardLoad `json:"shards,omitempty"`

	// Tenants and LabelPools break the run down per tenant and per job
	// label set (the pool a job asks for: "amd64", "gpu", "" for none).
	Tenants    map[string]TenantJSON `json:"tenants"`
	LabelPools map[string]PoolJSON   `json:"pools"`

	Detail Detail `json:"-"`
}

// TenantJSON is a tenant's part of a Result in JSON.
type TenantJSON struct {
	Pipelines     int     `json:"pipelines"`
	MeanPipelineS float64 `json:"mean_pipeline_s"`
	Slowdown      float64 `json:"slowdown"`
	P95WaitS      float64 `json:"p95_wait_s"`
}

// PoolJSON is the part of a Result of the jobs that ask for one label set.
type PoolJSON struct {
	Jobs      int     `json:"jobs"`
	MeanWaitS float64 `json:"mean_wait_s"`
	P95WaitS  float64 `json:"p95_wait_s"`
	P99WaitS  float64 `json:"p99_wait_s"`
}

// Detail is the part of a Result that --json leaves out.
type Detail struct {
	Tenants     []TenantResult
	WorstTenant string
	CPUUtil     float64 // busy cpu-seconds / (fleet cpu × makespan)
	MemUtil     float64
	GPUUtil     float64
	// ArrivalUtil is the utilization (of the busiest resource) from the
	// first submit to the last: while the workload arrives, before the
	// tail of the last pipelines.
	ArrivalUtil float64
	// PeakHourUtil is the highest utilization of each resource (cpu,
	// memory, gpu) over any whole hour from the first submit.
	PeakHourUtil  [3]float64
	PriorityJobs  int
	P99WaitS      float64
	MaxWaitS      float64
	PlanCalls     int
	PlanWallS     float64
	MaxQueued     int
	Requeued      int
	WorkerLosses  int
	FleetCost     float64 // cost_per_hour summed over the fleet × makespan
	MeanCriticalS float64 // mean critical path of the pipelines (true durations)
	P95CriticalS  float64 // and its 95th percentile: no schedule completes faster
	Pools         []PoolResult
	// LabelPools is LabelPools of the Result, sorted by label set.
	LabelPools []LabelPoolResult
}

// LabelPoolResult is the waits of the jobs that ask for one label set.
type LabelPoolResult struct {
	Labels string // joined with ";"
	PoolJSON
}

// TenantResult is one tenant's share of a Result.
type TenantResult struct {
	Tenant        string
	Pipelines     int
	MeanPipelineS float64
	MeanCriticalS float64
	Slowdown      float64 // MeanPipelineS / MeanCriticalS
	P95WaitS      float64
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted x by the
// nearest-rank method: the smallest value with at least p of the values at
// or below it.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// round3 keeps JSON readable: three decimals.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// PeakRSSMB returns the peak resident set size of this process (VmHWM), in
// MiB, or 0 where /proc is not available.
func PeakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// Result computes the metrics of a finished run.
func (s *Sim) Result() (*Result, error) {
	if s.err != nil {
		return nil, s.err
	}
	w := s.w
	if !s.Finished() {
		return nil, fmt.Errorf("run not finished: %d of %d jobs done", s.done, len(s.state))
	}
	if s.o.Check {
		for j, st := range s.state {
			if st != jobDone {
				return nil, fmt.Errorf("job %s did not finish", w.DescribeJob(int(s.pipeOf[j]), int32(j)))
			}
		}
		if s.starts != len(s.state)+s.requeued {
			return nil, fmt.Errorf("%d jobs started %d times with %d requeued by worker losses", len(s.state), s.starts, s.requeued)
		}
		for i, u := range s.wUsed {
			if u != [3]int64{} || s.wJobs[i] != 0 {
				return nil, fmt.Errorf("worker %s still holds %v after every job finished", w.Workers[i].ID, u)
			}
		}
	}
	r := &Result{Policy: string(s.o.Policy), Pipelines: len(w.Pipelines), Jobs: w.NumJobs()}
	sec := func(ns int64) float64 { return float64(ns) / 1e9 }

	// Pipelines: completion = finish of the last job - submit.
	comp := make([]float64, len(w.Pipelines))
	type acc struct {
		n          int
		comp, crit float64
		waits      []float64
	}
	tenants := make([]acc, len(w.Tenants))
	var critSum float64
	crits := make([]float64, len(w.Pipelines))
	for i, p := range w.Pipelines {
		c := sec(s.pfinish[i] - int64(p.Submit))
		comp[i] = c
		cp := w.CriticalPath(i).Seconds()
		critSum += cp
		crits[i] = cp
		t := &tenants[p.Tenant]
		t.n++
		t.comp += c
		t.crit += cp
	}
	r.MeanPipelineS = forecast.Mean(comp)
	slices.Sort(comp)
	r.P50PipelineS = percentile(comp, 0.5)
	r.P95PipelineS = percentile(comp, 0.95)
	r.Detail.MeanCriticalS = critSum / float64(len(w.Pipelines))
	slices.Sort(crits)
	r.Detail.P95CriticalS = percentile(crits, 0.95)

	// Jobs: wait = start - ready (ready: enqueued, i.e. its needs done and
	// its pipeline admitted).
	waits := make([]float64, len(s.state))
	var prio []float64
	byLabels := make([][]float64, len(w.Labels))
	for j := range s.state {
		v := sec(s.start[j] - s.ready[j])
		waits[j] = v
		byLabels[w.JobLabels[j]] = append(byLabels[w.JobLabels[j]], v)
		p := &w.Pipelines[s.pipeOf[j]]
		if p.Priority > 0 {
			prio = append(prio, v)
		}
		t := &tenants[p.Tenant]
		t.waits = append(t.waits, v)
	}
	r.MeanWaitS = forecast.Mean(waits)
	slices.Sort(waits)
	r.P50WaitS = percentile(waits, 0.5)
	r.P95WaitS = percentile(waits, 0.95)
	r.P99WaitS = percentile(waits, 0.99)
	r.Detail.P99WaitS = r.P99WaitS
	r.Detail.MaxWaitS = waits[len(waits)-1]
	slices.Sort(prio)
	r.PriorityP95WaitS = percentile(prio, 0.95)
	r.Detail.PriorityJobs = len(prio)

	for i, t := range tenants {
		if t.n == 0 {
			continue
		}
		tr := TenantResult{Tenant: w.Tenants[i], Pipelines: t.n, MeanPipelineS: t.comp / float64(t.n), MeanCriticalS: t.crit / float64(t.n)}
		if tr.MeanCriticalS > 0 {
			tr.Slowdown = tr.MeanPipelineS / tr.MeanCriticalS
		}
		slices.Sort(t.waits)
		tr.P95WaitS = percentile(t.waits, 0.95)
		if tr.Slowdown > r.MaxTenantSlowdown || r.Detail.WorstTenant == "" {
			r.MaxTenantSlowdown = tr.Slowdown
			r.Detail.WorstTenant = tr.Tenant
		}
		r.Detail.Tenants = append(r.Detail.Tenants, tr)
	}

	slices.SortFunc(r.Detail.Tenants, func(a, b TenantResult) int { return strings.Compare(a.Tenant, b.Tenant) })
	r.Tenants = make(map[string]TenantJSON, len(r.Detail.Tenants))
	for _, t := range r.Detail.Tenants {
		r.Tenants[t.Tenant] = TenantJSON{Pipelines: t.Pipelines, MeanPipelineS: round3(t.MeanPipelineS),
			Slowdown: round3(t.Slowdown), P95WaitS: round3(t.P95WaitS)}
	}
	r.LabelPools = map[string]PoolJSON{}
	for ls, v := range byLabels {
		if len(v) == 0 {
			continue
		}
		pj := PoolJSON{Jobs: len(v), MeanWaitS: round3(forecast.Mean(v))}
		slices.Sort(v)
		pj.P95WaitS, pj.P99WaitS = round3(percentile(v, 0.95)), round3(percentile(v, 0.99))
		name := strings.Join(w.Labels[ls], ";")
		r.LabelPools[name] = pj
		r.Detail.LabelPools = append(r.Detail.LabelPools, LabelPoolResult{Labels: name, PoolJSON: pj})
	}
	slices.SortFunc(r.Detail.LabelPools, func(a, b LabelPoolResult) int { return strings.Compare(a.Labels, b.Labels) })

	// Fleet: makespan from the first submit to the last finish.
	makespan := sec(s.lastT - s.firstT)
	r.MakespanS = makespan
	var cpu, mem, gpu, cost float64
	for _, wk := range w.Workers {
		cpu += float64(wk.CPUMilli)
		mem += float64(wk.MemoryMiB)
		gpu += float64(wk.GPU)
		cost += wk.CostPerHour
	}
	if makespan > 0 {
		r.Detail.CPUUtil = s.busy[0] / (cpu * makespan)
		r.Detail.MemUtil = s.busy[1] / (mem * makespan)
		if gpu > 0 {
			r.Detail.GPUUtil = s.busy[2] / (gpu * makespan)
		}
	}
	r.Utilization = max(r.Detail.CPUUtil, r.Detail.MemUtil, r.Detail.GPUUtil)
	caps := [3]float64{cpu, mem, gpu}
	for h, a := range s.hourArea {
		if int64(h+1)*int64(time.Hour) > s.lastT-s.firstT {
			break // the last, partial hour
		}
		for k := range a {
			if caps[k] > 0 {
				r.Detail.PeakHourUtil[k] = max(r.Detail.PeakHourUtil[k], a[k]/(caps[k]*3600))
			}
		}
	}
	if span := sec(s.lastSub - s.firstT); span > 0 {
		for k, a := range s.inUseArea {
			if caps[k] > 0 {
				r.Detail.ArrivalUtil = max(r.Detail.ArrivalUtil, a/(caps[k]*span))
			}
		}
	}
	r.WorkerHours = float64(len(w.Workers)) * makespan / 3600
	r.Detail.FleetCost = cost * makespan / 3600

	for _, e := range s.engs {
		r.Decisions += e.Stats().Decisions
	}
	if len(s.engs) > 1 {
		r.ShardBy = cmp.Or(s.o.ShardBy, ShardByPool)
		r.Shards = make([]ShardLoad, len(s.engs))
		for i, wk := range w.Workers {
			l := &r.Shards[s.shard.worker[i]]
			l.Workers++
			l.CPUMilli += wk.CPUMilli
		}
		for _, sh := range s.shard.job {
			r.Shards[sh].Jobs++
		}
		for sh, e := range s.engs {
			r.Shards[sh].Decisions = e.Stats().Decisions
			r.Shards[sh].PlanWallS = round3(s.shardWall[sh].Seconds())
		}
	}
	r.Detail.PlanCalls = s.planCalls
	r.Detail.PlanWallS = s.planWall.Seconds()
	if s.planWall > 0 {
		r.DecisionsPerSec = float64(r.Decisions) / s.planWall.Seconds()
	}
	r.WallS = s.wall.Seconds()
	r.PeakRSSMB = PeakRSSMB()
	r.Detail.MaxQueued = s.maxQueued
	r.Detail.Requeued = s.requeued
	r.Detail.WorkerLosses = s.losses

	for _, f := range []*float64{&r.MeanPipelineS, &r.P50PipelineS, &r.P95PipelineS, &r.MeanWaitS, &r.P50WaitS, &r.P95WaitS, &r.P99WaitS,
		&r.MaxTenantSlowdown, &r.PriorityP95WaitS, &r.MakespanS, &r.Utilization, &r.WorkerHours,
		&r.DecisionsPerSec, &r.WallS, &r.PeakRSSMB} {
		*f = round3(*f)
	}
	r.Utilization = math.Round(r.Utilization*1e4) / 1e4
	if s.pools != nil {
		s.poolResult(r)
	}
	return r, nil
}

// Wall returns the wall-clock time the run has taken so far.
func (s *Sim) Wall() time.Duration { return s.wall }
