// Package sim is a discrete-event simulator that drives Hodei's scheduler
// engine (internal/scheduler.Engine) under a virtual clock.
//
// A Workload is a fleet of workers and a list of pipeline runs, each a DAG of
// jobs with a resource request and a true duration. The workload comes from
// files (a CSV of workers and JSON lines of pipelines), from the synthetic
// CI-shaped generator (Generate), or from the Alibaba GPU cluster trace of
// 2023 (ImportAlibaba). Run replays it against the engine: pipelines arrive at
// their submit time, ready jobs are enqueued, the engine plans, and each
// assignment finishes after the job's true duration, which the engine never
// sees (it only learns how long finished jobs ran, as in production).
// With Options.Shards the fleet and the jobs are split among several
// engines, one per shard, as several scheduler leaders would run them
// (shard.go).
//
// The workload is stored as a struct of arrays indexed by a global job
// number, with interned strings, so that a million jobs take tens of bytes
// each.
package sim

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Worker is a machine of the simulated fleet.
type Worker struct {
	ID          string
	CPUMilli    int64
	MemoryMiB   int64
	GPU         int // devices; milli-GPUs when Workload.GPUMilli
	Labels      []string
	CostPerHour float64
}

// Pipeline is one pipeline run of a workload. Its jobs are the global job
// numbers First to First+Jobs-1.
type Pipeline struct {
	ID       string
	Tenant   int32 // index into Workload.Tenants
	Priority int32
	Submit   time.Duration // arrival, from the workload's time zero
	First    int32
	Jobs     int32
	Group    int32 // concurrency group: index into Workload.Groups, or -1
	Limit    int32 // concurrency limit of the group
}

// Workload is a fleet and the pipelines to run on it. Jobs are stored as
// parallel slices indexed by global job number (struct of arrays).
type Workload struct {
	Workers   []Worker
	Pipelines []Pipeline

	Tenants []string   // tenant names
	Groups  []string   // concurrency group names
	Strings []string   // interned job names and keys
	Labels  [][]string // interned label sets (sorted); index 0 is the empty set

	JobName   []int32         // into Strings: the job's id within its pipeline
	JobKey    []int32         // into Strings: the prediction key
	JobLabels []int32         // into Labels
	JobCPU    []int32         // millicores
	JobMemMiB []int32         // MiB
	JobGPU    []int32         // devices; milli-GPUs when GPUMilli
	JobDur    []time.Duration // true duration (hidden from the scheduler)

	// NeedStart[j]..NeedStart[j+1] index Needs: the global job numbers job j
	// needs (all in the same pipeline).
	NeedStart []int32
	Needs     []int32

	// GPUMilli says GPU amounts are thousandths of a device (the Alibaba
	// import models shared GPUs this way).
	GPUMilli bool

	// Skipped counts input records left out on import, by reason; Notes
	// counts other facts of an import worth reporting.
	Skipped map[string]int
	Notes   map[string]int

	// Source describes where the workload came from, for reports.
	Source string

	strIndex   map[string]int32
	labelIndex map[string]int32
	tenIndex   map[string]int32
	grpIndex   map[string]int32
}

// NewWorkload returns an empty workload ready for AddPipeline.
func NewWorkload() *Workload {
	w := &Workload{
		Labels:     [][]string{nil},
		NeedStart:  []int32{0},
		strIndex:   map[string]int32{},
		labelIndex: map[string]int32{"": 0},
		tenIndex:   map[string]int32{},
		grpIndex:   map[string]int32{},
	}
	return w
}

// NumJobs returns the number of jobs of all pipelines.
func (w *Workload) NumJobs() int { return len(w.JobDur) }

// indexOf returns the index in *list of the value filed under key in index,
// appending v (filed under key) the first time.
func indexOf[T any](index map[string]int32, list *[]T, key string, v T) int32 {
	if i, ok := index[key]; ok {
		return i
	}
	i := int32(len(*list))
	*list = append(*list, v)
	index[key] = i
	return i
}

// intern returns the index of a job name or key in Strings.
func (w *Workload) intern(s string) int32 { return indexOf(w.strIndex, &w.Strings, s, s) }

