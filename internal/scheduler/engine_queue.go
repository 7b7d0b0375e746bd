package scheduler

// The queue is a hierarchy of heaps, each level keyed so that the next job
// is found in O(log) without looking at the others:
//
//	class (priority)     picked by a scan of the few classes present (aging)
//	  tenantQueue        (class, tenant): a heap of them per class, by urgency and fair share
//	    shapeQueue       (class, tenant, shape): a heap of them per tenantQueue, by their head job
//	      job            a heap of heapEntry per shapeQueue, by static key, then enqueue sequence
//
// Splitting a tenant's jobs by shape is what lets a shape that fits nowhere
// be parked: its queues leave the tenant heaps, and come back when a worker
// that could hold it frees capacity.

const (
	jsPending uint8 = iota // added, not ready (or released, dequeued)
	jsQueued
	jsPlaced
	jsDone
)

// ejob is the engine's per-job state; it is kept small (about 80 bytes) since
// the simulator holds a million of them.
type ejob struct {
	id           string
	pipe         int32
	key          int32
	shape        int32
	worker       int32
	prevOnWorker int32
	nextOnWorker int32
	queue        int32 // its shapeQueue while queued
	heapPos      int32 // position in the queue's heap
	dur          float32
	cp           float32 // predicted downstream path, seconds
	state        uint8
	prio         uint8
	counted      bool // dur is part of its pipeline's remaining work
	queueSeq     uint64
	ready        int64 // when it was last enqueued
	started      int64 // when it was last placed
	lst          int64 // latest start time (hodei), see Enqueue
	live         bool
}

type pipeline struct {
	id      string
	tenant  int32
	prio    uint8
	live    bool
	arrived bool
	arrival int64
	work    float64 // remaining predicted work, seconds
	cp      float64 // predicted critical path, seconds
	jobs    []int32
}

type tenant struct {
	name         string
	weight       float64
	held         Resources
	entitled     float64 // weight / sum of the weights of active tenants
	pipes        int     // live pipelines; active if > 0
	tenantQueues []int32 // its (class, tenant) queues
}

// heapEntry is an entry of a heap of jobs: a job, its key, a first
// tie-breaker (lower first; the jobs of one pipeline share their key, and
// this puts the longest downstream path first) and its enqueue sequence
// number (the last tie-breaker, which keeps equal keys first in, first
// out).
type heapEntry struct {
	key int64
	seq uint64
	job int32
	tie int32
}

func (a heapEntry) less(b heapEntry) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	if a.tie != b.tie {
		return a.tie < b.tie
	}
	return a.seq < b.seq
}

// shapeQueue is the (class, tenant, shape) queue.
type shapeQueue struct {
	tenantQueue int32
	shape       int32
	h           []heapEntry
	pos         int32 // in its tenantQueue's heap, noPos if not there
}

// tenantQueue is the (class, tenant) queue.
type tenantQueue struct {
	class  uint8
	tenant int32
	h      []int32 // shapeQueue ids by head
	pos    int32   // in its class heap
	n      int     // queued jobs
}

type class struct {
	h     []int32 // tenantQueue ids, see tenantQueueLess
	n     int     // queued jobs
	since int64
}

type tenantQueueKey struct {
	class  uint8
	tenant int32
}
type shapeQueueKey struct {
	tenantQueue int32
	shape       int32
}

type queues struct {
	classes        [2*MaxPriority + 1]class // by priority + MaxPriority
	active         []uint8                  // classes with queued jobs, highest first
	shapeQueues    []shapeQueue
	shapeQueueIDs  map[shapeQueueKey]int32
	tenantQueues   []tenantQueue
	tenantQueueIDs map[tenantQueueKey]int32
}

func (q *queues) init() {
	q.shapeQueueIDs = map[shapeQueueKey]int32{}
	q.tenantQueueIDs = map[tenantQueueKey]int32{}
}

// ---- heap of jobs in a shapeQueue

