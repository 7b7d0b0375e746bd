package scheduler

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// UpsertWorker adds a worker (schedulable), or updates the capacity, labels,
// pool or scorer of a known one; jobs already placed on it stay there.
func (e *Engine) UpsertWorker(spec WorkerSpec) {
	labels := e.idx.labels(spec.Labels)
	capacity := nonNegative(spec.Capacity)
	scorer := spec.Scorer
	if scorer == "" {
		scorer = DefaultScorer(capacity)
	}
	spread := scorer == Spread
	wi, ok := e.workerIdx[spec.ID]
	if !ok {
		if n := len(e.freeW); n > 0 {
			wi = e.freeW[n-1]
			e.freeW = e.freeW[:n-1]
		} else {
			wi = int32(len(e.workers))
			e.workers = append(e.workers, eworker{})
		}
		e.nextJoin++
		e.workers[wi] = eworker{
			id: spec.ID, labels: labels, capacity: capacity, join: e.nextJoin, maxJobs: int32(max(spec.MaxJobs, 0)),
			group: groupNone, live: true, schedulable: true, spread: spread, jobHead: noWorker,
		}
		e.workerIdx[spec.ID] = wi
		e.nWorkers++
		e.addTotal(capacity, 1)
		e.joinGroup(wi)
		e.fleetChanged()
		e.freed(wi)
		return
	}
	w := &e.workers[wi]
	if w.schedulable {
		e.addTotal(w.capacity, -1)
	}
	oldKey := e.groupKeyOf(w)
	w.labels, w.capacity, w.spread, w.maxJobs = labels, capacity, spread, int32(max(spec.MaxJobs, 0))
	if w.schedulable {
		e.addTotal(w.capacity, 1)
	}
	if e.groupKeyOf(w) != oldKey {
		e.leaveGroup(wi)
		e.joinGroup(wi)
	} else {
		g := &e.idx.groups[w.group]
		g.ref.CPUMilli = max(g.ref.CPUMilli, w.capacity.CPUMilli)
		g.ref.Memory = max(g.ref.Memory, w.capacity.Memory)
		g.ref.GPU = max(g.ref.GPU, w.capacity.GPU)
		e.syncTrees(wi)
	}
	e.fleetChanged()
	e.freed(wi)
}

func nonNegative(r Resources) Resources {
	return Resources{max(r.CPUMilli, 0), max(r.Memory, 0), max(r.GPU, 0)}
}

func (e *Engine) addTotal(r Resources, sign int64) {
	e.total.CPUMilli += sign * r.CPUMilli
	e.total.Memory += sign * r.Memory
	e.total.GPU += int(sign) * r.GPU
}

// SetSchedulable marks a worker as taking new jobs or not (draining, lost).
// Jobs placed on it stay there.
func (e *Engine) SetSchedulable(workerID string, ok bool) {
	wi, found := e.workerIdx[workerID]
	if !found {
		return
	}
	w := &e.workers[wi]
	if w.schedulable == ok {
		return
	}
	w.schedulable = ok
	if ok {
		e.addTotal(w.capacity, 1)
	} else {
		e.addTotal(w.capacity, -1)
	}
	e.syncTrees(wi)
	e.fleetChanged()
	if ok {
		e.freed(wi)
	}
}

// RemoveWorker forgets a worker and returns the IDs of the jobs placed on it,
// in the order they were placed. They are unplaced (neither queued nor
// running); the caller re-Enqueues those it retries.
func (e *Engine) RemoveWorker(workerID string) []string {
	wi, ok := e.workerIdx[workerID]
	if !ok {
		return nil
	}
	w := &e.workers[wi]
	var out []string
	if w.nJobs > 0 {
		out = make([]string, 0, w.nJobs)
		ids := make([]int32, 0, w.nJobs)
		for ji := w.jobHead; ji != noWorker; ji = e.jobs[ji].nextOnWorker {
			ids = append(ids, ji)
		}
		slices.Reverse(ids) // the list is newest first
		for _, ji := range ids {
			out = append(out, e.jobs[ji].id)
			e.unreserve(ji, false)
		}
	}
	if w.schedulable {
		e.addTotal(w.capacity, -1)
	}
	e.leaveGroup(wi)
	delete(e.workerIdx, workerID)
	e.workers[wi] = eworker{group: groupNone, jobHead: noWorker}
	e.freeW = append(e.freeW, wi)
	e.nWorkers--
	e.fleetChanged()
	return out
}