// tenant returns the index of a tenant in Tenants.
func (w *Workload) tenant(s string) int32 { return indexOf(w.tenIndex, &w.Tenants, s, s) }

// group returns the index of a concurrency group in Groups, -1 for none.
func (w *Workload) group(s string) int32 {
	if s == "" {
		return -1
	}
	return indexOf(w.grpIndex, &w.Groups, s, s)
}

// labelSet interns a set of labels (order and duplicates do not matter).
func (w *Workload) labelSet(labels []string) int32 {
	if len(labels) == 0 {
		return 0
	}
	ls := slices.Clone(labels)
	sort.Strings(ls)
	ls = slices.Compact(ls)
	return indexOf(w.labelIndex, &w.Labels, strings.Join(ls, "\x00"), ls)
}

// JobIn is one job as given to AddPipeline. Needs name other jobs of the
// same pipeline by ID.
type JobIn struct {
	ID       string
	Needs    []string
	CPUMilli int64
	MemMiB   int64
	GPU      int64
	Labels   []string
	Duration time.Duration
	Key      string
}

// PipelineIn is one pipeline as given to AddPipeline.
type PipelineIn struct {
	ID       string
	Tenant   string
	Priority int
	Submit   time.Duration
	Group    string
	Limit    int
	Jobs     []JobIn
}

// AddPipeline validates a pipeline and appends it to the workload. It
// reports what is wrong with it without adding anything: a missing or
// duplicate job ID, a need that names no job of the pipeline, a cycle, a
// negative request or a non-positive duration. Pipeline IDs are not checked
// for uniqueness here (see CheckIDs).
func (w *Workload) AddPipeline(p PipelineIn) error {
	if p.ID == "" {
		return fmt.Errorf(`pipeline has no "id"`)
	}
	if len(p.Jobs) == 0 {
		return fmt.Errorf("pipeline %q has no jobs", p.ID)
	}
	if p.Priority < -100 || p.Priority > 100 {
		return fmt.Errorf("pipeline %q: priority %d is outside -100..100", p.ID, p.Priority)
	}
	if p.Submit < 0 {
		return fmt.Errorf("pipeline %q: negative submit_s", p.ID)
	}
	if p.Group != "" && p.Limit <= 0 {
		return fmt.Errorf("pipeline %q: concurrency group %q needs a positive limit", p.ID, p.Group)
	}
	if len(p.Jobs) > 1<<20 {
		return fmt.Errorf("pipeline %q: %d jobs is too many", p.ID, len(p.Jobs))
	}
	local := make(map[string]int, len(p.Jobs))
	for i, j := range p.Jobs {
		if j.ID == "" {
			return fmt.Errorf("pipeline %q: job %d has no \"id\"", p.ID, i+1)
		}
		if _, dup := local[j.ID]; dup {
			return fmt.Errorf("pipeline %q: two jobs have id %q", p.ID, j.ID)
		}
		local[j.ID] = i
		switch {
		case j.CPUMilli < 0 || j.MemMiB < 0 || j.GPU < 0:
			return fmt.Errorf("pipeline %q: job %q: negative resource request", p.ID, j.ID)
		case j.CPUMilli > 1<<31-1 || j.MemMiB > 1<<31-1 || j.GPU > 1<<31-1:
			return fmt.Errorf("pipeline %q: job %q: resource request too large", p.ID, j.ID)
		case j.Duration <= 0:
			return fmt.Errorf("pipeline %q: job %q: duration_s must be positive", p.ID, j.ID)
		}
	}
	// Resolve needs and check for cycles (Kahn's algorithm on local indices).
	indeg := make([]int, len(p.Jobs))
	for i, j := range p.Jobs {
		for _, n := range j.Needs {
			k, ok := local[n]
			if !ok {
				return fmt.Errorf("pipeline %q: job %q needs %q, which is not a job of the pipeline", p.ID, j.ID, n)
			}
			if k == i {
				return fmt.Errorf("pipeline %q: job %q needs itself", p.ID, j.ID)
			}
			indeg[i]++
		}
	}
	if err := acyclic(p, local, indeg); err != nil {
		return err
	}

	first := int32(len(w.JobDur))
	for _, j := range p.Jobs {
		key := j.Key
		if key == "" {
			key = j.ID
		}
		w.JobName = append(w.JobName, w.intern(j.ID))
		w.JobKey = append(w.JobKey, w.intern(key))
		w.JobLabels = append(w.JobLabels, w.labelSet(j.Labels))
		w.JobCPU = append(w.JobCPU, int32(j.CPUMilli))
		w.JobMemMiB = append(w.JobMemMiB, int32(j.MemMiB))
		w.JobGPU = append(w.JobGPU, int32(j.GPU))
		w.JobDur = append(w.JobDur, j.Duration)
		for _, n := range j.Needs {
			k := first + int32(local[n])
			if slices.Contains(w.Needs[w.NeedStart[len(w.NeedStart)-1]:], k) {
				continue // duplicate need
			}
			w.Needs = append(w.Needs, k)
		}
		w.NeedStart = append(w.NeedStart, int32(len(w.Needs)))
	}
	w.Pipelines = append(w.Pipelines, Pipeline{
		ID:       p.ID,
		Tenant:   w.tenant(p.Tenant),
		Priority: int32(p.Priority),
		Submit:   p.Submit,
		First:    first,
		Jobs:     int32(len(p.Jobs)),
		Group:    w.group(p.Group),
		Limit:    int32(p.Limit),
	})
	return nil
}

