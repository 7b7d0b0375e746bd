package sim

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
)

// Sharding: Options.Shards > 1 splits the fleet and the jobs among that many
// independent scheduler engines, the same code the server runs, one per
// shard, as several leaders would each run one (docs/scheduling.md, "Beyond
// one leader"). Each engine sees only its shard's workers and jobs: its
// fair shares, queue order, worker scores and duration predictions are its
// own. The simulator keeps what is global in the real system too: a job is
// ready when its needs are done, whichever shard ran them.

// Ways to split a fleet among shards (Options.ShardBy).
const (
	// ShardByPool gives each shard whole pools (workers with the same
	// labels), balanced by CPU; a pool larger than a shard's share of the
	// fleet is cut into parts of at most that share first. A pipeline
	// goes to a shard drawn by its ID in proportion to each shard's room
	// for it (see partition).
	ShardByPool = "pool"
	// ShardByTenant gives each shard a slice of every pool (workers dealt
	// round-robin) and whole tenants, balanced by their work (CPU-seconds
	// of their jobs) largest first.
	ShardByTenant = "tenant"
)

// MaxShards bounds Options.Shards.
const MaxShards = 64

// shardPlan says which shard owns each worker and each job.
type shardPlan struct {
	n      int
	worker []int32 // per worker
	job    []int32 // per job
	tenant []int32 // per tenant, by tenant: its shard
}