// AddPipeline registers a pipeline run and its jobs; none is queued until
// Enqueue. It computes, once, each job's predicted duration and critical
// path (its duration plus the longest predicted chain of jobs that need it).
// A pipeline ID already known is ignored, and so is a job ID already known.
func (e *Engine) AddPipeline(p PipelineSpec) {
	if _, ok := e.pipeIdx[p.ID]; ok {
		return
	}
	ti, ok := e.tenantIdx[p.Tenant]
	if !ok {
		ti = int32(len(e.tenants))
		w := e.weights[p.Tenant]
		if w <= 0 {
			w = 1
		}
		e.tenants = append(e.tenants, tenant{name: p.Tenant, weight: w})
		e.tenantIdx[p.Tenant] = ti
	}
	var pi int32
	if n := len(e.freeP); n > 0 {
		pi = e.freeP[n-1]
		e.freeP = e.freeP[:n-1]
	} else {
		pi = int32(len(e.pipes))
		e.pipes = append(e.pipes, pipeline{})
	}
	e.pipeIdx[p.ID] = pi
	pl := pipeline{id: p.ID, tenant: ti, prio: clampPrio(p.Priority), live: true, jobs: make([]int32, 0, len(p.Jobs))}

	var newLabels []int32
	local := e.scratchIdx
	clear(local)
	for i := range p.Jobs {
		js := &p.Jobs[i]
		if _, dup := e.jobIdx[js.ID]; dup {
			continue
		}
		if _, dup := local[js.ID]; dup {
			continue
		}
		labels := e.idx.labels(js.Labels)
		for _, l := range labels {
			if !e.idx.requested[l] {
				e.idx.requested[l] = true
				newLabels = append(newLabels, l)
			}
		}
		ls := e.idx.lset(labels)
		e.idx.markJobLset(ls)
		var ji int32
		if n := len(e.freeJ); n > 0 {
			ji = e.freeJ[n-1]
			e.freeJ = e.freeJ[:n-1]
		} else {
			ji = int32(len(e.jobs))
			e.jobs = append(e.jobs, ejob{})
		}
		var d time.Duration
		if js.Key != "" {
			d = e.pred.Predict(js.Key)
		} else {
			d = e.pred.Default()
		}
		e.jobs[ji] = ejob{
			id: js.ID, pipe: pi, key: e.idx.key(js.Key), shape: e.idx.shape(ls, nonNegative(js.Request)),
			worker: noWorker, prevOnWorker: noWorker, nextOnWorker: noWorker, queue: noPos, heapPos: noPos,
			dur: float32(d.Seconds()), prio: clampPrio(EffectivePriority(p.Priority, js.Priority)), counted: true, live: true,
		}
		e.jobIdx[js.ID] = ji
		local[js.ID] = int32(len(pl.jobs))
		pl.jobs = append(pl.jobs, ji)
		pl.work += float64(e.jobs[ji].dur)
	}
	if len(newLabels) > 0 {
		e.regroup(newLabels)
	}
	e.criticalPaths(p, &pl, local)
	e.pipes[pi] = pl
	e.tenants[ti].pipes++
	if e.tenants[ti].pipes == 1 {
		e.entitle()
	}
}

// clampPrio returns the class of priority p: p clamped to
// -MaxPriority..MaxPriority, plus MaxPriority (so class 0 is the lowest).
func clampPrio(p int) uint8 { return uint8(min(max(p, -MaxPriority), MaxPriority) + MaxPriority) }

