package scheduler

import (
	"slices"
	"strings"

	pipelinefile "github.com/hodei-ci/hodei/internal/pipeline"
)

// index interns the strings the engine sees many times (labels, label sets,
// keys, request shapes) so that per-job and per-worker state holds small
// integers.
type index struct {
	labelIDs  map[string]int32
	labelStrs []string // by label id
	requested []bool   // by label id: some job asked for it
	// exclusive, by label id: a label a worker has only for the jobs
	// that carry it (pipeline.ContainerLabelPrefix; see compatible).
	exclusive []bool
	lsets     []labelSet
	lsetIDs   map[string]int32
	keys      []keyState
	keyIDs    map[string]int32
	shapes    []shape
	shapeIDs  map[shapeKey]int32
	groups    []wgroup
	groupIDs  map[groupKey]int32
	jobLsets  []int32 // label sets jobs have used
}

// labelSet is a sorted set of label ids. A label set used by jobs also
// knows the worker groups that can serve it and its parked shapes.
type labelSet struct {
	labels    []int32
	job       bool
	compatCPU []int32 // compatible groups without gpus, in creation order
	compatGPU []int32 // compatible groups with gpus
	parked    []int32 // parked shapes with this label set
	// fifo holds its jobs of priority >= 0 (hodei, with Slack) in the
	// order they were enqueued, from its virtual FIFO pointer on: the first
	// entry is the next job FIFO would place on this pool.
	fifo []heapEntry
}

// keyState is what the engine remembers per job key: the workers that ran it
// last (for cache affinity).
type keyState struct {
	name string
	ws   [keyWorkers]int32
	wj   [keyWorkers]int64 // join stamp of each, to ignore a reused slot
	n    uint8
	at   uint8
}

const (
	keyWorkers     = 4 // workers remembered per key
	workerKeys     = 8 // keys remembered per worker (its warm caches)
	noWorker       = int32(-1)
	noKey          = int32(-1)
	noPos          = int32(-1)
	dimCPU         = 0
	dimMem         = 1
	dimGPU         = 2
	loadScale      = 1 << 30
	unboundedLow   = -1 << 62
	groupNone      = int32(-1)
	shapeNotParked = int32(-1)
)

type shapeKey struct {
	lset int32
	req  Resources
}

// shape is a label set and a request: all jobs of a shape fit exactly the
// same workers, which is what makes parking a whole shape correct.
type shape struct {
	lset   int32
	req    Resources
	parked bool
	n      int32   // queued jobs
	ppos   int32   // position in its label set's parked list
	queues []int32 // every (class, tenant, shape) queue of this shape
}

type groupKey struct {
	lset   int32
	gpu    bool
	spread bool
}

type treeKind uint8

const (
	kindOrder treeKind = iota // by join order (fifo)
	kindLoad                  // by dominant load (least-loaded, spread)
	kindCPU                   // by free cpu (binpack)
	kindMem                   // by free memory (binpack)
	kindGPU                   // by free gpu (binpack, gpu groups)
	nKinds
)

// group is a set of workers that look the same to the filters (the labels
// jobs ask for, gpu or not) and share a scorer.
type wgroup struct {
	key      groupKey
	members  []int32 // local index -> worker, noWorker if free
	free     []int32
	n        int // workers in the trees (schedulable)
	trees    [nKinds]*treap
	kinds    []treeKind
	ref      Resources // largest capacity of any member ever, per dimension
	jobLsets []int32   // job label sets this group can serve
}

func (x *index) init() {
	x.labelIDs = map[string]int32{}
	x.lsetIDs = map[string]int32{}
	x.keyIDs = map[string]int32{}
	x.shapeIDs = map[shapeKey]int32{}
	x.groupIDs = map[groupKey]int32{}
}