func (e *Engine) siftJobUp(q *shapeQueue, i int) {
	h := q.h
	x := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !x.less(h[p]) {
			break
		}
		h[i] = h[p]
		e.jobs[h[i].job].heapPos = int32(i)
		i = p
	}
	h[i] = x
	e.jobs[x.job].heapPos = int32(i)
}

func (e *Engine) siftJobDown(q *shapeQueue, i int) {
	h := q.h
	n := len(h)
	x := h[i]
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].less(h[c]) {
			c++
		}
		if !h[c].less(x) {
			break
		}
		h[i] = h[c]
		e.jobs[h[i].job].heapPos = int32(i)
		i = c
	}
	h[i] = x
	e.jobs[x.job].heapPos = int32(i)
}

func (e *Engine) removeJobAt(q *shapeQueue, i int) {
	last := len(q.h) - 1
	if i != last {
		q.h[i] = q.h[last]
		q.h = q.h[:last]
		e.jobs[q.h[i].job].heapPos = int32(i)
		e.siftJobDown(q, i)
		e.siftJobUp(q, i)
	} else {
		q.h = q.h[:last]
	}
}

// ---- heaps of indices: shape queues in a tenantQueue, tenant queues in a class

// indexHeap is the discipline of the two heaps of indices (shapeQueues in
// a tenantQueue by head job, tenantQueues in a class by urgency and fair
// share): less orders two entries and pos is where an entry records its
// place in its heap, so that it can be repaired or taken out in place.
type indexHeap struct {
	less func(a, b int32) bool
	pos  func(x int32) *int32
}

func (e *Engine) shapeQueueHeap() indexHeap {
	return indexHeap{e.shapeQueueLess, func(x int32) *int32 { return &e.queues.shapeQueues[x].pos }}
}

func (e *Engine) tenantQueueHeap() indexHeap {
	return indexHeap{e.tenantQueueLess, func(x int32) *int32 { return &e.queues.tenantQueues[x].pos }}
}

func (ih indexHeap) up(h []int32, i int) {
	x := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !ih.less(x, h[p]) {
			break
		}
		h[i] = h[p]
		*ih.pos(h[i]) = int32(i)
		i = p
	}
	h[i] = x
	*ih.pos(x) = int32(i)
}

func (ih indexHeap) down(h []int32, i int) {
	n := len(h)
	x := h[i]
	for {
		k := 2*i + 1
		if k >= n {
			break
		}
		if k+1 < n && ih.less(h[k+1], h[k]) {
			k++
		}
		if !ih.less(h[k], x) {
			break
		}
		h[i] = h[k]
		*ih.pos(h[i]) = int32(i)
		i = k
	}
	h[i] = x
	*ih.pos(x) = int32(i)
}

// fix repairs the place of the entry at i after its key changed.
func (ih indexHeap) fix(h []int32, i int) {
	ih.down(h, i)
	ih.up(h, i)
}

// set puts x in h (want) or takes it out, or repairs its place if it is
// already in, and returns the heap.
func (ih indexHeap) set(h []int32, x int32, want bool) []int32 {
	pos := ih.pos(x)
	switch {
	case want && *pos == noPos:
		h = append(h, x)
		*pos = int32(len(h) - 1)
		ih.up(h, int(*pos))
	case !want && *pos != noPos:
		i := int(*pos)
		last := len(h) - 1
		*pos = noPos
		if i != last {
			h[i] = h[last]
			h = h[:last]
			*ih.pos(h[i]) = int32(i)
			ih.fix(h, i)
		} else {
			h = h[:last]
		}
	case want:
		ih.fix(h, int(*pos))
	}
	return h
}

func (e *Engine) shapeQueueLess(a, b int32) bool {
	return e.queues.shapeQueues[a].h[0].less(e.queues.shapeQueues[b].h[0])
}

