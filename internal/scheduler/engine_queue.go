package scheduler

// The queue is a hierarchy of heaps, each level keyed so that the next job
// is found in O(log) without looking at the others:
//
//	class (priority)     picked by a scan of the few classes present (aging)
//	  tenant             heap of (class, tenant) queues by urgency and fair share
//	    shape            heap of (class, tenant, shape) queues by their head job
//	      job            heap of jobs by static key, then enqueue sequence
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

// job is the engine's per-job state; it is kept small (about 80 bytes) since
// the simulator holds a million of them.
type ejob struct {
	id      string
	pipe    int32
	key     int32
	shape   int32
	worker  int32
	wprev   int32
	wnext   int32
	q       int32 // queue while queued
	hpos    int32 // position in the queue's heap
	dur     float32
	cp      float32 // predicted downstream path, seconds
	state   uint8
	prio    uint8
	counted bool // dur is part of its pipeline's remaining work
	qseq    uint64
	ready   int64 // when it was last enqueued
	live    bool
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
	name     string
	weight   float64
	held     Resources
	entitled float64 // weight / sum of the weights of active tenants
	pipes    int     // live pipelines; active if > 0
	cts      []int32 // its (class, tenant) queues
}

// qent is a heap entry: a job, its key and its enqueue sequence number (the
// tie-breaker that keeps equal keys first in, first out).
type qent struct {
	key int64
	seq uint64
	job int32
}

func (a qent) less(b qent) bool { return a.key < b.key || (a.key == b.key && a.seq < b.seq) }

// jqueue is the (class, tenant, shape) queue.
type jqueue struct {
	ct    int32
	shape int32
	h     []qent
	pos   int32 // in its ct heap, noPos if not there
}

// ctqueue is the (class, tenant) queue.
type ctqueue struct {
	class  uint8
	tenant int32
	h      []int32 // jqueue ids by head
	pos    int32   // in its class heap
	// xh holds every queued job of the ctqueue by latest start time (its
	// key field), including parked shapes; entries of jobs no longer
	// queued are dropped when they reach the top (lazily).
	xh []qent
	n  int // queued jobs
}

type class struct {
	h     []int32 // ctqueue ids, see ctLess
	n     int     // queued jobs
	since int64
}

type ctKey struct {
	class  uint8
	tenant int32
}
type jqKey struct {
	ct    int32
	shape int32
}

type queues struct {
	classes [2*MaxPriority + 1]class // by priority + MaxPriority
	active  []uint8                  // classes with queued jobs, highest first
	jqs     []jqueue
	jqIDs   map[jqKey]int32
	cts     []ctqueue
	ctIDs   map[ctKey]int32
}

func (q *queues) init() {
	q.jqIDs = map[jqKey]int32{}
	q.ctIDs = map[ctKey]int32{}
}

// ---- heap of jobs in a jqueue

func (e *Engine) jqUp(q *jqueue, i int) {
	h := q.h
	x := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !x.less(h[p]) {
			break
		}
		h[i] = h[p]
		e.jobs[h[i].job].hpos = int32(i)
		i = p
	}
	h[i] = x
	e.jobs[x.job].hpos = int32(i)
}

func (e *Engine) jqDown(q *jqueue, i int) {
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
		e.jobs[h[i].job].hpos = int32(i)
		i = c
	}
	h[i] = x
	e.jobs[x.job].hpos = int32(i)
}

func (e *Engine) jqRemoveAt(q *jqueue, i int) {
	last := len(q.h) - 1
	if i != last {
		q.h[i] = q.h[last]
		q.h = q.h[:last]
		e.jobs[q.h[i].job].hpos = int32(i)
		e.jqDown(q, i)
		e.jqUp(q, i)
	} else {
		q.h = q.h[:last]
	}
}

// ---- heap of jqueues in a ctqueue, by head job

func (e *Engine) jqLess(a, b int32) bool { return e.q.jqs[a].h[0].less(e.q.jqs[b].h[0]) }

