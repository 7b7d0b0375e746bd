package orchestrator

import (
	"sort"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
)

// View is a consistent, read-only picture of the live state, refreshed by
// the loop after each batch. It serves the API and metrics without touching
// the loop's state.
type View struct {
	At         time.Time
	Workers    []WorkerView
	ActiveRuns int
	// Jobs of active runs by state.
	Jobs map[string]int
}

// WorkerView is one worker as the orchestrator sees it.
type WorkerView struct {
	ID           string    `json:"id"`
	Pool         string    `json:"pool"`
	State        string    `json:"state"`
	Labels       []string  `json:"labels"`
	CPUMilli     int64     `json:"cpu_milli"`
	MemoryBytes  int64     `json:"memory_bytes"`
	GPU          int       `json:"gpu"`
	UsedCPUMilli int64     `json:"used_cpu_milli"`
	UsedMemory   int64     `json:"used_memory_bytes"`
	UsedGPU      int       `json:"used_gpu"`
	Jobs         []string  `json:"jobs"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
}

// View returns the latest picture of the live state.
func (o *Orchestrator) View() *View { return o.view.Load() }

func (o *Orchestrator) publishView(now time.Time, force bool) {
	if !force && now.Sub(o.lastPub) < 100*time.Millisecond {
		return
	}
	o.lastPub = now
	v := &View{At: now, ActiveRuns: len(o.runs), Jobs: map[string]int{}}
	for _, j := range o.jobs {
		if !state.JobFinal(j.rec.State) {
			v.Jobs[j.rec.State]++
		}
	}
	for _, w := range o.workers {
		wv := WorkerView{
			ID: w.rec.ID, Pool: w.rec.Pool, State: w.rec.State, Labels: w.rec.Labels,
			CPUMilli: w.rec.CPUMilli, MemoryBytes: w.rec.MemoryBytes, GPU: w.rec.GPU,
			UsedCPUMilli: w.used.cpu, UsedMemory: w.used.mem, UsedGPU: w.used.gpu,
			Jobs: make([]string, 0, len(w.jobs)), FirstSeen: w.rec.FirstSeen, LastSeen: w.lastSeen,
		}
		for id := range w.jobs {
			wv.Jobs = append(wv.Jobs, id)
		}
		sort.Strings(wv.Jobs)
		v.Workers = append(v.Workers, wv)
	}
	sort.Slice(v.Workers, func(i, k int) bool { return v.Workers[i].ID < v.Workers[k].ID })
	o.view.Store(v)
	if o.cfg.Metrics != nil {
		o.cfg.Metrics.update(v, len(o.queue))
	}
}