// tenantQueueLess orders the tenants of a class: by the latest start time
// of the job each would run next (the head of its shapes that are not
// parked) plus their fair-share delay
// (PolicyHodei); the other policies have one tenant per class.
func (e *Engine) tenantQueueLess(a, b int32) bool {
	ca, cb := &e.queues.tenantQueues[a], &e.queues.tenantQueues[b]
	if e.policy != PolicyHodei {
		return e.shapeQueueLess(ca.h[0], cb.h[0])
	}
	ka, kb := e.queues.shapeQueues[ca.h[0]].h[0], e.queues.shapeQueues[cb.h[0]].h[0]
	pa := e.jobs[ka.job].lst + e.delay(ca)
	pb := e.jobs[kb.job].lst + e.delay(cb)
	if pa != pb {
		return pa < pb
	}
	return ka.seq < kb.seq
}

// ---- keeping the levels consistent

// shapeQueueChanged repairs the position of a shapeQueue in its
// tenantQueue after its head changed or it became empty or non-empty. A
// shapeQueue of a parked shape is taken out lazily (see Plan), so it stays
// where it is if still there.
func (e *Engine) shapeQueueChanged(qi int32) {
	q := &e.queues.shapeQueues[qi]
	want := len(q.h) > 0 && (!e.idx.shapes[q.shape].parked || q.pos != noPos)
	e.setShapeQueue(qi, want)
}

// setShapeQueue puts a shapeQueue in its tenantQueue's heap or takes it
// out, or repairs its position; the class heap is repaired only if the
// tenantQueue's head changed.
func (e *Engine) setShapeQueue(qi int32, want bool) {
	q := &e.queues.shapeQueues[qi]
	tq := &e.queues.tenantQueues[q.tenantQueue]
	wasTop := len(tq.h) > 0 && tq.h[0] == qi
	tq.h = e.shapeQueueHeap().set(tq.h, qi, want)
	if wasTop || (len(tq.h) > 0 && tq.h[0] == qi) {
		e.tenantQueueChanged(q.tenantQueue)
	}
}

func (e *Engine) tenantQueueChanged(tqi int32) {
	tq := &e.queues.tenantQueues[tqi]
	c := &e.queues.classes[tq.class]
	c.h = e.tenantQueueHeap().set(c.h, tqi, len(tq.h) > 0)
}

// shareChanged repairs the positions of a tenant whose holdings changed
// (its fair-share delay depends on them).
func (e *Engine) shareChanged(ti int32) {
	if e.policy != PolicyHodei || e.fairDelay <= 0 {
		return
	}
	for _, tqi := range e.tenants[ti].tenantQueues {
		if tq := &e.queues.tenantQueues[tqi]; tq.pos != noPos {
			c := &e.queues.classes[tq.class]
			e.tenantQueueHeap().fix(c.h, int(tq.pos))
		}
	}
}

// entitle recomputes every tenant's entitlement after a tenant became
// active or inactive, and repairs the class heaps.
func (e *Engine) entitle() {
	if e.policy != PolicyHodei {
		return
	}
	var sum float64
	for i := range e.tenants {
		if e.tenants[i].pipes > 0 {
			sum += e.tenants[i].weight
		}
	}
	for i := range e.tenants {
		t := &e.tenants[i]
		t.entitled = 0
		if t.pipes > 0 {
			t.entitled = t.weight / sum
		}
	}
	e.heapifyClasses()
}

// fleetChanged repairs the class heaps after the schedulable capacity
// changed (every fair-share delay depends on it).
func (e *Engine) fleetChanged() {
	if e.policy != PolicyHodei || e.fairDelay <= 0 {
		return
	}
	e.heapifyClasses()
}

func (e *Engine) heapifyClasses() {
	for _, p := range e.queues.active {
		c := &e.queues.classes[p]
		ih := e.tenantQueueHeap()
		for i := len(c.h)/2 - 1; i >= 0; i-- {
			ih.down(c.h, i)
		}
	}
}

func (e *Engine) tenantQueueOf(class uint8, ti int32) int32 {
	k := tenantQueueKey{class, ti}
	if id, ok := e.queues.tenantQueueIDs[k]; ok {
		return id
	}
	id := int32(len(e.queues.tenantQueues))
	e.queues.tenantQueueIDs[k] = id
	e.queues.tenantQueues = append(e.queues.tenantQueues, tenantQueue{class: class, tenant: ti, pos: noPos})
	e.tenants[ti].tenantQueues = append(e.tenants[ti].tenantQueues, id)
	return id
}