// EffectivePriority is the priority a job runs at in a pipeline: the higher
// of the two when either is above 0 (a deploy pipeline raises its jobs, a
// job can raise itself), and otherwise the lower (a pipeline or a job below
// 0 runs after everything else, and a job at the default 0 does not undo its
// pipeline's negative priority).
func EffectivePriority(pipeline, job int) int {
	if pipeline > 0 || job > 0 {
		return max(pipeline, job)
	}
	return min(pipeline, job)
}

// criticalPaths sets each job's cp: its predicted duration plus the longest
// cp among the jobs that need it (in reverse topological order; jobs on a
// cycle, which validation rejects upstream, just get their own duration).
func (e *Engine) criticalPaths(p PipelineSpec, pl *pipeline, local map[string]int32) {
	n := len(pl.jobs)
	if n == 0 {
		return
	}
	// Children in compressed form: for each need edge parent -> child.
	indeg := make([]int32, n)
	start := make([]int32, n+1)
	specOf := make([]int32, n) // local index -> index in p.Jobs
	for i := range p.Jobs {
		li, ok := local[p.Jobs[i].ID]
		if !ok || pl.jobs[li] < 0 || e.jobs[pl.jobs[li]].id != p.Jobs[i].ID {
			continue
		}
		specOf[li] = int32(i)
	}
	for li := 0; li < n; li++ {
		for _, need := range p.Jobs[specOf[li]].Needs {
			if pa, ok := local[need]; ok && int(pa) != li {
				start[pa+1]++
				indeg[li]++
			}
		}
	}
	for i := 0; i < n; i++ {
		start[i+1] += start[i]
	}
	children := make([]int32, start[n])
	fill := slices.Clone(start[:n])
	for li := 0; li < n; li++ {
		for _, need := range p.Jobs[specOf[li]].Needs {
			if pa, ok := local[need]; ok && int(pa) != li {
				children[fill[pa]] = int32(li)
				fill[pa]++
			}
		}
	}
	order := make([]int32, 0, n)
	for li := 0; li < n; li++ {
		if indeg[li] == 0 {
			order = append(order, int32(li))
		}
	}
	for k := 0; k < len(order); k++ {
		u := order[k]
		for _, c := range children[start[u]:start[u+1]] {
			if indeg[c]--; indeg[c] == 0 {
				order = append(order, c)
			}
		}
	}
	for li := 0; li < n; li++ {
		j := &e.jobs[pl.jobs[li]]
		j.cp = j.dur
	}
	for k := len(order) - 1; k >= 0; k-- {
		u := order[k]
		ju := &e.jobs[pl.jobs[u]]
		var longest float32
		for _, c := range children[start[u]:start[u+1]] {
			longest = max(longest, e.jobs[pl.jobs[c]].cp)
		}
		ju.cp = ju.dur + longest
		pl.cp = max(pl.cp, float64(ju.cp))
	}
}

// Enqueue makes a job ready: its needs are done, or it is back after a
// failed or lost attempt (a reservation it still holds is freed). It is a
// no-op for an unknown or already queued job.
func (e *Engine) Enqueue(jobID string, now time.Time) {
	ji, ok := e.jobIdx[jobID]
	if !ok {
		return
	}
	j := &e.jobs[ji]
	if j.state == jsQueued {
		return
	}
	if j.state == jsPlaced {
		e.unreserve(ji, false)
	}
	nowN := now.UnixNano()
	p := &e.pipes[j.pipe]
	if !p.arrived {
		p.arrived, p.arrival = true, nowN
	}
	if !j.counted {
		j.counted = true
		p.work += float64(j.dur)
	}
	var key, lst int64
	var tie int32
	if e.policy == PolicyHodei {
		// Latest start time (across tenants): when the job must start for
		// its pipeline to end one critical path after it arrived. Key
		// (within the tenant): the pipeline's arrival plus its remaining
		// work (shortest first), past the knee as a square root, so that
		// larger pipelines still come later, but by hours, not by days;
		// inside a pipeline, the longest downstream path first.
		lst = p.arrival + int64(e.pathWeight*(p.cp-float64(j.cp))*1e9)
		w := e.workWeight * p.work * 1e9
		if k := float64(e.workKnee); k > 0 && w > k {
			w = math.Sqrt(w * k)
		}
		key = p.arrival + int64(w)
		tie = -int32(min(j.cp, 1e9))
		if e.window > 0 {
			lst = min(max(lst, nowN-e.window), nowN+e.window)
			key = min(max(key, nowN-e.window), nowN+e.window)
		}
	}
	j.lst = lst
	e.push(ji, key, tie, nowN)
}

