package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// recover loads the runs that had not ended when the last process stopped.
// Jobs that were assigned or running stay with their worker: if the worker is
// alive it keeps heartbeating and reporting, and if it is not, its lease
// expires after WorkerTTL and the jobs go back to the queue. Assignments are
// published again (JetStream drops the duplicates), since the process may
// have died between storing an assignment and publishing it; they carry the
// boot id of the incarnation they were made for, so a worker that restarted
// meanwhile refuses them.
//
// Fencing: every worker restored from the store starts unschedulable, and
// gets no job until it heartbeats (and so tells its current boot id). The
// attempts of workers that ran inside the previous process (cfg.InProcess)
// and of workers already lost are lost at once: they cannot be running.
// That is at a start only (atStart): reload calls recover too, after a failed
// transaction, while the local agents still run their jobs.
func (o *Orchestrator) recover(ctx context.Context, atStart bool) error {
	now := time.Now().UTC()
	runs, jobs, err := o.cfg.Store.ActiveRuns(ctx)
	if err != nil {
		return err
	}
	workers, err := o.cfg.Store.ListWorkers(ctx)
	if err != nil {
		return err
	}
	o.runs = map[string]*runState{}
	o.active = map[string]int{}
	o.jobs = map[string]*jobState{}
	o.queue = map[string]*jobState{}
	o.waiting = map[string]*jobState{}
	o.unchecked = nil
	o.workers = map[string]*workerState{}
	o.admit = scheduler.NewAdmission()
	for _, w := range workers {
		if w.State == state.WorkerGone {
			continue
		}
		o.workers[w.ID] = &workerState{rec: w, jobs: map[string]*jobState{}, lastSeen: now, lastSave: now, fenced: true}
	}
	byRun := map[string]*runState{}
	for _, r := range runs {
		rs := &runState{rec: r}
		byRun[r.ID] = rs
		o.addRun(rs)
	}
	for _, jr := range jobs {
		rs := byRun[jr.RunID]
		if rs == nil {
			continue
		}
		j := &jobState{rec: jr, run: rs}
		if err := json.Unmarshal(jr.Spec, &j.spec); err != nil {
			return fmt.Errorf("job %s spec: %w", jr.ID, err)
		}
		rs.jobs = append(rs.jobs, j)
		o.jobs[jr.ID] = j
	}
	var placed []string
	for id, j := range o.jobs {
		if j.rec.State.Active() {
			placed = append(placed, id)
		}
	}
	attempts, err := o.attemptsOf(ctx, placed)
	if err != nil {
		return err
	}
	// Concurrency groups: runs that had started count first, then the
	// waiting ones line up again in the order they were submitted.
	var waiting []*runState
	for _, r := range runs {
		rs := o.runs[r.ID]
		if rs.rec.ConcurrencyGroup == "" {
			continue
		}
		started := false
		for _, j := range rs.jobs {
			started = started || j.rec.State != state.JobPending
		}
		if started {
			o.admit.Resume(rs.rec.ID, rs.rec.ConcurrencyGroup, rs.rec.ConcurrencyLimit)
		} else {
			waiting = append(waiting, rs)
		}
	}
	sort.Slice(waiting, func(i, k int) bool { return waiting[i].rec.ID < waiting[k].rec.ID })
	for _, rs := range waiting {
		o.admit.Admit(rs.rec.ID, rs.rec.ConcurrencyGroup, rs.rec.ConcurrencyLimit)
	}
	var redispatch []bus.Dispatch
	var toQueue, toBind []*jobState
	for _, rs := range o.runs {
		byKey := map[string]*jobState{}
		for _, j := range rs.jobs {
			byKey[j.rec.Key] = j
		}
		for _, j := range rs.jobs {
			for _, n := range j.spec.Needs {
				if need := byKey[n]; need != nil {
					j.needs = append(j.needs, need)
					need.dependents = append(need.dependents, j)
				}
			}
			if !j.rec.State.Final() {
				rs.open++
			}
			if rs.rec.State == state.RunCanceled {
				rs.canceling = true
			}
			switch {
			case j.rec.State == state.JobQueued:
				toQueue = append(toQueue, j)
			case j.rec.State == state.JobWaitingApproval:
				// Its deadline is stored: the wait goes on where it was.
				o.waiting[j.rec.ID] = j
			case j.rec.State.Active():
				toBind = append(toBind, j)
				for _, a := range attempts[j.rec.ID] {
					if a.N == j.rec.Attempt {
						j.att = a
					}
					if a.State == state.AttemptLost {
						if j.given == nil {
							j.given = map[int]store.Attempt{}
						}
						j.given[a.N] = a
					}
				}
				if j.att.N == 0 {
					j.att = store.Attempt{JobID: j.rec.ID, N: j.rec.Attempt, WorkerID: j.rec.WorkerID, State: state.AttemptState(j.rec.State), AssignedAt: now}
				}
				w := o.workers[j.rec.WorkerID]
				if w == nil {
					w = &workerState{rec: store.Worker{ID: j.rec.WorkerID, State: state.WorkerIdle, FirstSeen: now}, jobs: map[string]*jobState{}, lastSeen: now, lastSave: now, fenced: true}
					o.workers[w.rec.ID] = w
				}
				w.jobs[j.rec.ID] = j
				if j.rec.State == state.JobAssigned {
					// The new assignment timeout starts now.
					j.att.AssignedAt = now
					redispatch = append(redispatch, bus.Dispatch{Kind: bus.KindAssign, RunID: j.rec.RunID, JobID: j.rec.ID, Attempt: j.rec.Attempt, BootID: w.rec.BootID,
						Tenant: rs.rec.Tenant, Spec: j.rec.Spec})
				}
			}
		}
	}
	// The scheduler engine learns the fleet, the runs, and what is queued
	// and placed, in that order.
	o.eng = o.newEngine()
	for _, w := range o.workers {
		o.syncWorker(w)
	}
	for _, rs := range o.runs {
		o.eng.AddPipeline(pipelineSpec(rs))
	}
	sort.Slice(toQueue, func(i, k int) bool { return toQueue[i].rec.QueuedAt.Before(toQueue[k].rec.QueuedAt) })
	for _, j := range toQueue {
		o.enqueue(j, j.rec.QueuedAt)
	}
	for _, j := range toBind {
		o.eng.Bind(j.rec.ID, j.rec.WorkerID, now)
	}
	// A crash can leave pending jobs whose needs all ended, or runs whose
	// jobs all ended; finish what the last process could not.
	err = o.cfg.Store.Update(ctx, func(tx store.Tx) error {
		c := newChange(tx, now)
		inProcess := map[string]bool{}
		for _, id := range o.cfg.InProcess {
			inProcess[id] = true
		}
		for _, w := range o.workers {
			why := ""
			switch {
			case !atStart:
				continue
			case inProcess[w.rec.ID]:
				why = LostServer
			case w.rec.State == state.WorkerLost:
				why = LostWorkerIsLost
			default:
				continue
			}
			for _, j := range w.jobList() {
				o.lose(c, j, why)
			}
		}
		for _, d := range redispatch {
			// Not if it was lost above (its run may even have ended).
			if j := o.jobs[d.JobID]; j != nil && j.rec.State == state.JobAssigned && j.rec.Attempt == d.Attempt {
				c.send(j.rec.WorkerID, d)
			}
		}
		for _, rs := range o.runs {
			for _, j := range rs.jobs {
				if j.rec.State == state.JobPending {
					o.evaluate(c, j)
				}
			}
			if rs.open == 0 && !rs.rec.State.Final() {
				o.finishRun(c, rs)
			}
		}
		if c.err != nil {
			return c.err
		}
		if err := o.write(c); err != nil {
			return err
		}
		o.pending = c
		return nil
	})
	if err != nil {
		return err
	}
	if o.pending != nil {
		o.announce(o.pending, &batch{})
		o.pending = nil
	}
	o.dirty = true
	if len(o.runs) > 0 {
		o.log.Info("recovered active runs", "runs", len(o.runs), "jobs", len(o.jobs), "queued", len(o.queue), "workers", len(o.workers))
	}
	return nil
}