func (e *Engine) shapeQueueOf(tq, sh int32) int32 {
	k := shapeQueueKey{tq, sh}
	if id, ok := e.queues.shapeQueueIDs[k]; ok {
		return id
	}
	id := int32(len(e.queues.shapeQueues))
	e.queues.shapeQueueIDs[k] = id
	e.queues.shapeQueues = append(e.queues.shapeQueues, shapeQueue{tenantQueue: tq, shape: sh, pos: noPos})
	e.idx.shapes[sh].queues = append(e.idx.shapes[sh].queues, id)
	return id
}

// push queues job j with its key and tie-breaker (order within its tenant)
// and latest start time (order across tenants).
func (e *Engine) push(ji int32, key int64, tie int32, now int64) {
	j := &e.jobs[ji]
	class, ti := uint8(0), int32(0)
	if e.policy == PolicyHodei {
		class, ti = j.prio, e.pipes[j.pipe].tenant
	}
	tqi := e.tenantQueueOf(class, ti)
	qi := e.shapeQueueOf(tqi, j.shape)
	q := &e.queues.shapeQueues[qi]
	e.seq++
	q.h = append(q.h, heapEntry{key: key, seq: e.seq, job: ji, tie: tie})
	j.queue = qi
	j.state = jsQueued
	j.queueSeq = e.seq
	j.ready = now
	tq := &e.queues.tenantQueues[tqi]
	tq.n++
	if e.slackOn && j.prio >= MaxPriority {
		ls := &e.idx.lsets[e.idx.shapes[j.shape].lset]
		ls.fifo = append(ls.fifo, heapEntry{key: now, seq: e.seq, job: ji})
	}
	e.siftJobUp(q, len(q.h)-1)
	e.shapeQueueChanged(qi)
	e.tenantQueueChanged(tqi) // the job it runs next may have changed
	sh := &e.idx.shapes[j.shape]
	sh.n++
	if sh.n == 1 && !sh.parked {
		e.liveShapes++
	}
	c := &e.queues.classes[class]
	if c.n == 0 {
		c.since = now
		e.activate(class)
	}
	c.n++
	e.nQueued++
}

// unqueue takes a queued job out of its queue.
func (e *Engine) unqueue(ji int32) {
	j := &e.jobs[ji]
	qi := j.queue
	q := &e.queues.shapeQueues[qi]
	e.removeJobAt(q, int(j.heapPos))
	j.queue, j.heapPos = noPos, noPos
	j.state = jsPending
	j.queueSeq = 0
	tq := &e.queues.tenantQueues[q.tenantQueue]
	tq.n--
	e.shapeQueueChanged(qi)
	e.tenantQueueChanged(q.tenantQueue)
	sh := &e.idx.shapes[j.shape]
	sh.n--
	if sh.n == 0 && !sh.parked {
		e.liveShapes--
	}
	class := e.queues.tenantQueues[q.tenantQueue].class
	c := &e.queues.classes[class]
	c.n--
	if c.n == 0 {
		e.deactivate(class)
	}
	e.nQueued--
}

func (e *Engine) activate(class uint8) {
	a := e.queues.active
	i := 0
	for i < len(a) && a[i] > class {
		i++
	}
	e.queues.active = append(a[:i], append([]uint8{class}, a[i:]...)...)
}

func (e *Engine) deactivate(class uint8) {
	for i, c := range e.queues.active {
		if c == class {
			e.queues.active = append(e.queues.active[:i], e.queues.active[i+1:]...)
			return
		}
	}
}