// Dequeue takes a queued job out of the queue (canceled, or skipped); it is
// a no-op if the job is not queued.
func (e *Engine) Dequeue(jobID string) {
	ji, ok := e.jobIdx[jobID]
	if !ok || e.jobs[ji].state != jsQueued {
		return
	}
	e.unqueue(ji)
	e.uncount(ji)
}

func (e *Engine) uncount(ji int32) {
	j := &e.jobs[ji]
	if j.counted {
		j.counted = false
		p := &e.pipes[j.pipe]
		p.work = max(p.work-float64(j.dur), 0)
	}
}

// Bind records that a job already runs on a worker (recovery after a
// restart): its request is reserved there, even beyond the worker's
// capacity, and it leaves the queue if it was queued.
func (e *Engine) Bind(jobID, workerID string, now time.Time) {
	ji, ok := e.jobIdx[jobID]
	wi, ok2 := e.workerIdx[workerID]
	if !ok || !ok2 {
		return
	}
	j := &e.jobs[ji]
	switch j.state {
	case jsQueued:
		e.unqueue(ji)
	case jsPlaced:
		if j.worker == wi {
			return
		}
		e.unreserve(ji, false)
	}
	if p := &e.pipes[j.pipe]; !p.arrived {
		p.arrived, p.arrival = true, now.UnixNano()
	}
	e.reserve(ji, wi)
}

// Finish records that a job ended: its reservation (if any) is freed, it
// leaves the queue if it was there, and, if it succeeded, the predictor
// learns that its key ran for ran. A failed job may be Enqueued again.
func (e *Engine) Finish(jobID string, now time.Time, ran time.Duration, succeeded bool) {
	ji, ok := e.jobIdx[jobID]
	if !ok {
		return
	}
	j := &e.jobs[ji]
	switch j.state {
	case jsQueued:
		e.unqueue(ji)
	case jsPlaced:
		e.unreserve(ji, true)
	}
	j.state = jsDone
	e.uncount(ji)
	if succeeded && j.key >= 0 {
		e.pred.Observe(e.idx.keys[j.key].name, ran)
	}

}

// Release frees a job's reservation without learning from it (lost,
// canceled); the job is neither queued nor running until Enqueued again.
func (e *Engine) Release(jobID string) {
	ji, ok := e.jobIdx[jobID]
	if !ok || e.jobs[ji].state != jsPlaced {
		return
	}
	e.unreserve(ji, true)
}

// RemovePipeline forgets a pipeline run and its jobs (the run ended). Jobs
// still queued leave the queue; reservations still held are freed.
func (e *Engine) RemovePipeline(pipelineID string) {
	pi, ok := e.pipeIdx[pipelineID]
	if !ok {
		return
	}
	for _, ji := range e.pipes[pi].jobs {
		switch e.jobs[ji].state {
		case jsQueued:
			e.unqueue(ji)
		case jsPlaced:
			e.unreserve(ji, true)
		}
		delete(e.jobIdx, e.jobs[ji].id)
		e.jobs[ji] = ejob{}
		e.freeJ = append(e.freeJ, ji)
	}
	delete(e.pipeIdx, pipelineID)
	ti := e.pipes[pi].tenant
	e.pipes[pi] = pipeline{}
	e.tenants[ti].pipes--
	if e.tenants[ti].pipes == 0 {
		e.entitle()
	}
	e.freeP = append(e.freeP, pi)
}