func acyclic(p PipelineIn, local map[string]int, indeg []int) error {
	deps := make([][]int, len(p.Jobs))
	for i, j := range p.Jobs {
		for _, n := range j.Needs {
			k := local[n]
			deps[k] = append(deps[k], i)
		}
	}
	stack := []int{}
	for i, d := range indeg {
		if d == 0 {
			stack = append(stack, i)
		}
	}
	done := 0
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		done++
		for _, k := range deps[i] {
			indeg[k]--
			if indeg[k] == 0 {
				stack = append(stack, k)
			}
		}
	}
	if done == len(p.Jobs) {
		return nil
	}
	var cyc []string
	for i, d := range indeg {
		if d > 0 {
			cyc = append(cyc, p.Jobs[i].ID)
		}
	}
	return fmt.Errorf("pipeline %q: needs form a cycle among jobs %s", p.ID, strings.Join(cyc, ", "))
}

// JobNeeds returns the global numbers of the jobs job j needs.
func (w *Workload) JobNeeds(j int32) []int32 { return w.Needs[w.NeedStart[j]:w.NeedStart[j+1]] }

// PipelineOf returns the pipeline of each job (computed, 4 bytes a job).
func (w *Workload) pipelineOf() []int32 {
	out := make([]int32, w.NumJobs())
	for i, p := range w.Pipelines {
		for j := p.First; j < p.First+p.Jobs; j++ {
			out[j] = int32(i)
		}
	}
	return out
}

// dependents returns the reverse of Needs in compressed form: the jobs that
// need job j are deps[start[j]:start[j+1]].
func (w *Workload) dependents() (start, deps []int32) {
	n := w.NumJobs()
	start = make([]int32, n+1)
	for _, k := range w.Needs {
		start[k+1]++
	}
	for i := 0; i < n; i++ {
		start[i+1] += start[i]
	}
	deps = make([]int32, len(w.Needs))
	fill := slices.Clone(start[:n])
	for j := 0; j < n; j++ {
		for _, k := range w.JobNeeds(int32(j)) {
			deps[fill[k]] = int32(j)
			fill[k]++
		}
	}
	return start, deps
}

// CriticalPath returns, for pipeline i, the length of its longest chain of
// jobs by true duration.
func (w *Workload) CriticalPath(i int) time.Duration {
	p := w.Pipelines[i]
	// Jobs were added in input order, which need not be topological; relax
	// until stable (DAGs of CI pipelines are small and shallow).
	fin := make([]time.Duration, p.Jobs)
	for changed, rounds := true, 0; changed && rounds <= int(p.Jobs); rounds++ {
		changed = false
		for k := int32(0); k < p.Jobs; k++ {
			j := p.First + k
			var start time.Duration
			for _, n := range w.JobNeeds(j) {
				start = max(start, fin[n-p.First])
			}
			if f := start + w.JobDur[j]; f != fin[k] {
				fin[k], changed = f, true
			}
		}
	}
	return slices.Max(fin)
}

