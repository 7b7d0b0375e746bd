package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	pipelinefile "github.com/hodei-ci/hodei/internal/pipeline"
)

// ReasonCode names why a queued job is not placed. The set is small and
// fixed; clients may match on it.
type ReasonCode string

const (
	// ReasonNoWorkers: the engine knows no worker at all.
	ReasonNoWorkers ReasonCode = "no_workers"
	// ReasonLabels: no worker has every label the job asks for.
	ReasonLabels ReasonCode = "no_worker_with_labels"
	// ReasonTooLarge: workers with the labels exist, but none has the
	// capacity the job asks for, even idle.
	ReasonTooLarge ReasonCode = "no_worker_large_enough"
	// ReasonBusy: some worker could run the job, but every such worker is
	// busy (not enough free capacity, at its job limit, or draining).
	ReasonBusy ReasonCode = "workers_busy"
	// ReasonPriority: as ReasonBusy, and jobs of a higher priority are
	// queued: they go first when a worker frees (hodei policy).
	ReasonPriority ReasonCode = "lower_priority"
	// ReasonFairShare: as ReasonBusy, and the job's tenant already holds
	// more than its fair share of the fleet while other tenants wait: their
	// jobs go first (hodei policy).
	ReasonFairShare ReasonCode = "over_fair_share"
	// ReasonNeeds: the job waits for the jobs it needs to end (the
	// orchestrator's reason; the engine never gives it).
	ReasonNeeds ReasonCode = "waiting_on_needs"
	// ReasonConcurrency: the job's run is held back by its concurrency
	// group (the orchestrator's reason).
	ReasonConcurrency ReasonCode = "concurrency_group"
	// ReasonPoolAtMax: no running worker can take the job now, a pool's
	// shape fits it, but every such pool is at its max workers: the
	// worker manager cannot add one (WhyWith only).
	ReasonPoolAtMax ReasonCode = "pool_at_max"
	// ReasonPoolScaling: no running worker can take the job now, and a
	// pool whose shape fits it is below its max (the worker manager adds
	// a worker for it), or starting workers (WhyWith only).
	ReasonPoolScaling ReasonCode = "pool_adding_worker"
)

// Pool is what the scheduler knows of a worker pool when it says why a job
// waits: the shape of the workers it would create and how many it has.
type Pool struct {
	Name string
	// Labels are those its workers will have (the shape's and those every
	// agent has).
	Labels   []string
	Capacity Resources
	// Size is the workers it has now (any state); Max the most it may;
	// Starting those of Size created and not joined yet.
	Size, Max, Starting int
	// Containers says that the pool makes a worker per job container
	// (Kubernetes): such a worker runs the job's image itself, so the
	// job's docker label is not asked of the pool.
	Containers bool
}

// fits says whether a worker of the pool could run a job that asks req
// with labels want.
func (p *Pool) fits(req Resources, want []string) bool {
	return req.CPUMilli <= p.Capacity.CPUMilli && req.Memory <= p.Capacity.Memory && req.GPU <= p.Capacity.GPU && p.hasLabels(want)
}

// hasLabels says whether the pool's workers have every label of want. A
// job's container label is not asked of a pool, as it is not of a worker
// without one: a pool's workers run any container (its own, made for the
// job, on a pool of Containers).
func (p *Pool) hasLabels(want []string) bool {
	for _, l := range want {
		if strings.HasPrefix(l, pipelinefile.ContainerLabelPrefix) || p.Containers && l == pipelinefile.DockerLabel {
			continue
		}
		if !slices.Contains(p.Labels, l) {
			return false
		}
	}
	return true
}

// Reason says why a queued job waits: a code and a sentence for people.
// The zero Reason means the job is not known to wait on the fleet (not
// queued, or it fits a worker now and the next Plan places it).
type Reason struct {
	Code   ReasonCode
	Detail string
}

// Never reports whether no worker the engine knows could ever run the job,
// whatever ends: its labels or its size exceed the whole fleet (and, from
// WhyWith, no pool's shape fits it either).
func (r Reason) Never() bool { return r.Code == ReasonLabels || r.Code == ReasonTooLarge }