// Reserved returns the resources reserved on a worker: the sum of the
// requests of the jobs placed on it (by Plan or Bind) and not yet finished
// or released. In the live system the engine is the one place where
// reservations are counted (the orchestrator's view reads them here). One
// other count stays on purpose: the simulator's check mode counts apart
// from the engine in order to check it.
func (e *Engine) Reserved(workerID string) Resources {
	if wi, ok := e.workerIdx[workerID]; ok {
		return e.workers[wi].used
	}
	return Resources{}
}

// reserve places job ji on worker wi.
func (e *Engine) reserve(ji, wi int32) {
	j := &e.jobs[ji]
	w := &e.workers[wi]
	r := &e.idx.shapes[j.shape].req
	j.state, j.worker = jsPlaced, wi
	j.prevOnWorker, j.nextOnWorker = noWorker, w.jobHead
	if w.jobHead != noWorker {
		e.jobs[w.jobHead].prevOnWorker = ji
	}
	w.jobHead = ji
	w.nJobs++
	w.used.CPUMilli += r.CPUMilli
	w.used.Memory += r.Memory
	w.used.GPU += r.GPU
	if j.key >= 0 {
		w.remember(j.key)
		e.idx.keys[j.key].remember(wi, w.join)
	}
	e.syncTrees(wi)
	ti := e.pipes[j.pipe].tenant
	t := &e.tenants[ti]
	t.held.CPUMilli += r.CPUMilli
	t.held.Memory += r.Memory
	t.held.GPU += r.GPU
	e.shareChanged(ti)
	e.nRunning++
}

// unreserve frees job ji's reservation; if notify, parked shapes that now
// fit on the worker are let go.
func (e *Engine) unreserve(ji int32, notify bool) {
	j := &e.jobs[ji]
	wi := j.worker
	w := &e.workers[wi]
	r := &e.idx.shapes[j.shape].req
	if j.prevOnWorker != noWorker {
		e.jobs[j.prevOnWorker].nextOnWorker = j.nextOnWorker
	} else {
		w.jobHead = j.nextOnWorker
	}
	if j.nextOnWorker != noWorker {
		e.jobs[j.nextOnWorker].prevOnWorker = j.prevOnWorker
	}
	j.prevOnWorker, j.nextOnWorker, j.worker, j.state = noWorker, noWorker, noWorker, jsPending
	w.nJobs--
	w.used.CPUMilli -= r.CPUMilli
	w.used.Memory -= r.Memory
	w.used.GPU -= r.GPU
	e.syncTrees(wi)
	ti := e.pipes[j.pipe].tenant
	t := &e.tenants[ti]
	t.held.CPUMilli -= r.CPUMilli
	t.held.Memory -= r.Memory
	t.held.GPU -= r.GPU
	e.shareChanged(ti)
	e.nRunning--
	if notify {
		e.freed(wi)
	}
}

// Plan places as many queued jobs as fit now, in queue order, reserves them
// and returns the assignments in the order they were decided.
func (e *Engine) Plan(now time.Time) []Assignment {
	nowN := now.UnixNano()
	var out []Assignment
	if e.slackOn {
		// Priorities above 0 first, then the jobs late against the virtual
		// FIFO clock, then the ranking.
		out = e.planRanked(nowN, MaxPriority+1, out)
		out = e.planOverdue(nowN, out)
	}
	return e.planRanked(nowN, 0, out)
}

// planRanked places jobs in queue order while the class to serve next is
// at least minClass (a priority + MaxPriority).
func (e *Engine) planRanked(nowN int64, minClass int, out []Assignment) []Assignment {
	fails := 0
	for e.liveShapes > 0 {
		c, p := e.pickClass(nowN)
		if c == nil || p < minClass {
			break
		}
		tq := &e.queues.tenantQueues[c.h[0]]
		qi := tq.h[0]
		ji := e.queues.shapeQueues[qi].h[0].job
		j := &e.jobs[ji]
		if e.idx.shapes[j.shape].parked {
			e.setShapeQueue(qi, false) // lazily, see park
			continue
		}
		wi := e.chooseWorker(&e.idx.shapes[j.shape], j.key)
		if wi == noWorker {
			e.park(j.shape)
			if fails++; fails > e.lookahead {
				break
			}
			continue
		}
		e.place(ji, wi, nowN)
		c.since = nowN
		out = append(out, Assignment{JobID: j.id, WorkerID: e.workers[wi].id})
	}
	return out
}