// CheckIDs reports the first pipeline ID used twice and the first duplicate
// worker ID.
func (w *Workload) CheckIDs() error {
	seen := make(map[string]struct{}, len(w.Workers))
	for _, wk := range w.Workers {
		if _, dup := seen[wk.ID]; dup {
			return fmt.Errorf("two workers have id %q", wk.ID)
		}
		seen[wk.ID] = struct{}{}
	}
	clear(seen)
	for _, p := range w.Pipelines {
		if _, dup := seen[p.ID]; dup {
			return fmt.Errorf("two pipelines have id %q", p.ID)
		}
		seen[p.ID] = struct{}{}
	}
	return nil
}

// fitter answers whether a job's request fits some worker of the fleet when
// that worker is empty.
type fitter struct {
	w     *Workload
	cache map[[4]int64]bool
	order []int // workers by cpu, descending
}

func newFitter(w *Workload) *fitter {
	f := &fitter{w: w, cache: map[[4]int64]bool{}}
	for i := range w.Workers {
		f.order = append(f.order, i)
	}
	sort.SliceStable(f.order, func(a, b int) bool {
		return w.Workers[f.order[a]].CPUMilli > w.Workers[f.order[b]].CPUMilli
	})
	return f
}

func (f *fitter) fits(cpu, memMiB, gpu int64, labels int32) bool {
	k := [4]int64{cpu, memMiB, gpu, int64(labels)}
	if ok, hit := f.cache[k]; hit {
		return ok
	}
	ok := false
	want := f.w.Labels[labels]
	for _, i := range f.order {
		wk := &f.w.Workers[i]
		if wk.CPUMilli < cpu {
			break
		}
		if wk.MemoryMiB >= memMiB && int64(wk.GPU) >= gpu && hasAll(wk.Labels, want) {
			ok = true
			break
		}
	}
	f.cache[k] = ok
	return ok
}

func hasAll(have, want []string) bool {
	for _, l := range want {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

// Unplaceable returns the first job that no worker of the fleet can hold
// even when empty (its pipeline index and job number), or ok false.
func (w *Workload) Unplaceable() (pipeline int, job int32, ok bool) {
	f := newFitter(w)
	for i, p := range w.Pipelines {
		for j := p.First; j < p.First+p.Jobs; j++ {
			if !f.fits(int64(w.JobCPU[j]), int64(w.JobMemMiB[j]), int64(w.JobGPU[j]), w.JobLabels[j]) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// DescribeJob names a job for messages: pipeline/job.
func (w *Workload) DescribeJob(p int, j int32) string {
	return fmt.Sprintf("%s/%s", w.Pipelines[p].ID, w.Strings[w.JobName[j]])
}

// Summary counts what a workload holds.
type Summary struct {
	Workers, Pipelines, Jobs, Tenants   int
	PriorityPipelines, GroupedPipelines int
	GPUWorkers, GPUJobs                 int
	FleetCPUMilli, FleetMemMiB          int64
	FleetGPU                            int64
	WorkCPUSeconds                      float64 // sum of cpu × true duration
	Span                                time.Duration
}

// Summarize counts what a workload holds.
func (w *Workload) Summarize() Summary {
	s := Summary{Workers: len(w.Workers), Pipelines: len(w.Pipelines), Jobs: w.NumJobs(), Tenants: len(w.Tenants)}
	for _, wk := range w.Workers {
		s.FleetCPUMilli += wk.CPUMilli
		s.FleetMemMiB += wk.MemoryMiB
		s.FleetGPU += int64(wk.GPU)
		if wk.GPU > 0 {
			s.GPUWorkers++
		}
	}
	var lo, hi time.Duration
	for i, p := range w.Pipelines {
		if p.Priority > 0 {
			s.PriorityPipelines++
		}
		if p.Group >= 0 {
			s.GroupedPipelines++
		}
		if i == 0 || p.Submit < lo {
			lo = p.Submit
		}
		hi = max(hi, p.Submit)
	}
	s.Span = hi - lo
	for j := range w.JobDur {
		if w.JobGPU[j] > 0 {
			s.GPUJobs++
		}
		s.WorkCPUSeconds += float64(w.JobCPU[j]) / 1000 * w.JobDur[j].Seconds()
	}
	return s
}