// partition splits w among n shards (see ShardByPool and ShardByTenant).
// Each pipeline has a home shard: its tenant's, or by pool one drawn by its
// ID with a chance in proportion to each shard's room for its first job
// (cores, or GPUs for a job that asks for some). A job goes home when a
// worker there can hold it, else to a shard drawn the same way among those
// that can. A job that no worker can hold stays home (the run fails as it
// would unsharded).
func partition(w *Workload, n int, by string) (*shardPlan, error) {
	if n < 1 || n > MaxShards {
		return nil, fmt.Errorf("shards %d: want 1 to %d", n, MaxShards)
	}
	if by == "" {
		by = ShardByPool
	}
	if by != ShardByPool && by != ShardByTenant {
		return nil, fmt.Errorf("shard by %q: want pool or tenant", by)
	}
	sp := &shardPlan{n: n, worker: make([]int32, len(w.Workers)), job: make([]int32, w.NumJobs())}
	if n == 1 {
		return sp, nil
	}

	// Pools: workers with the same label set, in order of first worker.
	poolOf := map[string]int{}
	var pools [][]int32
	for i, wk := range w.Workers {
		ls := slices.Clone(wk.Labels)
		slices.Sort(ls)
		k := fmt.Sprint(ls)
		p, ok := poolOf[k]
		if !ok {
			p = len(pools)
			poolOf[k] = p
			pools = append(pools, nil)
		}
		pools[p] = append(pools[p], int32(i))
	}
	cpu := func(i int32) int64 { return max(w.Workers[i].CPUMilli, 1) }
	var total int64
	for i := range w.Workers {
		total += cpu(int32(i))
	}
	load := make([]int64, n) // CPU given to each shard
	switch by {
	case ShardByTenant:
		// Deal every pool's workers, largest first, round-robin from the
		// shard with the least CPU so far, so that small pools spread too.
		for _, ws := range pools {
			ws = slices.Clone(ws)
			slices.SortStableFunc(ws, func(a, b int32) int { return cmp.Compare(cpu(b), cpu(a)) })
			first := int32(slices.Index(load, slices.Min(load)))
			for k, i := range ws {
				s := (first + int32(k)) % int32(n)
				sp.worker[i] = s
				load[s] += cpu(i)
			}
		}
	case ShardByPool:
		// Cut pools larger than a shard's share into parts, then give the
		// parts, largest first, to the shard with the least CPU so far.
		share := (total + int64(n) - 1) / int64(n)
		var parts [][]int32
		for _, ws := range pools {
			var c int64
			for _, i := range ws {
				c += cpu(i)
			}
			k := int((c + share - 1) / share)
			k = max(min(k, len(ws)), 1)
			cut := make([][]int32, k)
			for x, i := range ws {
				cut[x%k] = append(cut[x%k], i)
			}
			parts = append(parts, cut...)
		}
		sum := func(ws []int32) (c int64) {
			for _, i := range ws {
				c += cpu(i)
			}
			return c
		}
		slices.SortStableFunc(parts, func(a, b []int32) int { return cmp.Compare(sum(b), sum(a)) })
		for _, ws := range parts {
			s := int32(slices.Index(load, slices.Min(load)))
			for _, i := range ws {
				sp.worker[i] = s
			}
			load[s] += sum(ws)
		}
	}

	// What each shard can hold: the distinct worker shapes in it, and how
	// many workers have each.
	type shape struct {
		shard          int32
		labels         []string
		cpu, mem, gpus int64
		count          int64
	}
	var shapes []shape
	shapeOf := map[string]int{}
	for i, wk := range w.Workers {
		k := fmt.Sprint(sp.worker[i], wk.Labels, wk.CPUMilli, wk.MemoryMiB, wk.GPU)
		x, ok := shapeOf[k]
		if !ok {
			x = len(shapes)
			shapeOf[k] = x
			shapes = append(shapes, shape{sp.worker[i], wk.Labels, wk.CPUMilli, wk.MemoryMiB, int64(wk.GPU), 0})
		}
		shapes[x].count++
	}
	// can[l] caches, per label set of jobs, the shapes with those labels.
	can := map[int32][]shape{}
	room := make([]float64, n)
	// capacity sets room[s] to what shard s has for job j: the GPUs (for a
	// job that asks for some) or the cores of its workers that can hold
	// it, 0 when none can.
	capacity := func(j int32) {
		l := w.JobLabels[j]
		cs, ok := can[l]
		if !ok {
			for _, sh := range shapes {
				if hasAll(sh.labels, w.Labels[l]) {
					cs = append(cs, sh)
				}
			}
			can[l] = cs
		}
		clear(room)
		for _, sh := range cs {
			if int64(w.JobCPU[j]) <= sh.cpu && int64(w.JobMemMiB[j]) <= sh.mem && int64(w.JobGPU[j]) <= sh.gpus {
				if w.JobGPU[j] > 0 {
					room[sh.shard] += float64(sh.count * sh.gpus)
				} else {
					room[sh.shard] += float64(sh.count * max(sh.cpu, 1))
				}
			}
		}
	}

	if by == ShardByTenant {
		work := make([]float64, len(w.Tenants))
		for _, p := range w.Pipelines {
			for j := p.First; j < p.First+p.Jobs; j++ {
				work[p.Tenant] += float64(w.JobCPU[j]) * w.JobDur[j].Seconds()
			}
		}
		order := make([]int32, len(w.Tenants))
		for t := range order {
			order[t] = int32(t)
		}
		slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(work[b], work[a]) })
		sp.tenant = make([]int32, len(w.Tenants))
		given := make([]float64, n)
		for _, t := range order {
			s := int32(slices.Index(given, slices.Min(given)))
			sp.tenant[t] = s
			given[s] += work[t]
		}
	}
	// draw picks a shard by u, each with a chance in proportion to its
	// room (the last one with room at u; -1 when none has room).
	draw := func(u float64) int32 {
		var total float64
		for _, r := range room {
			total += r
		}
		pick := int32(-1)
		x := u * total
		for s, r := range room {
			if r > 0 {
				pick = int32(s)
				if x < r {
					break
				}
				x -= r
			}
		}
		return pick
	}
	for _, p := range w.Pipelines {
		// u, from the pipeline's ID, draws its home: its tenant's shard,
		// or by pool a shard drawn in proportion to its room for the
		// pipeline's first job. Each job goes home when a worker there can
		// hold it (a pipeline stays whole when it can), else to a shard
		// drawn the same way for that job.
		h := fnv.New64a()
		h.Write([]byte(p.ID))
		u := float64(mix(h.Sum64())>>11) / (1 << 53)
		anywhere := int32(min(u*float64(n), float64(n-1)))
		home := anywhere
		if by == ShardByTenant {
			home = sp.tenant[p.Tenant]
		} else if p.Jobs > 0 {
			capacity(p.First)
			if s := draw(u); s >= 0 {
				home = s
			}
		}
		for j := p.First; j < p.First+p.Jobs; j++ {
			capacity(j)
			switch s := draw(u); {
			case room[home] > 0 || s < 0:
				sp.job[j] = home
			default:
				sp.job[j] = s
			}
		}
	}
	return sp, nil
}

// mix is splitmix64's finalizer: FNV's high bits barely change between IDs
// that differ in their last characters.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// ShardLoad is what one shard was given and did.
type ShardLoad struct {
	Workers   int     `json:"workers"`
	CPUMilli  int64   `json:"cpu_milli"`
	Jobs      int     `json:"jobs"`
	Decisions uint64  `json:"decisions"`
	PlanWallS float64 `json:"plan_wall_s"`
}