// place takes queued job ji out of the queue and reserves worker wi for it.
func (e *Engine) place(ji, wi int32, now int64) {
	counted := e.slackOn && e.jobs[ji].prio >= MaxPriority
	if len(e.keeps) > 0 {
		e.dropKeep(ji)
	}
	e.unqueue(ji)
	e.reserve(ji, wi)
	e.jobs[ji].started = now
	e.decisions++
	if counted {
		e.advanceFIFO(e.idx.shapes[e.jobs[ji].shape].lset, now)
	}
}

// advanceFIFO moves the virtual FIFO pointer of label set lsi by one job,
// after a job of priority 0 or above with that label set was placed: FIFO
// would have placed the job at the pointer; if it is still queued, it is
// late from now on.
func (e *Engine) advanceFIFO(lsi int32, now int64) {
	ls := &e.idx.lsets[lsi]
	if len(ls.fifo) == 0 {
		return
	}
	x := ls.fifo[0]
	ls.fifo = ls.fifo[1:]
	if e.jobs[x.job].queueSeq == x.seq {
		e.late = append(e.late, heapEntry{key: now, seq: x.seq, job: x.job})
	}
	if len(ls.fifo) == 0 {
		ls.fifo = nil // let the backing array go
	}
}

// planOverdue places first the jobs that the virtual FIFO pointer passed
// more than Slack ago and that are still queued, in pointer order, each
// where chooseWorker says; it skips those that fit nowhere now (as FIFO
// does), examining at most Lookahead of them.
func (e *Engine) planOverdue(now int64, out []Assignment) []Assignment {
	out = e.placeKept(now, out)
	bound := now - e.slack
	fails, dead := 0, 0
	for i := e.lateHead; i < len(e.late); i++ {
		x := e.late[i]
		if x.key > bound {
			break
		}
		j := &e.jobs[x.job]
		if j.queueSeq != x.seq { // placed, dequeued, or queued again later
			if i == e.lateHead {
				e.lateHead++
			} else {
				dead++
			}
			continue
		}
		sh := &e.idx.shapes[j.shape]
		wi := noWorker
		if !sh.parked {
			wi = e.chooseWorker(sh, j.key)
		}
		if wi == noWorker {
			if !sh.parked {
				e.park(j.shape)
			}
			e.keepFor(x, now)
			if fails++; fails > e.lookahead {
				break
			}
			continue
		}
		if i == e.lateHead {
			e.lateHead++
		}
		e.place(x.job, wi, now)
		e.queues.classes[j.prio].since = now
		out = append(out, Assignment{JobID: j.id, WorkerID: e.workers[wi].id})
	}
	switch {
	case dead > 1024:
		live := e.late[:0]
		for _, x := range e.late[e.lateHead:] {
			if e.jobs[x.job].queueSeq == x.seq {
				live = append(live, x)
			}
		}
		e.late, e.lateHead = live, 0
	case e.lateHead > 1024 && e.lateHead > len(e.late)/2:
		e.late = append(e.late[:0], e.late[e.lateHead:]...)
		e.lateHead = 0
	}
	return out
}

// keep is a worker kept for an overdue job (its queue entry: job and
// enqueue sequence) that fits nowhere now.
type keep struct {
	job    int32
	seq    uint64
	worker int32
	join   int64 // the worker's join stamp, to ignore a reused slot
}