func (x *index) label(s string) int32 {
	if id, ok := x.labelIDs[s]; ok {
		return id
	}
	id := int32(len(x.requested))
	x.labelIDs[s] = id
	x.requested = append(x.requested, false)
	x.exclusive = append(x.exclusive, strings.HasPrefix(s, pipelinefile.ContainerLabelPrefix))
	x.labelStrs = append(x.labelStrs, s)
	return id
}

// labelName is the label of an id.
func (x *index) labelName(id int32) string { return x.labelStrs[id] }

// labels interns a list of labels into sorted, deduplicated ids.
func (x *index) labels(ls []string) []int32 {
	if len(ls) == 0 {
		return nil
	}
	out := make([]int32, 0, len(ls))
	for _, l := range ls {
		out = append(out, x.label(l))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (x *index) lset(ids []int32) int32 {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(itoa(id))
		b.WriteByte(',')
	}
	k := b.String()
	if id, ok := x.lsetIDs[k]; ok {
		return id
	}
	id := int32(len(x.lsets))
	x.lsetIDs[k] = id
	x.lsets = append(x.lsets, labelSet{labels: slices.Clone(ids)})
	return id
}

func itoa(v int32) string {
	var buf [12]byte
	i := len(buf)
	u := uint32(v)
	for {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	return string(buf[i:])
}

// compatible reports whether a worker with the sorted labels worker may
// take a job with the sorted labels job: the worker has every label of the
// job but its exclusive ones (a container key, which an agent with a
// Docker engine serves without having it), and the job has every
// exclusive label of the worker (a worker made for one container takes
// only the jobs of that container).
func (x *index) compatible(job, worker []int32) bool {
	i := 0
	for _, v := range job {
		if x.exclusive[v] {
			continue
		}
		for i < len(worker) && worker[i] < v {
			i++
		}
		if i == len(worker) || worker[i] != v {
			return false
		}
		i++
	}
	for _, v := range worker {
		if x.exclusive[v] {
			if _, ok := slices.BinarySearch(job, v); !ok {
				return false
			}
		}
	}
	return true
}

func (x *index) key(s string) int32 {
	if s == "" {
		return noKey
	}
	if id, ok := x.keyIDs[s]; ok {
		return id
	}
	id := int32(len(x.keys))
	x.keyIDs[s] = id
	x.keys = append(x.keys, keyState{name: s})
	return id
}

func (x *index) shape(lset int32, r Resources) int32 {
	k := shapeKey{lset, r}
	if id, ok := x.shapeIDs[k]; ok {
		return id
	}
	id := int32(len(x.shapes))
	x.shapeIDs[k] = id
	x.shapes = append(x.shapes, shape{lset: lset, req: r, ppos: shapeNotParked})
	return id
}

// markJobLset makes a label set known as one jobs use: it gets its list of
// compatible groups.
func (x *index) markJobLset(ls int32) {
	s := &x.lsets[ls]
	if s.job {
		return
	}
	s.job = true
	x.jobLsets = append(x.jobLsets, ls)
	for g := range x.groups {
		x.link(int32(g), ls)
	}
}

func (x *index) link(g, ls int32) {
	gr := &x.groups[g]
	s := &x.lsets[ls]
	if !x.compatible(s.labels, x.lsets[gr.key.lset].labels) {
		return
	}
	if gr.key.gpu {
		s.compatGPU = append(s.compatGPU, g)
	} else {
		s.compatCPU = append(s.compatCPU, g)
	}
	gr.jobLsets = append(gr.jobLsets, ls)
}

func (x *index) group(k groupKey, policy Policy) int32 {
	if id, ok := x.groupIDs[k]; ok {
		return id
	}
	id := int32(len(x.groups))
	x.groupIDs[k] = id
	g := wgroup{key: k}
	switch {
	case policy == PolicyFIFO:
		g.kinds = []treeKind{kindOrder}
	case policy == PolicyLeastLoaded || k.spread:
		g.kinds = []treeKind{kindLoad}
	case k.gpu:
		g.kinds = []treeKind{kindCPU, kindMem, kindGPU}
	default:
		g.kinds = []treeKind{kindCPU, kindMem}
	}
	for _, kd := range g.kinds {
		g.trees[kd] = newTreap()
	}
	x.groups = append(x.groups, g)
	for _, ls := range x.jobLsets {
		x.link(id, ls)
	}
	return id
}

// worker is one worker of the fleet.
type eworker struct {
	id          string
	labels      []int32 // all its labels, sorted ids
	capacity    Resources
	used        Resources
	join        int64
	group       int32
	local       int32
	live        bool
	schedulable bool
	inTrees     bool
	spread      bool
	// kept: the worker is kept for an overdue job that fits nowhere (see
	// Engine.keepFor); it is out of the trees, so nothing else starts on it.
	kept     bool
	jobHead  int32 // placed jobs, linked through job.prevOnWorker/nextOnWorker
	nJobs    int32
	maxJobs  int32 // 0: no limit
	recent   [workerKeys]int32
	recentN  uint8
	recentAt uint8
}

// full says the worker runs as many jobs as it may, whatever its free
// resources.
func (w *eworker) full() bool { return w.maxJobs > 0 && w.nJobs >= w.maxJobs }

func (w *eworker) free() Resources {
	return Resources{w.capacity.CPUMilli - w.used.CPUMilli, w.capacity.Memory - w.used.Memory, w.capacity.GPU - w.used.GPU}
}

func fits(free, r *Resources) bool {
	return free.CPUMilli >= r.CPUMilli && free.Memory >= r.Memory && free.GPU >= r.GPU
}

// load is the worker's dominant share in use, scaled to an integer.
func (w *eworker) load() int64 {
	var s float64
	if c := w.capacity.CPUMilli; c > 0 {
		s = max(s, float64(w.used.CPUMilli)/float64(c))
	}
	if c := w.capacity.Memory; c > 0 {
		s = max(s, float64(w.used.Memory)/float64(c))
	}
	if c := w.capacity.GPU; c > 0 {
		s = max(s, float64(w.used.GPU)/float64(c))
	}
	return int64(s * loadScale)
}

func (w *eworker) warm(k int32) bool {
	for i := 0; i < int(w.recentN); i++ {
		if w.recent[i] == k {
			return true
		}
	}
	return false
}

func (w *eworker) remember(k int32) {
	if w.warm(k) {
		return
	}
	w.recent[w.recentAt] = k
	w.recentAt = (w.recentAt + 1) % workerKeys
	if w.recentN < workerKeys {
		w.recentN++
	}
}

func (k *keyState) remember(w int32, join int64) {
	for i := 0; i < int(k.n); i++ {
		if k.ws[i] == w && k.wj[i] == join {
			return
		}
	}
	k.ws[k.at], k.wj[k.at] = w, join
	k.at = (k.at + 1) % keyWorkers
	if k.n < keyWorkers {
		k.n++
	}
}

// groupKeyOf is the group a worker belongs to: the labels it has that some
// job asked for (labels no job uses, like a host name, do not split groups)
// and its exclusive ones (which keep jobs away even when none asks for
// them), gpu or not, and its scorer.
func (e *Engine) groupKeyOf(w *eworker) groupKey {
	var eff []int32
	for _, l := range w.labels {
		if e.idx.requested[l] || e.idx.exclusive[l] {
			eff = append(eff, l)
		}
	}
	return groupKey{lset: e.idx.lset(eff), gpu: w.capacity.GPU > 0, spread: w.spread}
}

// joinGroup puts a worker into its group (and its trees if schedulable).
func (e *Engine) joinGroup(wi int32) {
	w := &e.workers[wi]
	gi := e.idx.group(e.groupKeyOf(w), e.policy)
	g := &e.idx.groups[gi]
	var local int32
	if n := len(g.free); n > 0 {
		local = g.free[n-1]
		g.free = g.free[:n-1]
		g.members[local] = wi
	} else {
		local = int32(len(g.members))
		g.members = append(g.members, wi)
	}
	w.group, w.local = gi, local
	g.ref.CPUMilli = max(g.ref.CPUMilli, w.capacity.CPUMilli)
	g.ref.Memory = max(g.ref.Memory, w.capacity.Memory)
	g.ref.GPU = max(g.ref.GPU, w.capacity.GPU)
	e.syncTrees(wi)
}

func (e *Engine) leaveGroup(wi int32) {
	w := &e.workers[wi]
	if w.group == groupNone {
		return
	}
	e.untree(wi)
	g := &e.idx.groups[w.group]
	g.members[w.local] = noWorker
	g.free = append(g.free, w.local)
	w.group, w.local = groupNone, 0
}

// treeKey returns a worker's key in a tree of the given kind.
func (w *eworker) treeKey(k treeKind) int64 {
	switch k {
	case kindLoad:
		return w.load()
	case kindCPU:
		return w.capacity.CPUMilli - w.used.CPUMilli
	case kindMem:
		return w.capacity.Memory - w.used.Memory
	case kindGPU:
		return int64(w.capacity.GPU - w.used.GPU)
	}
	return w.join
}

func (e *Engine) untree(wi int32) {
	w := &e.workers[wi]
	if !w.inTrees {
		return
	}
	g := &e.idx.groups[w.group]
	for _, k := range g.kinds {
		g.trees[k].remove(w.local)
	}
	w.inTrees = false
	g.n--
}

// syncTrees brings a worker's entries in its group's trees up to date with
// its free capacity and schedulability.
func (e *Engine) syncTrees(wi int32) {
	e.untree(wi)
	w := &e.workers[wi]
	if !w.live || !w.schedulable || w.group == groupNone || w.full() || w.kept {
		return
	}
	g := &e.idx.groups[w.group]
	free := w.free()
	for _, k := range g.kinds {
		g.trees[k].insert(w.local, w.treeKey(k), w.join, free)
	}
	w.inTrees = true
	g.n++
}

// regroup moves every worker with one of the given labels to the group its
// labels now call for (after a job asked for a label for the first time).
func (e *Engine) regroup(newLabels []int32) {
	for wi := range e.workers {
		w := &e.workers[wi]
		if !w.live {
			continue
		}
		hit := false
		for _, l := range newLabels {
			if _, ok := slices.BinarySearch(w.labels, l); ok {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		e.leaveGroup(int32(wi))
		e.joinGroup(int32(wi))
	}
}

// dominant returns the dimension in which r is largest relative to the
// group's capacity.
func dominant(r *Resources, ref *Resources) int {
	d, best := dimCPU, -1.0
	if ref.CPUMilli > 0 {
		best = float64(r.CPUMilli) / float64(ref.CPUMilli)
	}
	if ref.Memory > 0 {
		if s := float64(r.Memory) / float64(ref.Memory); s > best {
			d, best = dimMem, s
		}
	}
	if ref.GPU > 0 && r.GPU > 0 {
		if s := float64(r.GPU) / float64(ref.GPU); s > best {
			d = dimGPU
		}
	}
	return d
}

func dimOf(r *Resources, d int) int64 {
	switch d {
	case dimMem:
		return r.Memory
	case dimGPU:
		return int64(r.GPU)
	}
	return r.CPUMilli
}

// badness scores a fitting worker for a request under its scorer: lower is
// better, in [0, 1] for a worker within capacity. Bin-packing: the share of
// the dominant resource left over (best fit). Spread: the dominant load
// after placement.
func (e *Engine) badness(w *eworker, r *Resources, d int) float64 {
	if w.spread {
		after := *w
		after.used.CPUMilli += r.CPUMilli
		after.used.Memory += r.Memory
		after.used.GPU += r.GPU
		return float64(after.load()) / loadScale
	}
	c := dimOf(&w.capacity, d)
	if c <= 0 {
		return 0
	}
	free := w.free()
	return float64(dimOf(&free, d)-dimOf(r, d)) / float64(c)
}

// chooseWorker returns the worker for a job of the given shape and key, or
// noWorker if it fits nowhere now.
func (e *Engine) chooseWorker(sh *shape, key int32) int32 {
	ls := &e.idx.lsets[sh.lset]
	r := &sh.req
	if e.policy == PolicyFIFO || e.policy == PolicyLeastLoaded {
		// Each group's tree of the policy's kind gives its first worker
		// that fits: the earliest joined (its key is the join) or the least
		// loaded. Across groups the smallest key wins, then the earliest
		// join.
		kind := kindOrder
		if e.policy == PolicyLeastLoaded {
			kind = kindLoad
		}
		best := noWorker
		var bestKey, bestJoin int64
		for _, list := range [2][]int32{ls.compatCPU, ls.compatGPU} {
			for _, gi := range list {
				g := &e.idx.groups[gi]
				t := g.trees[kind]
				if !t.fitsAnywhere(r) {
					continue
				}
				if n := t.first(t.root, unboundedLow, r); n != nilNode {
					wi := g.members[n]
					w := &e.workers[wi]
					if k := t.n[n].k1; best == noWorker || k < bestKey || (k == bestKey && w.join < bestJoin) {
						best, bestKey, bestJoin = wi, k, w.join
					}
				}
			}
		}
		return best
	}

	// Hodei. Warm workers first: any that fits now, of the right kind.
	if key >= 0 {
		ks := &e.idx.keys[key]
		best, bestBad := noWorker, 0.0
		for i := 0; i < int(ks.n); i++ {
			wi := ks.ws[i]
			if int(wi) >= len(e.workers) {
				continue
			}
			w := &e.workers[wi]
			if !w.live || w.join != ks.wj[i] || !w.inTrees || !w.warm(key) {
				continue
			}
			if r.GPU == 0 && w.capacity.GPU > 0 {
				continue // never spend a gpu worker on a cache hit
			}
			free := w.free()
			if !fits(&free, r) || !e.groupServes(w.group, sh.lset) {
				continue
			}
			bad := e.badness(w, r, dominant(r, &e.idx.groups[w.group].ref))
			if best == noWorker || bad < bestBad || (bad == bestBad && w.join < e.workers[best].join) {
				best, bestBad = wi, bad
			}
		}
		if best != noWorker {
			return best
		}
	}
	if r.GPU == 0 {
		if w := e.bestOf(ls.compatCPU, r); w != noWorker {
			return w
		}
	}
	return e.bestOf(ls.compatGPU, r)
}

func (e *Engine) groupServes(gi, ls int32) bool {
	return e.idx.compatible(e.idx.lsets[ls].labels, e.idx.lsets[e.idx.groups[gi].key.lset].labels)
}

// bestOf returns the best worker for r among the groups, by each group's
// scorer, or noWorker.
func (e *Engine) bestOf(groups []int32, r *Resources) int32 {
	best, bestBad := noWorker, 0.0
	for _, gi := range groups {
		g := &e.idx.groups[gi]
		var n int32
		var d int
		if g.key.spread || len(g.kinds) == 1 {
			t := g.trees[kindLoad]
			if !t.fitsAnywhere(r) {
				continue
			}
			n = t.first(t.root, unboundedLow, r)
		} else {
			d = dominant(r, &g.ref)
			t := g.trees[kindCPU+treeKind(d)]
			if !t.fitsAnywhere(r) {
				continue
			}
			n = t.first(t.root, dimOf(r, d), r)
		}
		if n == nilNode {
			continue
		}
		wi := g.members[n]
		w := &e.workers[wi]
		bad := e.badness(w, r, d)
		if best == noWorker || bad < bestBad || (bad == bestBad && w.join < e.workers[best].join) {
			best, bestBad = wi, bad
		}
	}
	return best
}