func (e *Engine) ctUp(c *ctqueue, i int) {
	h := c.h
	x := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !e.jqLess(x, h[p]) {
			break
		}
		h[i] = h[p]
		e.q.jqs[h[i]].pos = int32(i)
		i = p
	}
	h[i] = x
	e.q.jqs[x].pos = int32(i)
}

func (e *Engine) ctDown(c *ctqueue, i int) {
	h := c.h
	n := len(h)
	x := h[i]
	for {
		k := 2*i + 1
		if k >= n {
			break
		}
		if k+1 < n && e.jqLess(h[k+1], h[k]) {
			k++
		}
		if !e.jqLess(h[k], x) {
			break
		}
		h[i] = h[k]
		e.q.jqs[h[i]].pos = int32(i)
		i = k
	}
	h[i] = x
	e.q.jqs[x].pos = int32(i)
}

// ---- heap of ctqueues in a class, by urgency and fair share

// ctLess orders the tenants of a class: by the latest start time of their
// most urgent queued job plus their fair-share delay (PolicyHodei); the other
// policies have one tenant per class.
func (e *Engine) ctLess(a, b int32) bool {
	ca, cb := &e.q.cts[a], &e.q.cts[b]
	if e.policy != PolicyHodei {
		return e.jqLess(ca.h[0], cb.h[0])
	}
	ka, kb := ca.xh[0], cb.xh[0]
	pa := ka.key + e.delay(ca)
	pb := kb.key + e.delay(cb)
	if pa != pb {
		return pa < pb
	}
	return ka.seq < kb.seq
}

func (e *Engine) clUp(c *class, i int) {
	h := c.h
	x := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !e.ctLess(x, h[p]) {
			break
		}
		h[i] = h[p]
		e.q.cts[h[i]].pos = int32(i)
		i = p
	}
	h[i] = x
	e.q.cts[x].pos = int32(i)
}

func (e *Engine) clDown(c *class, i int) {
	h := c.h
	n := len(h)
	x := h[i]
	for {
		k := 2*i + 1
		if k >= n {
			break
		}
		if k+1 < n && e.ctLess(h[k+1], h[k]) {
			k++
		}
		if !e.ctLess(h[k], x) {
			break
		}
		h[i] = h[k]
		e.q.cts[h[i]].pos = int32(i)
		i = k
	}
	h[i] = x
	e.q.cts[x].pos = int32(i)
}

// ---- keeping the levels consistent

// jqChanged repairs the position of a jqueue in its ctqueue after its head
// changed or it became empty or non-empty. A jqueue of a parked shape is
// taken out lazily (see Plan), so it stays where it is if still there.
func (e *Engine) jqChanged(qi int32) {
	q := &e.q.jqs[qi]
	want := len(q.h) > 0 && (!e.idx.shapes[q.shape].parked || q.pos != noPos)
	e.jqSet(qi, want)
}

// jqSet puts a jqueue in its ctqueue's heap or takes it out, or repairs its
// position; the class heap is repaired only if the ctqueue's head changed.
func (e *Engine) jqSet(qi int32, want bool) {
	q := &e.q.jqs[qi]
	ct := &e.q.cts[q.ct]
	wasTop := len(ct.h) > 0 && ct.h[0] == qi
	switch {
	case want && q.pos == noPos:
		ct.h = append(ct.h, qi)
		q.pos = int32(len(ct.h) - 1)
		e.ctUp(ct, int(q.pos))
	case !want && q.pos != noPos:
		i := int(q.pos)
		last := len(ct.h) - 1
		q.pos = noPos
		if i != last {
			ct.h[i] = ct.h[last]
			ct.h = ct.h[:last]
			e.q.jqs[ct.h[i]].pos = int32(i)
			e.ctDown(ct, i)
			e.ctUp(ct, i)
		} else {
			ct.h = ct.h[:last]
		}
	case want:
		e.ctDown(ct, int(q.pos))
		e.ctUp(ct, int(q.pos))
	}
	if wasTop || (len(ct.h) > 0 && ct.h[0] == qi) {
		e.ctChanged(q.ct)
	}
}

