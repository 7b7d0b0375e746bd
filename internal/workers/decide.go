package workers

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Scaler decides what the pools need: a pure function of a snapshot, so
// that the live Manager, tests and the autoscaler's simulations share it.
// Reactive is the default; internal/autoscale plugs a predictive one in
// through Config.Scaler.
type Scaler interface {
	Decide(Snapshot) []Action
}

// Forecaster is a Scaler that can say how many workers it expects a pool to
// need soon; `hodei pools` shows it.
type Forecaster interface {
	Forecast(pool string) (workers int, ok bool)
}

// CostAccount is what a pool's workers cost since the scaler started
// (WorkerHours counts every worker, from one snapshot to the next).
type CostAccount = wire.CostAccount

// Accountant is a Scaler that keeps cost accounts; `hodei pools` shows
// them.
type Accountant interface {
	Account(pool string) (CostAccount, bool)
}

// Snapshot is everything a decision depends on.
type Snapshot struct {
	Now    time.Time
	Pools  []PoolSnapshot
	Demand []Demand
}

// PoolSnapshot is one pool: its configuration, the workers the Manager owns
// in it, and what its provider allows.
type PoolSnapshot struct {
	Config poolsfile.PoolConfig
	// Labels are the labels its workers will have (the shape's and those
	// every agent has).
	Labels  []string
	Workers []WorkerSnapshot
	// Healthy is false while the provider's circuit is open.
	Healthy bool
	// CanCreate is how many more workers the provider can create (-1:
	// unknown).
	CanCreate int
	// Containers says that the provider makes a worker per container
	// (ContainerWorkers): demand with a Container fits the pool without
	// the docker label, one job per worker.
	Containers bool
}

// WorkerState is a worker's state as the decision sees it.
type WorkerState string

// Worker states.
const (
	// WorkerPending: created, not joined yet.
	WorkerPending WorkerState = "pending"
	WorkerIdle    WorkerState = "idle"
	WorkerBusy    WorkerState = "busy"
	// WorkerDraining: takes no new jobs.
	WorkerDraining WorkerState = "draining"
	// WorkerLost: stopped heartbeating; WorkerExited: its provider says
	// it exited. Both only need terminating.
	WorkerLost   WorkerState = "lost"
	WorkerExited WorkerState = "exited"
)

// WorkerSnapshot is one worker owned by the Manager.
type WorkerSnapshot struct {
	ID        string
	State     WorkerState
	Jobs      int
	CreatedAt time.Time
	// IdleSince is when it last became idle with no jobs (zero if busy).
	IdleSince time.Time
	// DrainRequested is set once the Manager asked it to drain.
	DrainRequested bool
	// Container is the container key of a worker made for the jobs of
	// one container (WorkerSpec.Container): it takes no other job, and
	// does not count toward the pool's min.
	Container string
}

// Demand is a group of queued jobs that no running worker could take.
type Demand = wire.Demand

// Container is what a group of queued jobs with an image runs in: a pool
// of ContainerWorkers makes a worker for it.
type Container = wire.Container

// FitsNoPool returns the demand that no pool's shape (cpu, memory, gpu,
// labels) can take, whatever its size: queued jobs that wait until an agent
// that fits joins by hand, or forever.
func FitsNoPool(s Snapshot) []Demand {
	var out []Demand
	for _, d := range s.Demand {
		fits := false
		for i := range s.Pools {
			if jobsPerWorker(&s.Pools[i], d) > 0 {
				fits = true
				break
			}
		}
		if !fits {
			out = append(out, d)
		}
	}
	return out
}

// ActionKind is what to do.
type ActionKind string

// Action kinds.
const (
	ActionCreate    ActionKind = "create"
	ActionDrain     ActionKind = "drain"
	ActionTerminate ActionKind = "terminate"
)

// Action is one step of a decision.
type Action struct {
	Kind     ActionKind
	Pool     string
	WorkerID string // drain and terminate
	Reason   string
	// Container, on a create, makes the worker for the jobs of that
	// container (WorkerSpec.Container).
	Container *Container
}

// Reactive is the default Scaler: it reacts to what is queued now.
//
//   - Every pool keeps at least min workers.
//   - Queued jobs that no running worker took go to the cheapest pool whose
//     shape fits them (cpu, memory, gpu, labels), then the next cheapest,
//     as far as max allows; workers that are starting or idle count first.
//   - A worker idle for idle_timeout is drained, as long as the pool stays
//     at min and no demand waits for the pool; a draining worker with no
//     job left, a lost one and one that exited are terminated.
//   - A worker that has not joined within JoinTimeout is terminated.
//   - On a pool of ContainerWorkers, each queued job with an image gets a
//     worker made for its container (one starting for the same container
//     is used first); these do not count toward min and are drained when
//     idle.
type Reactive struct {
	// JoinTimeout is how long a created worker may take to join, on top
	// of the pool's startup_delay (2 min by default).
	JoinTimeout time.Duration
}

