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
			if !has[k] && slices.Contains(w.labels, l) {
				has[k] = true
			}
		}
		if !subset(want, w.labels) {
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
	return Reason{ReasonBusy, fmt.Sprintf("%d worker(s) can run it, all busy", large)}
}

// formatCPU writes milli-cpus as cpus: "2", "0.5".
func formatCPU(milli int64) string {
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64)
}