func (e *Engine) ctChanged(ci int32) {
	ct := &e.q.cts[ci]
	c := &e.q.classes[ct.class]
	want := len(ct.h) > 0
	switch {
	case want && ct.pos == noPos:
		c.h = append(c.h, ci)
		ct.pos = int32(len(c.h) - 1)
		e.clUp(c, int(ct.pos))
	case !want && ct.pos != noPos:
		i := int(ct.pos)
		last := len(c.h) - 1
		ct.pos = noPos
		if i != last {
			c.h[i] = c.h[last]
			c.h = c.h[:last]
			e.q.cts[c.h[i]].pos = int32(i)
			e.clDown(c, i)
			e.clUp(c, i)
		} else {
			c.h = c.h[:last]
		}
	case want:
		e.clDown(c, int(ct.pos))
		e.clUp(c, int(ct.pos))
	}
}

// shareChanged repairs the positions of a tenant whose holdings changed
// (its fair-share delay depends on them).
func (e *Engine) shareChanged(ti int32) {
	if e.policy != PolicyHodei || e.fairDelay <= 0 {
		return
	}
	for _, ci := range e.tenants[ti].cts {
		if ct := &e.q.cts[ci]; ct.pos != noPos {
			c := &e.q.classes[ct.class]
			e.clDown(c, int(ct.pos))
			e.clUp(c, int(ct.pos))
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
	for _, p := range e.q.active {
		c := &e.q.classes[p]
		for i := len(c.h)/2 - 1; i >= 0; i-- {
			e.clDown(c, i)
		}
	}
}

func (e *Engine) ctqueue(class uint8, ti int32) int32 {
	k := ctKey{class, ti}
	if id, ok := e.q.ctIDs[k]; ok {
		return id
	}
	id := int32(len(e.q.cts))
	e.q.ctIDs[k] = id
	e.q.cts = append(e.q.cts, ctqueue{class: class, tenant: ti, pos: noPos})
	e.tenants[ti].cts = append(e.tenants[ti].cts, id)
	return id
}

func (e *Engine) jqueue(ct, sh int32) int32 {
	k := jqKey{ct, sh}
	if id, ok := e.q.jqIDs[k]; ok {
		return id
	}
	id := int32(len(e.q.jqs))
	e.q.jqIDs[k] = id
	e.q.jqs = append(e.q.jqs, jqueue{ct: ct, shape: sh, pos: noPos})
	e.idx.shapes[sh].queues = append(e.idx.shapes[sh].queues, id)
	return id
}

// push queues job j with its key (order within its tenant) and latest
// start time (order across tenants).
func (e *Engine) push(ji int32, key, lst int64, now int64) {
	j := &e.jobs[ji]
	class, ti := uint8(0), int32(0)
	if e.policy == PolicyHodei {
		class, ti = j.prio, e.pipes[j.pipe].tenant
	}
	ci := e.ctqueue(class, ti)
	qi := e.jqueue(ci, j.shape)
	q := &e.q.jqs[qi]
	e.seq++
	q.h = append(q.h, qent{key: key, seq: e.seq, job: ji})
	j.q = qi
	j.state = jsQueued
	j.qseq = e.seq
	j.ready = now
	ct := &e.q.cts[ci]
	ct.n++
	if e.policy == PolicyHodei {
		xPush(ct, qent{key: lst, seq: e.seq, job: ji})
		if e.slackOn && j.prio >= MaxPriority {
			e.overdue = append(e.overdue, qent{key: now, seq: e.seq, job: ji})
		}
	}
	e.jqUp(q, len(q.h)-1)
	e.jqChanged(qi)
	e.ctChanged(ci) // its most urgent job may have changed
	sh := &e.idx.shapes[j.shape]
	sh.n++
	if sh.n == 1 && !sh.parked {
		e.liveShapes++
	}
	c := &e.q.classes[class]
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
	qi := j.q
	q := &e.q.jqs[qi]
	e.jqRemoveAt(q, int(j.hpos))
	j.q, j.hpos = noPos, noPos
	j.state = jsPending
	j.qseq = 0
	ct := &e.q.cts[q.ct]
	ct.n--
	if e.policy == PolicyHodei {
		e.xClean(ct)
	}
	e.jqChanged(qi)
	e.ctChanged(q.ct)
	sh := &e.idx.shapes[j.shape]
	sh.n--
	if sh.n == 0 && !sh.parked {
		e.liveShapes--
	}
	class := e.q.cts[q.ct].class
	c := &e.q.classes[class]
	c.n--
	if c.n == 0 {
		e.deactivate(class)
	}
	e.nQueued--
}

func (e *Engine) activate(class uint8) {
	a := e.q.active
	i := 0
	for i < len(a) && a[i] > class {
		i++
	}
	e.q.active = append(a[:i], append([]uint8{class}, a[i:]...)...)
}

func (e *Engine) deactivate(class uint8) {
	for i, c := range e.q.active {
		if c == class {
			e.q.active = append(e.q.active[:i], e.q.active[i+1:]...)
			return
		}
	}
}

// pickClass returns the class to serve next: the highest effective priority
// (priority plus one level per Aging since the class was last served, capped
// at 2×MaxPriority+1 levels, so that the lowest class can still overtake
// the highest), higher priority first on a tie.
func (e *Engine) pickClass(now int64) *class {
	var best *class
	bestEff := int64(-1)
	for _, p := range e.q.active {
		c := &e.q.classes[p]
		if len(c.h) == 0 {
			continue
		}
		eff := int64(p)
		if now > c.since {
			eff += min((now-c.since)/e.aging, 2*MaxPriority+1)
		}
		if eff > bestEff {
			best, bestEff = c, eff
		}
	}
	return best
}

// ---- parking
//
// Parking is lazy: park only marks the shape; its jqueues leave the heaps
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
		if q := &e.q.jqs[qi]; len(q.h) > 0 && q.pos == noPos {
			e.jqSet(qi, true)
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

func xPush(ct *ctqueue, x qent) {
	ct.xh = append(ct.xh, x)
	h := ct.xh
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !x.less(h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
}

func xPop(ct *ctqueue) {
	h := ct.xh
	n := len(h) - 1
	x := h[n]
	h = h[:n]
	i := 0
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
		i = c
	}
	if n > 0 {
		h[i] = x
	}
	ct.xh = h
}

// xClean drops entries of jobs no longer queued from the top of ct.xh, and
// rebuilds it when stale entries dominate.
func (e *Engine) xClean(ct *ctqueue) {
	for len(ct.xh) > 0 && e.jobs[ct.xh[0].job].qseq != ct.xh[0].seq {
		xPop(ct)
	}
	if len(ct.xh) > 2*ct.n+64 {
		old := ct.xh
		ct.xh = make([]qent, 0, 2*ct.n+8)
		for _, x := range old {
			if e.jobs[x.job].qseq == x.seq {
				xPush(ct, x)
			}
		}
	}
}

// delay is a tenant's fair-share delay for taking its next job (the head of
// ct): FairShareDelay × (s-e)/(1-s), s being the dominant share of the fleet
// it would hold with that job, when s is above its entitlement e; that is
// its excess over what it leaves to the others. It is 0 up to the
// entitlement, a minute or two for a tenant holding most of the fleet, and
// without bound for one that would take all of it.
func (e *Engine) delay(ct *ctqueue) int64 {
	t := &e.tenants[ct.tenant]
	if e.fairDelay <= 0 || t.entitled <= 0 {
		return 0
	}
	r := &e.idx.shapes[e.q.jqs[ct.h[0]].shape].req
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
	d := e.fairDelay * (s - t.entitled) / max(1-s, 1e-3)
	return int64(min(d, 1e8) * 1e9)
}