// attemptsOf reads the attempts of jobs from the store, several jobs at
// once: a new leader reads those of every assigned or running job, a query
// each, and on a loaded database their round trips one after the other
// took seconds of its takeover.
func (o *Orchestrator) attemptsOf(ctx context.Context, jobs []string) (map[string][]store.Attempt, error) {
	out := make(map[string][]store.Attempt, len(jobs))
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan string)
	for range min(8, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				atts, err := o.cfg.Store.ListAttempts(ctx, id)
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("attempts of job %s: %w", id, err)
				}
				out[id] = atts
				mu.Unlock()
			}
		}()
	}
	for _, id := range jobs {
		next <- id
	}
	close(next)
	wg.Wait()
	return out, first
}

// reload rebuilds the live state from the store after a failed transaction.
func (o *Orchestrator) reload(ctx context.Context) error {
	hbs := map[string]*workerState{}
	for id, w := range o.workers {
		hbs[id] = w
	}
	if err := o.recover(ctx, false); err != nil {
		return err
	}
	for id, w := range o.workers {
		if old := hbs[id]; old != nil {
			w.lastSeen = old.lastSeen
			w.hbAt = old.hbAt
			w.running = old.running
			w.fenced = old.fenced
			o.syncWorker(w)
		}
	}
	return nil
}
