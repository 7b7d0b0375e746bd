package orchestrator

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/pipeline"
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
	Jobs map[state.JobState]int
	// Demand is the queued jobs that the last scheduling pass could not
	// place, grouped by what they ask of a worker, largest group first (at
	// most MaxDemandGroups). The worker manager provisions for it.
	Demand   []DemandView
	demandAt time.Time
}

// MaxDemandGroups bounds View.Demand.
const MaxDemandGroups = 256

// DemandView is a group of queued jobs that ask for the same resources.
type DemandView struct {
	CPUMilli int64    `json:"cpu_milli"`
	Memory   int64    `json:"memory_bytes"`
	GPU      int      `json:"gpu"`
	Labels   []string `json:"labels"`
	Jobs     int      `json:"jobs"`
	// OldestQueued is when the group's longest-waiting job was queued.
	OldestQueued time.Time `json:"oldest_queued"`
	// Reason is why the group's jobs wait (a scheduler.ReasonCode), asked
	// of one of them: jobs of one shape wait for the same reason.
	Reason string `json:"reason,omitempty"`
	// Container is what the group's jobs run in, when they have an image
	// (they then have the same image, network and services): a pool that
	// makes a worker per container (Kubernetes) makes theirs from it.
	Container *ContainerView `json:"container,omitempty"`
	oneJob    string
}

// ContainerView is the container of a group of queued jobs with an image.
type ContainerView struct {
	Key      string             `json:"key"` // pipeline.ContainerKey
	Image    string             `json:"image"`
	Network  bool               `json:"network,omitempty"`
	Services []pipeline.Service `json:"services,omitempty"`
}

// WorkerView is one worker as the orchestrator sees it: the API's type,
// served as it is.
type WorkerView = wire.Worker

// View returns the latest picture of the live state.
func (o *Orchestrator) View() *View { return o.view.Load() }

func (o *Orchestrator) publishView(now time.Time, force bool) {
	if !force && now.Sub(o.lastPub) < 100*time.Millisecond {
		return
	}
	o.lastPub = now
	v := &View{At: now, ActiveRuns: len(o.runs), Jobs: map[state.JobState]int{}}
	for _, j := range o.jobs {
		if !j.rec.State.Final() {
			v.Jobs[j.rec.State]++
		}
	}
	for _, w := range o.workers {
		used := o.eng.Reserved(w.rec.ID)
		wv := WorkerView{
			ID: w.rec.ID, Pool: w.rec.Pool, State: w.rec.State, Labels: w.rec.Labels,
			CPUMilli: w.rec.CPUMilli, MemoryBytes: w.rec.MemoryBytes, GPU: w.rec.GPU,
			UsedCPUMilli: used.CPUMilli, UsedMemory: used.Memory, UsedGPU: used.GPU,
			Jobs: make([]string, 0, len(w.jobs)), FirstSeen: w.rec.FirstSeen, LastSeen: w.rec.LastSeen,
		}
		if wv.LastSeen.IsZero() {
			wv.LastSeen = w.lastSeen // known from a job's record only
		}
		for id := range w.jobs {
			wv.Jobs = append(wv.Jobs, id)
		}
		sort.Strings(wv.Jobs)
		v.Workers = append(v.Workers, wv)
	}
	sort.Slice(v.Workers, func(i, k int) bool { return v.Workers[i].ID < v.Workers[k].ID })
	// Grouping the queue costs time in proportion to it: at most twice a
	// second.
	if prev := o.view.Load(); prev != nil && now.Sub(prev.demandAt) < 500*time.Millisecond && len(o.queue) > 0 {
		v.Demand, v.demandAt = prev.Demand, prev.demandAt
	} else {
		v.Demand, v.demandAt = o.demand(), now
	}
	o.view.Store(v)
	if o.cfg.Metrics != nil {
		o.cfg.Metrics.update(v, len(o.queue))
	}
}

// demand groups the queue by request. The view is published after the
// batch's scheduling pass, so every job still queued is one no worker could
// take.
func (o *Orchestrator) demand() []DemandView {
	if len(o.queue) == 0 {
		return nil
	}
	type groupKey struct {
		cpu, mem int64
		gpu      int
		labels   string
		ctr      string
	}
	groups := map[groupKey]*DemandView{}
	for _, j := range o.queue {
		labels := j.spec.Labels
		if !sort.StringsAreSorted(labels) {
			labels = slices.Clone(labels)
			sort.Strings(labels)
		}
		k := groupKey{cpu: j.spec.CPUMilli, mem: j.spec.Memory, gpu: j.spec.GPU}
		if len(labels) > 0 {
			k.labels = strings.Join(labels, "\x00")
		}
		k.ctr = pipeline.ContainerKey(&j.spec)
		g := groups[k]
		if g == nil {
			g = &DemandView{CPUMilli: j.spec.CPUMilli, Memory: j.spec.Memory, GPU: j.spec.GPU, Labels: labels, OldestQueued: j.rec.QueuedAt, oneJob: j.rec.ID}
			if k.ctr != "" {
				g.Container = &ContainerView{Key: k.ctr, Image: j.spec.Image, Network: j.spec.Network, Services: j.spec.Services}
			}
			groups[k] = g
		}
		g.Jobs++
		if j.rec.QueuedAt.Before(g.OldestQueued) {
			g.OldestQueued = j.rec.QueuedAt
		}
	}
	out := make([]DemandView, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].Jobs != out[k].Jobs {
			return out[i].Jobs > out[k].Jobs
		}
		return out[i].OldestQueued.Before(out[k].OldestQueued)
	})
	if len(out) > MaxDemandGroups {
		out = out[:MaxDemandGroups]
	}
	for i := range out {
		out[i].Reason = string(o.why(out[i].oneJob).Code)
		if out[i].Reason == "" {
			out[i].Reason = "unplaced" // fits a worker now: the next pass places it
		}
	}
	return out
}