// keepFor keeps a worker for overdue job x, which fits nowhere now, unless
// a worker is already kept for a job of its shape: the worker, of those
// that could hold it when empty, on which the predicted ends of the jobs
// it runs free the room soonest (an EASY-style reservation). Nothing else
// starts on a kept worker, and the job starts there as soon as it fits
// (placeKept), or elsewhere if room opens there first. Without it, a late
// job that needs a large hole waits behind a stream of small jobs that
// fill every hole as it opens, however late it is: on a loaded pool the
// tail of FIFO is made of exactly such jobs.
func (e *Engine) keepFor(x heapEntry, now int64) {
	j := &e.jobs[x.job]
	for _, k := range e.keeps {
		if e.jobs[k.job].shape == j.shape || k.job == x.job {
			return
		}
	}
	sh := &e.idx.shapes[j.shape]
	ls := &e.idx.lsets[sh.lset]
	r := &sh.req
	best, bestAt := noWorker, int64(0)
	for _, list := range [2][]int32{ls.compatCPU, ls.compatGPU} {
		if r.GPU == 0 && best != noWorker {
			break // gpu workers only when no other could hold it
		}
		for _, gi := range list {
			for _, wi := range e.idx.groups[gi].members {
				if wi == noWorker {
					continue
				}
				w := &e.workers[wi]
				if !w.live || !w.schedulable || w.kept || !fits(&w.capacity, r) || w.maxJobs == 1 && w.nJobs > 0 {
					continue
				}
				at := e.roomAt(w, r, now)
				if best == noWorker || at < bestAt || (at == bestAt && w.join < e.workers[best].join) {
					best, bestAt = wi, at
				}
			}
		}
	}
	if best == noWorker {
		return
	}
	w := &e.workers[best]
	w.kept = true
	e.syncTrees(best)
	e.keeps = append(e.keeps, keep{job: x.job, seq: x.seq, worker: best, join: w.join})
}

// roomAt is when, by the predicted ends of the jobs it runs, worker w has
// room for r (jobs past their prediction are taken to end now).
func (e *Engine) roomAt(w *eworker, r *Resources, now int64) int64 {
	free := w.free()
	if fits(&free, r) {
		return now
	}
	var ends []heapEntry
	for ji := w.jobHead; ji != noWorker; ji = e.jobs[ji].nextOnWorker {
		j := &e.jobs[ji]
		ends = append(ends, heapEntry{key: max(j.started+int64(float64(j.dur)*1e9), now), job: ji})
	}
	slices.SortFunc(ends, func(a, b heapEntry) int { return cmp.Compare(a.key, b.key) })
	for _, x := range ends {
		q := &e.idx.shapes[e.jobs[x.job].shape].req
		free.CPUMilli += q.CPUMilli
		free.Memory += q.Memory
		free.GPU += q.GPU
		if fits(&free, r) {
			return x.key
		}
	}
	return 1<<63 - 1
}

// placeKept places each job a worker is kept for once it fits there, and
// lets go of the workers kept for jobs no longer queued or lost.
func (e *Engine) placeKept(now int64, out []Assignment) []Assignment {
	for i := 0; i < len(e.keeps); {
		k := e.keeps[i]
		w := &e.workers[k.worker]
		j := &e.jobs[k.job]
		valid := w.live && w.join == k.join && w.schedulable
		if !valid || j.queueSeq != k.seq {
			e.releaseKeep(i)
			continue
		}
		free := w.free()
		if !fits(&free, &e.idx.shapes[j.shape].req) || w.full() {
			i++
			continue
		}
		e.releaseKeep(i)
		e.place(k.job, k.worker, now)
		e.queues.classes[j.prio].since = now
		out = append(out, Assignment{JobID: j.id, WorkerID: w.id})
	}
	return out
}

// dropKeep lets go of the worker kept for job ji, if any (it is placed).
func (e *Engine) dropKeep(ji int32) {
	for i, k := range e.keeps {
		if k.job == ji {
			e.releaseKeep(i)
			return
		}
	}
}

// releaseKeep ends keep i: its worker takes jobs again.
func (e *Engine) releaseKeep(i int) {
	k := e.keeps[i]
	e.keeps = slices.Delete(e.keeps, i, i+1)
	if w := &e.workers[k.worker]; w.live && w.join == k.join && w.kept {
		w.kept = false
		e.syncTrees(k.worker)
		e.freed(k.worker)
	}
}
