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
)

// Reason says why a queued job waits: a code and a sentence for people.
// The zero Reason means the job is not known to wait on the fleet (not
// queued, or it fits a worker now and the next Plan places it).
type Reason struct {
	Code   ReasonCode
	Detail string
}

// Never reports whether no worker the engine knows could ever run the job,
// whatever ends: its labels or its size exceed the whole fleet.
func (r Reason) Never() bool { return r.Code == ReasonLabels || r.Code == ReasonTooLarge }

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
		if free := w.free(); w.schedulable && !w.full() && fits(&free, &req) {
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
		var parts []string
		if req.CPUMilli > most.CPUMilli {
			parts = append(parts, fmt.Sprintf("asks %s cpu, the largest worker has %s", formatCPU(req.CPUMilli), formatCPU(most.CPUMilli)))
		}
		if req.Memory > most.Memory {
			parts = append(parts, fmt.Sprintf("asks %s memory, the largest worker has %s", pipelinefile.FormatBytes(req.Memory), pipelinefile.FormatBytes(most.Memory)))
		}
		if req.GPU > most.GPU {
			parts = append(parts, fmt.Sprintf("asks %d gpu, the largest worker has %d", req.GPU, most.GPU))
		}
		if len(parts) == 0 {
			parts = append(parts, fmt.Sprintf("asks %s cpu, %s memory and %d gpu, no single worker has them all",
				formatCPU(req.CPUMilli), pipelinefile.FormatBytes(req.Memory), req.GPU))
		}
		return Reason{ReasonTooLarge, strings.Join(parts, "; ")}
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