// WhyWith is Why, told of the pools a worker manager may grow: a job that
// no running worker can take now but that fits a pool's shape waits for
// the pool (ReasonPoolScaling), or says that every pool it fits is at its
// max (ReasonPoolAtMax); a job that fits no pool either says so. Like Why,
// it only reads.
func (e *Engine) WhyWith(jobID string, pools []Pool) Reason {
	r := e.Why(jobID)
	if r.Code == "" || len(pools) == 0 {
		return r
	}
	sh := &e.idx.shapes[e.jobs[e.jobIdx[jobID]].shape]
	lset := e.idx.lsets[sh.lset].labels
	want := make([]string, len(lset))
	for k, l := range lset {
		want[k] = e.idx.labelName(l)
	}
	var atMax []string
	labelled := false  // some pool has the labels
	var most Resources // largest shape per dimension among them
	for i := range pools {
		if pools[i].hasLabels(want) {
			labelled = true
			c := pools[i].Capacity
			most = Resources{max(most.CPUMilli, c.CPUMilli), max(most.Memory, c.Memory), max(most.GPU, c.GPU)}
		}
		p := &pools[i]
		if !p.fits(sh.req, want) {
			continue
		}
		if p.Size < p.Max {
			return Reason{ReasonPoolScaling, fmt.Sprintf("%s; pool %s adds a worker for it (%d of max %d)", r.Detail, p.Name, p.Size, p.Max)}
		}
		if p.Starting > 0 {
			// At its max, but a worker it created may be this job's.
			return Reason{ReasonPoolScaling, fmt.Sprintf("%s; pool %s is starting %d worker(s) (%d of max %d)", r.Detail, p.Name, p.Starting, p.Size, p.Max)}
		}
		atMax = append(atMax, fmt.Sprintf("pool %s is at its max of %d workers", p.Name, p.Max))
	}
	switch {
	case len(atMax) == 0 && r.Code == ReasonNoWorkers && !labelled:
		return Reason{ReasonLabels, fmt.Sprintf("%s, and no pool's workers have the labels %s", r.Detail, strings.Join(want, ", "))}
	case len(atMax) == 0 && r.Code == ReasonNoWorkers:
		return Reason{ReasonTooLarge, r.Detail + ", and no pool's shape is large enough: " + tooLarge(sh.req, most, "pool's workers have")}
	case len(atMax) == 0 && r.Never():
		return Reason{r.Code, r.Detail + "; no pool's shape fits it"}
	case len(atMax) == 0:
		return r
	case r.Code == ReasonPriority || r.Code == ReasonFairShare:
		// Which jobs go first still decides; the pool is why no worker
		// is added meanwhile.
		return Reason{r.Code, r.Detail + "; " + strings.Join(atMax, ", ")}
	}
	return Reason{ReasonPoolAtMax, strings.Join(atMax, ", ") + "; " + r.Detail}
}