// Decide implements Scaler.
func (r Reactive) Decide(s Snapshot) []Action {
	join := r.JoinTimeout
	if join <= 0 {
		join = 2 * time.Minute
	}
	var out []Action
	assigned := AssignDemand(s)
	for _, p := range sortedPools(s.Pools) {
		cfg := p.Config
		// Workers made for one container do not count toward min: they
		// take no other job.
		active, total := 0, len(p.Workers)
		for _, w := range p.Workers {
			switch w.State {
			case WorkerPending, WorkerIdle, WorkerBusy:
				if !w.DrainRequested && w.Container == "" {
					active++
				}
			}
		}
		// Terminate what is over, and what never joined.
		for _, w := range p.Workers {
			switch {
			case w.State == WorkerExited:
				out = append(out, Action{Kind: ActionTerminate, Pool: cfg.Name, WorkerID: w.ID, Reason: "exited"})
			case w.State == WorkerLost:
				out = append(out, Action{Kind: ActionTerminate, Pool: cfg.Name, WorkerID: w.ID, Reason: "lost (no heartbeat)"})
			case w.State == WorkerDraining && w.Jobs == 0:
				out = append(out, Action{Kind: ActionTerminate, Pool: cfg.Name, WorkerID: w.ID, Reason: "drained"})
			case w.State == WorkerPending && s.Now.Sub(w.CreatedAt) > cfg.StartupDelay+join:
				out = append(out, Action{Kind: ActionTerminate, Pool: cfg.Name, WorkerID: w.ID,
					Reason: fmt.Sprintf("did not join within %s", (cfg.StartupDelay + join).Round(time.Second))})
				if w.Container == "" {
					active--
				}
			}
		}
		room := cfg.Max - total
		if p.CanCreate >= 0 {
			room = min(room, p.CanCreate)
		}
		// Workers for one container first: they are for queued jobs.
		pd := assigned[cfg.Name]
		keyed := 0
		for _, kc := range pd.Containers {
			for range kc.Workers {
				keyed++
				if room > 0 && p.Healthy {
					out = append(out, Action{Kind: ActionCreate, Pool: cfg.Name, Container: kc.Container,
						Reason: "a queued job in image " + kc.Container.Image + " fits no running worker"})
					room--
				}
			}
		}
		want := max(cfg.Min-active, 0) + pd.Create - keyed
		if n := min(want, room); n > 0 && p.Healthy {
			reason := "min"
			if pd.Create > keyed {
				reason = fmt.Sprintf("%d queued jobs fit no running worker", pd.Jobs)
			}
			for i := 0; i < n; i++ {
				out = append(out, Action{Kind: ActionCreate, Pool: cfg.Name, Reason: reason})
			}
			active += n
		}
		// Scale down: the longest idle first, never below min, and not
		// while jobs wait for this pool.
		if assigned[cfg.Name].Jobs > 0 {
			continue
		}
		idle := make([]WorkerSnapshot, 0, len(p.Workers))
		for _, w := range p.Workers {
			if w.State == WorkerIdle && w.Jobs == 0 && !w.DrainRequested && !w.IdleSince.IsZero() && s.Now.Sub(w.IdleSince) >= cfg.IdleTimeout {
				idle = append(idle, w)
			}
		}
		sort.SliceStable(idle, func(i, k int) bool { return idle[i].IdleSince.Before(idle[k].IdleSince) })
		for _, w := range idle {
			if w.Container != "" {
				// Made for a job that went elsewhere (or was canceled).
				out = append(out, Action{Kind: ActionDrain, Pool: cfg.Name, WorkerID: w.ID, Reason: fmt.Sprintf("idle for %s", s.Now.Sub(w.IdleSince).Round(time.Second))})
				continue
			}
			if active <= cfg.Min {
				continue
			}
			out = append(out, Action{Kind: ActionDrain, Pool: cfg.Name, WorkerID: w.ID, Reason: fmt.Sprintf("idle for %s", s.Now.Sub(w.IdleSince).Round(time.Second))})
			active--
		}
	}
	return out
}

// PoolDemand is the demand a decision gives one pool.
type PoolDemand struct {
	Jobs   int // queued jobs that go to this pool
	Create int // workers to create for them
	// Containers are those of Create to make for one container each (a
	// pool of ContainerWorkers).
	Containers []ContainerCreate
}

// ContainerCreate is how many workers to make for one container.
type ContainerCreate struct {
	Container *Container
	Workers   int
}

