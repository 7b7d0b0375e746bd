package scheduler

import (
	"fmt"
)

// checkInvariants verifies the engine's internal indexes against its plain
// state; tests call it after every step.
func (e *Engine) checkInvariants() error {
	// Workers: used = sum of placed requests; trees hold schedulable workers
	// with the right keys and maxima.
	used := make([]Resources, len(e.workers))
	running := 0
	queued := 0
	for ji := range e.jobs {
		j := &e.jobs[ji]
		if !j.live {
			continue
		}
		switch j.state {
		case jsPlaced:
			running++
			r := e.idx.shapes[j.shape].req
			u := &used[j.worker]
			u.CPUMilli += r.CPUMilli
			u.Memory += r.Memory
			u.GPU += r.GPU
			if !e.workers[j.worker].live {
				return fmt.Errorf("job %s placed on dead worker", j.id)
			}
		case jsQueued:
			queued++
			q := &e.queues.shapeQueues[j.queue]
			if int(j.heapPos) >= len(q.h) || q.h[j.heapPos].job != int32(ji) {
				return fmt.Errorf("job %s: heap position wrong", j.id)
			}
		}
	}
	if running != e.nRunning || queued != e.nQueued {
		return fmt.Errorf("counts: running %d/%d queued %d/%d", running, e.nRunning, queued, e.nQueued)
	}
	for wi := range e.workers {
		w := &e.workers[wi]
		if !w.live {
			continue
		}
		if used[wi] != w.used {
			return fmt.Errorf("worker %s used %+v, jobs sum %+v", w.id, w.used, used[wi])
		}
		n := 0
		for ji := w.jobHead; ji != noWorker; ji = e.jobs[ji].nextOnWorker {
			n++
			if e.jobs[ji].worker != int32(wi) {
				return fmt.Errorf("worker %s lists job %s of another worker", w.id, e.jobs[ji].id)
			}
		}
		if int32(n) != w.nJobs {
			return fmt.Errorf("worker %s: %d jobs listed, %d counted", w.id, n, w.nJobs)
		}
		if w.inTrees != (w.schedulable && w.group != groupNone && !w.full()) {
			return fmt.Errorf("worker %s: inTrees %v schedulable %v", w.id, w.inTrees, w.schedulable)
		}
		if want := e.groupKeyOf(w); e.idx.groupIDs[want] != w.group {
			return fmt.Errorf("worker %s in the wrong group", w.id)
		}
	}
	for gi := range e.idx.groups {
		g := &e.idx.groups[gi]
		for _, k := range g.kinds {
			t := g.trees[k]
			cnt := 0
			var prev *tnode
			var walk func(i int32) error
			walk = func(i int32) error {
				if i == nilNode {
					return nil
				}
				n := &t.n[i]
				if err := walk(n.l); err != nil {
					return err
				}
				cnt++
				w := &e.workers[g.members[i]]
				f := w.free()
				if n.k1 != w.treeKey(k) || n.k2 != w.join || n.fc != f.CPUMilli || n.fm != f.Memory || int(n.fg) != f.GPU {
					return fmt.Errorf("group %d tree %d: stale node for %s", gi, k, w.id)
				}
				if prev != nil && (prev.k1 > n.k1 || (prev.k1 == n.k1 && prev.k2 >= n.k2)) {
					return fmt.Errorf("group %d tree %d: out of order", gi, k)
				}
				prev = n
				mc, mm, mg := n.fc, n.fm, n.fg
				for _, c := range []int32{n.l, n.r} {
					if c != nilNode {
						mc, mm, mg = max(mc, t.n[c].mc), max(mm, t.n[c].mm), max(mg, t.n[c].mg)
						if t.n[c].pri > n.pri {
							return fmt.Errorf("heap order of treap broken")
						}
					}
				}
				if mc != n.mc || mm != n.mm || mg != n.mg {
					return fmt.Errorf("group %d tree %d: stale maxima", gi, k)
				}
				return walk(n.r)
			}
			if err := walk(t.root); err != nil {
				return err
			}
			if cnt != g.n {
				return fmt.Errorf("group %d tree %d: %d nodes, %d counted", gi, k, cnt, g.n)
			}
		}
	}
	// Queues: shapeQueue in its tenantQueue heap iff non-empty and not parked; heaps ordered.
	for qi := range e.queues.shapeQueues {
		q := &e.queues.shapeQueues[qi]
		for i := 1; i < len(q.h); i++ {
			if q.h[i].less(q.h[(i-1)/2]) {
				return fmt.Errorf("job heap out of order")
			}
		}
		sh := &e.idx.shapes[q.shape]
		if q.pos != noPos && len(q.h) == 0 {
			return fmt.Errorf("shapeQueue %d: empty but in heap", qi)
		}
		if len(q.h) > 0 && !sh.parked && q.pos == noPos {
			return fmt.Errorf("shapeQueue %d: ready but not in heap", qi)
		}
		if q.pos != noPos && e.queues.tenantQueues[q.tenantQueue].h[q.pos] != int32(qi) {
			return fmt.Errorf("shapeQueue %d: wrong position", qi)
		}
	}
	for tqi := range e.queues.tenantQueues {
		tq := &e.queues.tenantQueues[tqi]
		n := 0
		for _, qi := range e.queues.shapeQueues {
			if qi.tenantQueue == int32(tqi) {
				n += len(qi.h)
			}
		}
		if n != tq.n {
			return fmt.Errorf("tenantQueue %d: %d queued, counted %d", tqi, n, tq.n)
		}
		for i := 1; i < len(tq.h); i++ {
			if e.shapeQueueLess(tq.h[i], tq.h[(i-1)/2]) {
				return fmt.Errorf("tenantQueue heap out of order")
			}
		}
		if (len(tq.h) > 0) != (tq.pos != noPos) {
			return fmt.Errorf("tenantQueue %d membership", tqi)
		}
		if tq.pos != noPos && e.queues.classes[tq.class].h[tq.pos] != int32(tqi) {
			return fmt.Errorf("tenantQueue %d: wrong position", tqi)
		}
	}
	for c := range e.queues.classes {
		cls := &e.queues.classes[c]
		for i := 1; i < len(cls.h); i++ {
			if e.tenantQueueLess(cls.h[i], cls.h[(i-1)/2]) {
				return fmt.Errorf("class heap out of order")
			}
		}
	}
	live := 0
	for si := range e.idx.shapes {
		sh := &e.idx.shapes[si]
		n := 0
		for _, qi := range sh.queues {
			n += len(e.queues.shapeQueues[qi].h)
		}
		if int32(n) != sh.n {
			return fmt.Errorf("shape %d: %d queued, counted %d", si, n, sh.n)
		}
		if n > 0 && !sh.parked {
			live++
		}
	}
	if live != e.liveShapes {
		return fmt.Errorf("live shapes %d, counted %d", live, e.liveShapes)
	}
	// Parked shapes: none fits any schedulable worker that serves it.
	for si := range e.idx.shapes {
		sh := &e.idx.shapes[si]
		if !sh.parked {
			continue
		}
		for wi := range e.workers {
			w := &e.workers[wi]
			if !w.live || !w.inTrees || !e.groupServes(w.group, sh.lset) {
				continue
			}
			f := w.free()
			if fits(&f, &sh.req) {
				return fmt.Errorf("shape %d parked but fits %s", si, w.id)
			}
		}
	}
	return nil
}