// pickClass returns the class to serve next and its index (priority +
// MaxPriority): the highest effective priority
// (priority plus one level per Aging since the class was last served, capped
// at 2×MaxPriority+1 levels, so that the lowest class can still overtake
// the highest), higher priority first on a tie.
func (e *Engine) pickClass(now int64) (*class, int) {
	var best *class
	bestP := 0
	bestEff := int64(-1)
	for _, p := range e.queues.active {
		c := &e.queues.classes[p]
		if len(c.h) == 0 {
			continue
		}
		eff := int64(p)
		if now > c.since {
			eff += min((now-c.since)/e.aging, 2*MaxPriority+1)
		}
		if eff > bestEff {
			best, bestP, bestEff = c, int(p), eff
		}
	}
	return best, bestP
}

// ---- parking
//
// Parking is lazy: park only marks the shape; its shape queues leave the heaps
// when Plan finds one at the top, and unpark puts back those that left. Plan
// stops as soon as no unparked shape has queued jobs, so a release that lets
// a few shapes go, followed by a Plan that fills the hole and parks them
// again, touches only the queues it looks at, not every (class, tenant)
// queue of every shape.

func (e *Engine) park(si int32) {
	sh := &e.idx.shapes[si]
	if sh.parked {
		return
	}
	sh.parked = true
	if sh.n > 0 {
		e.liveShapes--
	}
	ls := &e.idx.lsets[sh.lset]
	sh.ppos = int32(len(ls.parked))
	ls.parked = append(ls.parked, si)
}

func (e *Engine) unpark(si int32) {
	sh := &e.idx.shapes[si]
	if !sh.parked {
		return
	}
	sh.parked = false
	if sh.n > 0 {
		e.liveShapes++
	}
	ls := &e.idx.lsets[sh.lset]
	i, last := sh.ppos, len(ls.parked)-1
	if int(i) != last {
		ls.parked[i] = ls.parked[last]
		e.idx.shapes[ls.parked[i]].ppos = i
	}
	ls.parked = ls.parked[:last]
	sh.ppos = shapeNotParked
	for _, qi := range sh.queues {
		if q := &e.queues.shapeQueues[qi]; len(q.h) > 0 && q.pos == noPos {
			e.setShapeQueue(qi, true)
		}
	}
}

// freed lets go of the parked shapes that now fit on worker wi, after it
// gained free capacity, joined, or became schedulable.
func (e *Engine) freed(wi int32) {
	w := &e.workers[wi]
	if !w.inTrees {
		return
	}
	free := w.free()
	for _, ls := range e.idx.groups[w.group].jobLsets {
		p := e.idx.lsets[ls].parked
		for i := len(p) - 1; i >= 0; i-- {
			if i >= len(p) {
				continue
			}
			si := p[i]
			if fits(&free, &e.idx.shapes[si].req) {
				e.unpark(si)
				p = e.idx.lsets[ls].parked
			}
		}
	}
}

// delay is a tenant's fair-share delay for taking its next job (the head of
// tq): FairShareDelay × (s-e)/(1-s), s being the dominant share of the fleet
// it would hold with that job, when s is above its entitlement e; that is
// its excess over what it leaves to the others. It is 0 up to the
// entitlement, a minute or two for a tenant holding most of the fleet, and
// without bound for one that would take all of it.
func (e *Engine) delay(tq *tenantQueue) int64 {
	t := &e.tenants[tq.tenant]
	if e.fairDelay <= 0 || t.entitled <= 0 {
		return 0
	}
	r := &e.idx.shapes[e.queues.shapeQueues[tq.h[0]].shape].req
	var s float64
	if e.total.CPUMilli > 0 {
		s = max(s, float64(t.held.CPUMilli+r.CPUMilli)/float64(e.total.CPUMilli))
	}
	if e.total.Memory > 0 {
		s = max(s, float64(t.held.Memory+r.Memory)/float64(e.total.Memory))
	}
	if e.total.GPU > 0 {
		s = max(s, float64(t.held.GPU+r.GPU)/float64(e.total.GPU))
	}
	if s <= t.entitled {
		return 0
	}
	d := int64(min(e.fairDelay*(s-t.entitled)/max(1-s, 1e-3), 1e8) * 1e9)
	if e.window > 0 {
		d = min(d, e.window)
	}
	return d
}
