// Package scheduler decides which queued job runs on which worker.
//
// The scheduler is a pure function: Plan takes a read-only Snapshot of the
// fleet and the queue and returns the assignments to make. It keeps no state
// and does no I/O, so that the server, the simulator and the benchmarks all
// drive the same code. Something else (the orchestrator) applies the plan.
package scheduler

import (
	"sort"
	"time"
)

// Worker is a worker as the scheduler sees it: what it has, and what is
// already taken by jobs assigned to it.
type Worker struct {
	ID       string
	Labels   []string
	CPUMilli int64
	Memory   int64
	GPU      int
	// Used is the sum of the requests of the jobs assigned to the worker.
	UsedCPUMilli int64
	UsedMemory   int64
	UsedGPU      int
	// Schedulable is false for workers that must get no new jobs
	// (draining, lost).
	Schedulable bool
}

// FreeCPU returns the millicores not yet taken.
func (w *Worker) FreeCPU() int64 { return w.CPUMilli - w.UsedCPUMilli }

// FreeMemory returns the bytes of memory not yet taken.
func (w *Worker) FreeMemory() int64 { return w.Memory - w.UsedMemory }

// FreeGPU returns the devices not yet taken.
func (w *Worker) FreeGPU() int { return w.GPU - w.UsedGPU }

// Job is a queued job: what it asks for and how it is ordered.
type Job struct {
	ID       string
	Priority int
	// QueuedAt orders jobs of the same priority (first in, first out);
	// Seq breaks ties between jobs queued at the same instant.
	QueuedAt time.Time
	Seq      uint64
	CPUMilli int64
	Memory   int64
	GPU      int
	Labels   []string
}

// Snapshot is the input of Plan. Plan does not modify it.
type Snapshot struct {
	Workers []Worker
	Queue   []Job
}

// Assignment places one job on one worker.
type Assignment struct {
	JobID    string
	WorkerID string
}

// Plan is the output of Plan: assignments in the order they were decided,
// and the jobs that fit no worker of the fleet even when it is empty (they
// wait for a worker that can take them).
type Plan struct {
	Assignments []Assignment
	Unplaceable []string
}

// Fits reports whether a worker has the labels and free capacity a job needs.
func Fits(w *Worker, j *Job) bool {
	return w.Schedulable &&
		w.FreeCPU() >= j.CPUMilli && w.FreeMemory() >= j.Memory && w.FreeGPU() >= j.GPU &&
		hasLabels(w.Labels, j.Labels)
}

// fitsEmpty reports whether the job would fit the worker if it ran nothing.
func fitsEmpty(w *Worker, j *Job) bool {
	return w.CPUMilli >= j.CPUMilli && w.Memory >= j.Memory && w.GPU >= j.GPU && hasLabels(w.Labels, j.Labels)
}

func hasLabels(have, want []string) bool {
	for _, l := range want {
		found := false
		for _, h := range have {
			if h == l {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Less orders the queue: higher priority first, then first queued first.
func Less(a, b *Job) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.QueuedAt.Equal(b.QueuedAt) {
		return a.QueuedAt.Before(b.QueuedAt)
	}
	if a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	return a.ID < b.ID
}

// PlanFIFO is scheduler v0: jobs in priority order, first in first out within
// a priority; each goes to the fitting worker with the most free cpu (which
// spreads load over the fleet). A job that fits nowhere now does not block the
// jobs behind it.
func PlanFIFO(s Snapshot) Plan {
	queue := make([]*Job, len(s.Queue))
	for i := range s.Queue {
		queue[i] = &s.Queue[i]
	}
	sort.SliceStable(queue, func(i, k int) bool { return Less(queue[i], queue[k]) })

	workers := make([]Worker, len(s.Workers))
	copy(workers, s.Workers)

	var p Plan
	for _, j := range queue {
		best := -1
		placeable := false
		for i := range workers {
			w := &workers[i]
			if !placeable && w.Schedulable && fitsEmpty(w, j) {
				placeable = true
			}
			if !Fits(w, j) {
				continue
			}
			if best < 0 || w.FreeCPU() > workers[best].FreeCPU() ||
				(w.FreeCPU() == workers[best].FreeCPU() && w.ID < workers[best].ID) {
				best = i
			}
		}
		if best < 0 {
			if !placeable {
				p.Unplaceable = append(p.Unplaceable, j.ID)
			}
			continue
		}
		w := &workers[best]
		w.UsedCPUMilli += j.CPUMilli
		w.UsedMemory += j.Memory
		w.UsedGPU += j.GPU
		p.Assignments = append(p.Assignments, Assignment{JobID: j.ID, WorkerID: w.ID})
	}
	return p
}