// AssignDemand gives each group of demand to pools, cheapest first among
// those whose shape fits, using workers that are starting or idle before new
// ones, and as far as each pool's max (and its provider) allows. Demand that
// fits no pool is left out.
func AssignDemand(s Snapshot) map[string]PoolDemand {
	type poolRoom struct {
		p     *PoolSnapshot
		spare int // starting or idle workers not yet counted for demand
		room  int // workers it may still create
		// keyed are the starting or idle workers made for one container,
		// by key, not yet counted for demand.
		keyed map[string]int
	}
	pools := sortedPools(s.Pools)
	rooms := make([]*poolRoom, 0, len(pools))
	for i := range pools {
		p := &pools[i]
		pr := &poolRoom{p: p, room: p.Config.Max - len(p.Workers)}
		if p.CanCreate >= 0 {
			pr.room = min(pr.room, p.CanCreate)
		}
		if !p.Healthy {
			pr.room = 0
		}
		for _, w := range p.Workers {
			if (w.State == WorkerPending || w.State == WorkerIdle && w.Jobs == 0) && !w.DrainRequested {
				if w.Container != "" {
					if pr.keyed == nil {
						pr.keyed = map[string]int{}
					}
					pr.keyed[w.Container]++
				} else {
					pr.spare++
				}
			}
		}
		// Workers created to reach min are not spare for demand: they are
		// counted by the min rule.
		active := 0
		for _, w := range p.Workers {
			if (w.State == WorkerPending || w.State == WorkerIdle || w.State == WorkerBusy) && !w.DrainRequested && w.Container == "" {
				active++
			}
		}
		if short := p.Config.Min - active; short > 0 {
			pr.room -= short
			pr.spare += short
		}
		pr.room = max(pr.room, 0)
		rooms = append(rooms, pr)
	}
	sort.SliceStable(rooms, func(i, k int) bool { return rooms[i].p.Config.CostPerHour < rooms[k].p.Config.CostPerHour })
	out := map[string]PoolDemand{}
	for _, d := range s.Demand {
		left := d.Jobs
		for _, pr := range rooms {
			if left <= 0 {
				break
			}
			per := jobsPerWorker(pr.p, d)
			if per == 0 {
				continue
			}
			pd := out[pr.p.Config.Name]
			if keyedDemand(pr.p, d) {
				// A worker per job, made for its container: spare ones
				// made for it first.
				if took := min(left, pr.keyed[d.Container.Key]); took > 0 {
					pr.keyed[d.Container.Key] -= took
					left -= took
					pd.Jobs += took
				}
				if n := min(left, pr.room); n > 0 {
					pr.room -= n
					left -= n
					pd.Jobs += n
					pd.Create += n
					pd.Containers = append(pd.Containers, ContainerCreate{Container: d.Container, Workers: n})
				}
				if pd.Jobs > 0 {
					out[pr.p.Config.Name] = pd
				}
				continue
			}
			// Spare workers first.
			if pr.spare > 0 {
				n := min(pr.spare, ceilDiv(left, per))
				pr.spare -= n
				took := min(left, n*per)
				left -= took
				pd.Jobs += took
			}
			if left > 0 && pr.room > 0 {
				n := min(pr.room, ceilDiv(left, per))
				pr.room -= n
				took := min(left, n*per)
				left -= took
				pd.Jobs += took
				pd.Create += n
			}
			if pd.Jobs > 0 {
				out[pr.p.Config.Name] = pd
			}
		}
	}
	return out
}

// jobsPerWorker is how many jobs of d one worker of the pool takes at once
// (0 if they do not fit).
func jobsPerWorker(p *PoolSnapshot, d Demand) int {
	sh := p.Config.Shape
	if d.CPUMilli > sh.CPUMilli || d.Memory > sh.Memory || d.GPU > sh.GPU {
		return 0
	}
	keyed := keyedDemand(p, d)
	for _, l := range d.Labels {
		// A worker made for the jobs' container runs them without an
		// engine (it is their container).
		if !slices.Contains(p.Labels, l) && (!keyed || l != pipeline.DockerLabel) {
			return 0
		}
	}
	if p.Config.Ephemeral || keyed {
		return 1
	}
	n := 1 << 20
	if d.CPUMilli > 0 {
		n = min(n, int(sh.CPUMilli/d.CPUMilli))
	}
	if d.Memory > 0 {
		n = min(n, int(sh.Memory/d.Memory))
	}
	if d.GPU > 0 {
		n = min(n, sh.GPU/d.GPU)
	}
	return max(n, 1)
}

// keyedDemand says whether the pool gives demand d workers made for its
// container (one job each).
func keyedDemand(p *PoolSnapshot, d Demand) bool {
	return d.Container != nil && p.Containers
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func sortedPools(ps []PoolSnapshot) []PoolSnapshot {
	out := slices.Clone(ps)
	sort.SliceStable(out, func(i, k int) bool { return out[i].Config.Name < out[k].Config.Name })
	return out
}