// Why says why a queued job is not placed. It only reads: it changes no
// state and no later decision. It costs one pass over the workers, so it is
// meant for the few jobs someone asks about, or one job per shape.
func (e *Engine) Why(jobID string) Reason {
	ji, ok := e.jobIdx[jobID]
	if !ok || e.jobs[ji].state != jsQueued {
		return Reason{}
	}
	sh := &e.idx.shapes[e.jobs[ji].shape]
	want := e.idx.lsets[sh.lset].labels
	req := sh.req
	var (
		live, labelled, large int
		has                   = make([]bool, len(want))
		most                  Resources // largest capacity per dimension among labelled workers
	)
	for i := range e.workers {
		w := &e.workers[i]
		if !w.live {
			continue
		}
		live++
		for k, l := range want {
			if !has[k] && (slices.Contains(w.labels, l) || e.idx.exclusive[l]) {
				has[k] = true
			}
		}
		if !e.idx.compatible(want, w.labels) {
			continue
		}
		labelled++
		most.CPUMilli = max(most.CPUMilli, w.capacity.CPUMilli)
		most.Memory = max(most.Memory, w.capacity.Memory)
		most.GPU = max(most.GPU, w.capacity.GPU)
		if !fits(&w.capacity, &req) {
			continue
		}
		large++
		// A worker kept for a late job (Slack) is busy for the others.
		if free := w.free(); w.schedulable && !w.full() && !w.kept && fits(&free, &req) {
			return Reason{}
		}
	}
	switch {
	case live == 0:
		return Reason{ReasonNoWorkers, "no worker has joined"}
	case labelled == 0:
		var missing []string
		for k, l := range want {
			if !has[k] {
				missing = append(missing, e.idx.labelName(l))
			}
		}
		if len(missing) > 0 {
			return Reason{ReasonLabels, "no worker has the label " + strings.Join(missing, ", ")}
		}
		names := make([]string, len(want))
		for k, l := range want {
			names[k] = e.idx.labelName(l)
		}
		return Reason{ReasonLabels, "no worker has all the labels " + strings.Join(names, ", ")}
	case large == 0:
		return Reason{ReasonTooLarge, tooLarge(req, most, "worker has")}
	}
	busy := fmt.Sprintf("%d worker(s) can run it, all busy", large)
	if e.policy != PolicyHodei {
		return Reason{ReasonBusy, busy}
	}
	j := &e.jobs[ji]
	if t := &e.tenants[e.pipes[j.pipe].tenant]; t.entitled > 0 && t.entitled < 1 {
		if s := e.heldShare(t); s > t.entitled {
			return Reason{ReasonFairShare, fmt.Sprintf("%s; tenant %s holds %.0f%% of the fleet, its fair share is %.0f%%: other tenants' jobs go first",
				busy, t.name, 100*s, 100*t.entitled)}
		}
	}
	higher := 0
	for _, c := range e.queues.active {
		if c > j.prio {
			higher += e.queues.classes[c].n
		}
	}
	if higher > 0 {
		return Reason{ReasonPriority, fmt.Sprintf("%s; %d queued job(s) of higher priority go first", busy, higher)}
	}
	return Reason{ReasonBusy, busy}
}

// tooLarge says what req asks beyond most, the largest capacity per
// dimension of the largest "worker has" (or "pool's workers have").
func tooLarge(req, most Resources, has string) string {
	var parts []string
	if req.CPUMilli > most.CPUMilli {
		parts = append(parts, fmt.Sprintf("asks %s cpu, the largest %s %s", formatCPU(req.CPUMilli), has, formatCPU(most.CPUMilli)))
	}
	if req.Memory > most.Memory {
		parts = append(parts, fmt.Sprintf("asks %s memory, the largest %s %s", pipelinefile.FormatBytes(req.Memory), has, pipelinefile.FormatBytes(most.Memory)))
	}
	if req.GPU > most.GPU {
		parts = append(parts, fmt.Sprintf("asks %d gpu, the largest %s %d", req.GPU, has, most.GPU))
	}
	if len(parts) == 0 {
		single := "no single worker has them all"
		if has != "worker has" {
			single = "no single pool's workers have them all"
		}
		parts = append(parts, fmt.Sprintf("asks %s cpu, %s memory and %d gpu, %s",
			formatCPU(req.CPUMilli), pipelinefile.FormatBytes(req.Memory), req.GPU, single))
	}
	return strings.Join(parts, "; ")
}

// heldShare is a tenant's dominant share of the fleet's capacity: the
// largest of its cpu, memory and gpu held over the fleet's.
func (e *Engine) heldShare(t *tenant) float64 {
	var s float64
	if e.total.CPUMilli > 0 {
		s = max(s, float64(t.held.CPUMilli)/float64(e.total.CPUMilli))
	}
	if e.total.Memory > 0 {
		s = max(s, float64(t.held.Memory)/float64(e.total.Memory))
	}
	if e.total.GPU > 0 {
		s = max(s, float64(t.held.GPU)/float64(e.total.GPU))
	}
	return s
}

// formatCPU writes milli-cpus as cpus: "2", "0.5".
func formatCPU(milli int64) string {
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64)
}
