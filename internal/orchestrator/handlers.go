package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// DefaultTenant is the tenant of runs submitted without one.
const DefaultTenant = "default"

// addRun makes rs one of the active runs.
func (o *Orchestrator) addRun(rs *runState) {
	o.runs[rs.rec.ID] = rs
	o.active[rs.rec.Tenant]++
}

// removeRun takes an ended run out of the active ones.
func (o *Orchestrator) removeRun(rs *runState) {
	if o.runs[rs.rec.ID] != rs {
		return
	}
	delete(o.runs, rs.rec.ID)
	if o.active[rs.rec.Tenant]--; o.active[rs.rec.Tenant] <= 0 {
		delete(o.active, rs.rec.Tenant)
	}
}

func (o *Orchestrator) onSubmit(c *change, r *submitReq) {
	req := r.req
	tenant := req.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	if req.Key != "" && o.replay(c, r, tenant) {
		return
	}
	if n, most := o.active[tenant], o.cfg.MaxActiveRuns; most > 0 && n >= most {
		r.give(fmt.Errorf("%w: tenant %s has %d runs that have not ended, the most this server takes (hodei server --max-active-runs)", ErrTooManyRuns, tenant, n))
		return
	}
	rs := &runState{rec: store.Run{
		ID:        o.ids.next(c.now),
		Pipeline:  req.Pipeline.Name,
		File:      req.Pipeline.File,
		Tenant:    tenant,
		Priority:  req.Pipeline.Priority,
		State:     state.RunQueued,
		Source:    req.Source,
		CreatedAt: c.now,
		Inputs:    req.Inputs,
		Includes:  req.Pipeline.Includes,
	}}
	if cc := req.Pipeline.Concurrency; cc != nil {
		rs.rec.ConcurrencyGroup, rs.rec.ConcurrencyLimit = cc.Group, cc.Limit
	}
	byKey := map[string]*jobState{}
	recs := make([]store.Job, 0, len(req.Jobs))
	for i, spec := range req.Jobs {
		data, err := json.Marshal(spec)
		if err != nil {
			r.give(fmt.Errorf("encode job %s: %w", spec.Key, err))
			return
		}
		j := &jobState{spec: spec, run: rs, rec: store.Job{
			ID:          rs.rec.ID + "-" + strconv.Itoa(i+1),
			RunID:       rs.rec.ID,
			Key:         spec.Key,
			Name:        spec.Name,
			Index:       i,
			State:       state.JobPending,
			Spec:        data,
			MaxAttempts: 1 + spec.Retry,
		}}
		for _, n := range spec.Needs {
			need := byKey[n]
			if need == nil {
				r.give(fmt.Errorf("job %s needs %s, which does not come before it", spec.Key, n))
				return
			}
			j.needs = append(j.needs, need)
		}
		byKey[spec.Key] = j
		rs.jobs = append(rs.jobs, j)
	}
	// A run held back by its concurrency group keeps every job pending
	// until an earlier run of the group ends.
	admitted := o.admit.Admit(rs.rec.ID, rs.rec.ConcurrencyGroup, rs.rec.ConcurrencyLimit)
	var carried map[string]int // job key to its index in req.Rerun.Carried
	ncarried := 0
	if rr := req.Rerun; rr != nil {
		carried = make(map[string]int, len(rr.Carried))
		for i, cj := range rr.Carried {
			if byKey[cj.JobKey] == nil {
				r.give(fmt.Errorf("carried job %s is not a job of the run", cj.JobKey))
				return
			}
			carried[cj.JobKey] = i
		}
		ncarried = len(carried)
		if ncarried == len(rs.jobs) {
			r.give(fmt.Errorf("submit: a re-run must run at least one job"))
			return
		}
	}
	var skipped []*jobState // jobs evaluated once stored: without needs and a false condition, or whose needs were all carried
	for _, j := range rs.jobs {
		for _, n := range j.needs {
			n.dependents = append(n.dependents, j)
		}
		if i, ok := carried[j.rec.Key]; ok {
			// Ended as it ended in the run that ran it.
			j.rec.State = state.JobSucceeded
			j.rec.FinishedAt = c.now
			req.Rerun.Carried[i].JobID = j.rec.ID
			recs = append(recs, j.rec)
			continue
		}
		if admitted && len(j.needs) > 0 && carried != nil {
			all := true
			for _, n := range j.needs {
				_, c := carried[n.rec.Key]
				all = all && c
			}
			if all {
				skipped = append(skipped, j)
			}
		}
		if admitted && len(j.needs) == 0 {
			// Stored queued at once when its condition holds; else
			// evaluate skips it below, as it would after a wait.
			if _, run, spec, err := condition(j); run && err == nil {
				switch {
				case spec != nil && !setSpec(j, *spec):
					skipped = append(skipped, j) // evaluate fails it
				case j.spec.Environment != nil:
					j.rec.State = state.JobWaitingApproval
					j.rec.ApprovalDeadline = c.now.Add(j.spec.Environment.Timeout)
				default:
					j.rec.State = state.JobQueued
					j.rec.QueuedAt = c.now
				}
			} else {
				skipped = append(skipped, j)
			}
		}
		recs = append(recs, j.rec)
	}
	if err := c.tx.InsertRun(rs.rec); err != nil {
		c.fail(err)
		return
	}
	if err := c.tx.InsertJobs(recs); err != nil {
		c.fail(err)
		return
	}
	if tr := req.Trigger; tr != nil {
		tr.RunID = rs.rec.ID
		if err := c.tx.InsertTrigger(*tr); err != nil {
			c.fail(err)
			return
		}
	}
	if rr := req.Rerun; rr != nil {
		rr.RunID = rs.rec.ID
		if err := c.tx.InsertRerun(*rr); err != nil {
			c.fail(err)
			return
		}
	}
	if req.Firing != nil {
		f := *req.Firing
		f.RunID = rs.rec.ID
		if err := c.tx.SetFiringRun(f); err != nil {
			c.fail(err)
			return
		}
	}
	if req.Key != "" {
		if err := c.tx.InsertRunKey(store.RunKey{Tenant: tenant, Key: req.Key, RunID: rs.rec.ID, CreatedAt: c.now}); err != nil {
			c.fail(err)
			return
		}
		if c.keys == nil {
			c.keys = map[string]*runState{}
		}
		c.keys[tenant+"\x00"+req.Key] = rs
	}
	rs.open = len(rs.jobs) - ncarried
	o.addRun(rs)
	o.eng.AddPipeline(pipelineSpec(rs))
	for _, j := range rs.jobs {
		o.jobs[j.rec.ID] = j
		switch j.rec.State {
		case state.JobQueued:
			o.enqueue(j, c.now)
		case state.JobWaitingApproval:
			o.waiting[j.rec.ID] = j
		}
	}
	c.notes = append(c.notes, hub.Note{Kind: hub.KindRun, RunID: rs.rec.ID, RunState: rs.rec.State, At: c.now})
	for _, j := range skipped {
		o.evaluate(c, j)
	}
	r.run = rs.rec
	c.reply(r, nil)
	if o.cfg.Metrics != nil {
		c.observe = append(c.observe, func() { o.cfg.Metrics.RunsSubmitted.Inc() })
	}
}

// replay answers a submission whose idempotency key names a run already
// made in the tenant (in this batch, or stored) with that run, and reports
// whether it did. The loop is the one writer of runs, so the check and the
// insert that follows it cannot interleave with another submission's.
func (o *Orchestrator) replay(c *change, r *submitReq, tenant string) bool {
	if rs := c.keys[tenant+"\x00"+r.req.Key]; rs != nil {
		r.run = rs.rec
		c.reply(r, nil) // once the batch that stores it commits
		return true
	}
	id, err := o.cfg.Store.RunByKey(context.Background(), tenant, r.req.Key)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err == nil {
		r.run, err = o.cfg.Store.GetRun(context.Background(), id)
	}
	if err != nil {
		r.give(fmt.Errorf("idempotency key: %w", err))
		return true
	}
	r.give(nil)
	return true
}

// fail makes the transaction fail: a write error poisons the whole batch.
func (c *change) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// notLoaded says why a request names a run this orchestrator has not
// loaded: the store's error (store.ErrNotFound for no such run),
// ErrRunFinal, or ErrNotOwned: recovery loads every active run, so an
// active one is a run another orchestrator sharing the store owns.
func (o *Orchestrator) notLoaded(runID string) error {
	run, err := o.cfg.Store.GetRun(context.Background(), runID)
	switch {
	case err != nil:
		return err
	case run.State.Final():
		return ErrRunFinal
	}
	return fmt.Errorf("run %s: %w", runID, ErrNotOwned)
}

func (o *Orchestrator) onCancel(c *change, r *cancelReq) {
	rs := o.runs[r.runID]
	if rs == nil {
		c.reply(r, o.notLoaded(r.runID))
		return
	}
	rs.canceling = true
	for _, j := range rs.jobs {
		if j.rec.State.Final() {
			continue
		}
		if j.rec.State.Active() {
			c.send(j.rec.WorkerID, bus.Dispatch{Kind: bus.KindCancel, RunID: rs.rec.ID, JobID: j.rec.ID, Attempt: j.rec.Attempt})
			o.endAttempt(c, j, state.AttemptCanceled, -1, "canceled")
		}
		o.finish(c, j, state.JobCanceled, "canceled")
	}
	c.reply(r, nil)
}

func (o *Orchestrator) onOutlook(c *change, r *outlookReq) {
	r.outlooks = make(map[string]Outlook, len(r.jobs))
	for _, id := range r.jobs {
		j := o.jobs[id]
		if j == nil {
			continue
		}
		out := Outlook{Predicted: o.eng.PredictJob(id)}
		if _, queued := o.queue[id]; queued {
			out.Waiting = o.why(id)
		} else if j.rec.State == state.JobPending {
			out.Waiting = o.pendingReason(j)
		}
		r.outlooks[id] = out
	}
	c.reply(r, nil)
}

// pendingReason says why a pending job is not queued yet: its run held
// back by its concurrency group (with the runs that hold the group), or the
// jobs it needs that have not ended.
func (o *Orchestrator) pendingReason(j *jobState) scheduler.Reason {
	if group, limit, running, held := o.admit.Holders(j.run.rec.ID); held {
		return scheduler.Reason{Code: scheduler.ReasonConcurrency,
			Detail: fmt.Sprintf("concurrency group %s allows %d run(s) at once; held by %s", group, limit, strings.Join(running, ", "))}
	}
	var waiting []string
	for _, n := range j.needs {
		if !n.rec.State.Final() {
			waiting = append(waiting, n.rec.Name)
		}
	}
	if len(waiting) == 0 {
		return scheduler.Reason{}
	}
	return scheduler.Reason{Code: scheduler.ReasonNeeds, Detail: "waiting on " + strings.Join(waiting, ", ")}
}

// enqueue puts a job in the queue.
func (o *Orchestrator) enqueue(j *jobState, now time.Time) {
	if j.firstQueued.IsZero() {
		j.firstQueued = now
	}
	o.seq++
	j.seq = o.seq
	o.queue[j.rec.ID] = j
	o.eng.Enqueue(j.rec.ID, now)
	o.dirty = true
	if o.cfg.FailUnrunnable {
		o.unchecked = append(o.unchecked, j)
	}
}

// dequeue takes a job out of the queue, if it is there.
func (o *Orchestrator) dequeue(j *jobState) {
	if _, ok := o.queue[j.rec.ID]; ok {
		delete(o.queue, j.rec.ID)
		o.eng.Dequeue(j.rec.ID)
	}
}

// pipelineSpec describes a run to the scheduler engine.
func pipelineSpec(r *runState) scheduler.PipelineSpec {
	p := scheduler.PipelineSpec{ID: r.rec.ID, Tenant: r.rec.Tenant, Priority: r.rec.Priority, Jobs: make([]scheduler.JobSpec, 0, len(r.jobs))}
	for _, j := range r.jobs {
		needs := make([]string, len(j.needs))
		for i, n := range j.needs {
			needs[i] = n.rec.ID
		}
		p.Jobs = append(p.Jobs, scheduler.JobSpec{
			ID:       j.rec.ID,
			Key:      r.rec.Pipeline + "/" + j.rec.Key,
			Needs:    needs,
			Request:  scheduler.Resources{CPUMilli: j.spec.CPUMilli, Memory: j.spec.Memory, GPU: j.spec.GPU},
			Labels:   engineLabels(&j.spec),
			Priority: scheduler.EffectivePriority(r.rec.Priority, j.spec.Priority),
		})
	}
	return p
}

// engineLabels are the labels the scheduler asks of a job's worker: the
// job's, and for a job with an image the exclusive label of its container
// (pipeline.ContainerLabel), which workers made for that container carry.
func engineLabels(s *pipeline.JobSpec) []string {
	k := pipeline.ContainerKey(s)
	if k == "" {
		return s.Labels
	}
	return append(slices.Clone(s.Labels), pipeline.ContainerLabel(k))
}

// setJob moves a job to a new state, recording it for the transaction and
// the announcements.
func (o *Orchestrator) setJob(c *change, j *jobState, to state.JobState) bool {
	if err := state.JobTo(j.rec.State, to); err != nil {
		o.log.Debug("ignored transition", "job", j.rec.ID, "err", err)
		return false
	}
	j.rec.State = to
	c.dirtyJobs[j] = true
	c.notes = append(c.notes, hub.Note{Kind: hub.KindJob, RunID: j.rec.RunID, JobID: j.rec.ID, JobKey: j.rec.Key, JobState: to, Attempt: j.rec.Attempt, Error: j.rec.Error, At: c.now})
	return true
}

func (o *Orchestrator) setRun(c *change, r *runState, to state.RunState) bool {
	if err := state.RunTo(r.rec.State, to); err != nil {
		o.log.Debug("ignored transition", "run", r.rec.ID, "err", err)
		return false
	}
	r.rec.State = to
	c.dirtyRuns[r] = true
	c.notes = append(c.notes, hub.Note{Kind: hub.KindRun, RunID: r.rec.ID, RunState: to, Error: r.rec.Error, At: c.now})
	return true
}

// release takes a job off its worker (the engine frees its reservation:
// endAttempt).
func (o *Orchestrator) release(c *change, j *jobState) {
	w := o.workers[j.rec.WorkerID]
	if w == nil || w.jobs[j.rec.ID] == nil {
		return
	}
	delete(w.jobs, j.rec.ID)
	o.dirty = true
	if len(w.jobs) == 0 && w.rec.State == state.WorkerBusy {
		o.setWorker(c, w, state.WorkerIdle)
	}
}

// endAttempt closes the current attempt and frees its worker.
func (o *Orchestrator) endAttempt(c *change, j *jobState, st state.AttemptState, code int, errMsg string) {
	j.att.State = st
	j.att.FinishedAt = c.now
	j.att.ExitCode = code
	j.att.Error = errMsg
	j.att.Reason = endReason(st, code, errMsg)
	c.saveAttempt(j)
	o.traceAttempt(c, j)
	j.rec.ExitCode = code
	if st == state.AttemptSucceeded && !j.att.StartedAt.IsZero() {
		// Only finished work teaches the predictor.
		o.eng.Finish(j.rec.ID, c.now, c.now.Sub(j.att.StartedAt), true)
	} else {
		o.eng.Release(j.rec.ID)
	}
	o.release(c, j)
}

// endReason says in a few words why an attempt ended: "succeeded",
// "canceled", "exit N", the lost reason ("lost: worker restarted"), or the
// agent's error when there is no exit code (a timeout, a bad spec).
func endReason(st state.AttemptState, code int, errMsg string) string {
	switch {
	case st == state.AttemptLost && errMsg != "":
		return errMsg
	case st == state.AttemptSucceeded, st == state.AttemptCanceled:
		return string(st)
	case code > 0:
		return "exit " + strconv.Itoa(code)
	case errMsg != "":
		return errMsg
	}
	return string(st)
}

// finish moves a job to a final state and lets its dependents and its run
// move on.
func (o *Orchestrator) finish(c *change, j *jobState, to state.JobState, errMsg string) {
	if j.rec.State == state.JobQueued {
		o.dequeue(j)
	}
	delete(o.waiting, j.rec.ID)
	if errMsg != "" {
		j.rec.Error = errMsg
	}
	if !o.setJob(c, j, to) {
		return
	}
	j.rec.FinishedAt = c.now
	o.traceJob(c, j)
	if o.cfg.Metrics != nil {
		c.observe = append(c.observe, func() { o.cfg.Metrics.JobsFinished.WithLabelValues(string(to)).Inc() })
	}
	r := j.run
	r.open--
	for _, d := range j.dependents {
		o.evaluate(c, d)
	}
	if r.open == 0 {
		o.finishRun(c, r)
	}
}

// evaluate decides whether a pending job whose needs have all ended runs or
// is skipped.
func (o *Orchestrator) evaluate(c *change, j *jobState) {
	if j.rec.State != state.JobPending || j.run.canceling || o.admit.Waiting(j.run.rec.ID) {
		return
	}
	ended, run, spec, err := condition(j)
	if !ended {
		return
	}
	if err == nil && run && spec != nil && !setSpec(j, *spec) {
		err = fmt.Errorf("encode job %s", j.rec.Key)
	}
	switch {
	case err != nil:
		// An expression that cannot be evaluated fails the job, which
		// never gets an attempt.
		o.finish(c, j, state.JobFailed, err.Error())
	case run:
		o.ready(c, j)
	default:
		o.finish(c, j, state.JobSkipped, "")
	}
}

// setSpec gives a job the spec pipeline.Ready made of it (its deferred
// expressions evaluated); it is stored with the job's next change.
func setSpec(j *jobState, spec pipeline.JobSpec) bool {
	data, err := json.Marshal(spec)
	if err != nil {
		return false
	}
	j.spec, j.rec.Spec = spec, data
	return true
}

// condition evaluates a job's `if` against its needs (pipeline.Ready):
// ended is false while a need has not ended; run says whether the job runs;
// spec, when not nil, is the job's spec with its deferred expressions
// evaluated and the outputs of its needs in its env. It is the one place a condition is read, whatever the path: a
// job without needs at submission (or when its run leaves its concurrency
// group's line), a job whose needs have ended. Like GitHub Actions'
// failure() ("true if any ancestor job fails"), failure() holds when a need
// failed, so never for a job without needs; success() holds when every need
// succeeded (a need that failed with continue-on-error counts as a
// success), so always for a job without needs; always() always holds; an
// `if` that calls none of them also needs success().
func condition(j *jobState) (ended, run bool, spec *pipeline.JobSpec, err error) {
	needs := make([]pipeline.Need, 0, len(j.needs))
	for _, n := range j.needs {
		if !n.rec.State.Final() {
			return false, false, nil, nil
		}
		needs = append(needs, pipeline.Need{JobID: n.spec.JobID, Result: result(n), Outputs: n.rec.Outputs})
	}
	s := j.spec
	run, err = pipeline.Ready(&s, j.run.rec.ID, needs)
	if err != nil || !run || !j.spec.Deferred && !pipeline.HasOutputs(needs) {
		return true, run, nil, err
	}
	return true, true, &s, nil
}

// result is how a job that ended is seen by the jobs that need it.
func result(j *jobState) string {
	switch j.rec.State {
	case state.JobSucceeded:
		return pipeline.ResultSuccess
	case state.JobFailed:
		if j.spec.ContinueOnError {
			return pipeline.ResultSuccess
		}
		return pipeline.ResultFailure
	case state.JobCanceled:
		return pipeline.ResultCancelled
	}
	return pipeline.ResultSkipped
}

func (o *Orchestrator) finishRun(c *change, r *runState) {
	to := state.RunSucceeded
	for _, j := range r.jobs {
		if j.rec.State == state.JobFailed && !j.spec.ContinueOnError {
			to = state.RunFailed
			if r.rec.Error == "" {
				r.rec.Error = "job " + j.rec.Key + " failed"
			}
		}
	}
	if r.canceling {
		to = state.RunCanceled
		r.rec.Error = "canceled"
	}
	r.rec.FinishedAt = c.now
	if !o.setRun(c, r, to) {
		return
	}
	o.traceRun(c, r)
	o.removeRun(r)
	o.eng.RemovePipeline(r.rec.ID)
	for _, j := range r.jobs {
		delete(o.jobs, j.rec.ID)
	}
	for _, id := range o.admit.Done(r.rec.ID) {
		if next := o.runs[id]; next != nil {
			for _, j := range next.jobs {
				// Jobs without needs, and those whose needs a re-run
				// carried over (evaluate waits for needs that did not end).
				o.evaluate(c, j)
			}
		}
	}
	if o.cfg.Metrics != nil {
		tenant, pipeline, took := r.rec.Tenant, r.rec.Pipeline, c.now.Sub(r.rec.CreatedAt).Seconds()
		c.observe = append(c.observe, func() {
			o.cfg.Metrics.RunsFinished.WithLabelValues(string(to)).Inc()
			o.cfg.Metrics.RunDuration.WithLabelValues(tenant, pipeline, string(to)).Observe(took)
		})
	}
}

// onReport applies a message of the reports stream: a log chunk or a status.
func (o *Orchestrator) onReport(c *change, m jetstream.Msg) {
	subj := m.Subject()
	worker := o.cfg.Subjects.WorkerOf(subj)
	if o.cfg.Subjects.IsLogs(subj) {
		chunk, err := bus.ParseLogChunk(m.Headers(), m.Data())
		if err != nil {
			o.log.Warn("bad log chunk", "subject", subj, "err", err)
			o.drop(c, DropBadMessage)
			return
		}
		o.onLogs(c, worker, chunk)
		return
	}
	var st bus.Status
	if err := json.Unmarshal(m.Data(), &st); err != nil {
		o.log.Warn("bad status", "subject", subj, "err", err)
		o.drop(c, DropBadMessage)
		return
	}
	if st.WorkerID != worker {
		o.log.Warn("status from another worker's subject", "subject", subj, "worker", st.WorkerID)
		o.drop(c, DropWrongSubject)
		return
	}
	o.onStatus(c, st)
}

func (o *Orchestrator) onStatus(c *change, st bus.Status) {
	j := o.jobs[st.JobID]
	if j == nil || st.Attempt != j.rec.Attempt || st.WorkerID != j.rec.WorkerID || !j.rec.State.Active() {
		o.drop(c, DropStaleStatus)
		o.onStaleStatus(c, j, st) // late, duplicate, or of an attempt that was given up
		return
	}
	// What the attempt used comes with its final status (saved by endAttempt).
	j.att.PeakMemory, j.att.CPUTime = st.PeakMemory, st.CPUTime
	switch st.State {
	case bus.StatusRunning:
		if j.rec.State != state.JobAssigned {
			o.drop(c, DropRepeated)
			return
		}
		o.setJob(c, j, state.JobRunning)
		j.rec.StartedAt = c.now
		j.att.State = state.AttemptRunning
		j.att.StartedAt = c.now
		c.saveAttempt(j)
		if j.run.rec.State == state.RunQueued {
			j.run.rec.StartedAt = c.now
			o.setRun(c, j.run, state.RunRunning)
		}
		o.traceStarted(c, j)
		if o.cfg.Metrics != nil {
			wait := c.now.Sub(j.rec.QueuedAt).Seconds()
			tenant, pipeline := j.run.rec.Tenant, j.run.rec.Pipeline
			c.observe = append(c.observe, func() { o.cfg.Metrics.SubmitToStart.WithLabelValues(tenant, pipeline).Observe(wait) })
		}
	case bus.StatusSucceeded:
		if j.rec.StartedAt.IsZero() {
			j.rec.StartedAt = c.now
		}
		// The agent checks the outputs; the server does again, since
		// what it keeps is read by other jobs.
		if err := pipeline.CheckOutputs(j.spec.Outputs, st.Outputs); err != nil {
			o.endAttempt(c, j, state.AttemptFailed, 0, err.Error())
			o.retryOrFail(c, j, err.Error())
			return
		}
		j.rec.Outputs = pipeline.FillOutputs(j.spec.Outputs, st.Outputs)
		o.endAttempt(c, j, state.AttemptSucceeded, 0, "")
		o.finish(c, j, state.JobSucceeded, "")
	case bus.StatusLost:
		// The worker handed the attempt back (a drain ran out of time):
		// not the job's failure. A worker hands work back only when it
		// stops: it takes no more, whatever heartbeat of before its stop
		// comes after this report.
		if w := o.workers[st.WorkerID]; w != nil && (w.rec.State == state.WorkerIdle || w.rec.State == state.WorkerBusy) {
			w.draining = true
			w.stoppedBoot = w.rec.BootID
			o.setWorker(c, w, state.WorkerDraining)
			o.syncWorker(w)
		}
		o.lose(c, j, LostHandedBack)
	case bus.StatusFenced:
		// The worker was cut off from NATS and stopped the attempt so
		// that it never runs beside its next one: not the job's failure.
		o.lose(c, j, LostFenced)
	case bus.StatusFailed, bus.StatusCanceled:
		msg := st.Error
		if msg == "" {
			msg = st.State
		}
		o.endAttempt(c, j, state.AttemptFailed, st.ExitCode, msg)
		o.retryOrFail(c, j, msg)
	}
}

// onStaleStatus handles a report of an attempt that is not the job's
// current one on that worker. An attempt the orchestrator has given up
// (lost, canceled, superseded) that still runs meets a refusal: a cancel to
// the incarnation of the worker that reported it, which kills it at once.
// A final report of an attempt recorded as lost corrects the history: it
// says how the attempt really ended.
func (o *Orchestrator) onStaleStatus(c *change, j *jobState, st bus.Status) {
	if st.State == bus.StatusRunning {
		boot := ""
		if w := o.workers[st.WorkerID]; w != nil {
			boot = w.rec.BootID
		}
		o.log.Warn("refused a report of an attempt given up", "job", st.JobID, "attempt", st.Attempt, "worker", st.WorkerID)
		c.send(st.WorkerID, bus.Dispatch{Kind: bus.KindCancel, JobID: st.JobID, Attempt: st.Attempt, BootID: boot})
		return
	}
	if j == nil {
		return
	}
	a, ok := j.given[st.Attempt]
	if !ok || a.WorkerID != st.WorkerID {
		return
	}
	delete(j.given, st.Attempt)
	switch st.State {
	case bus.StatusSucceeded:
		a.State = state.AttemptSucceeded
	case bus.StatusCanceled:
		a.State = state.AttemptCanceled
	case bus.StatusFailed:
		a.State = state.AttemptFailed
	default:
		return
	}
	a.ExitCode = st.ExitCode
	a.Error = st.Error
	if !st.At.IsZero() {
		a.FinishedAt = st.At.UTC()
	}
	c.attempts[attemptKey{a.JobID, a.N}] = a
}

// retryOrFail sends a job whose attempt ended badly back to the queue if it
// has attempts left, and fails it otherwise. Attempts lost to
// infrastructure within the job's infra_retries do not count.
func (o *Orchestrator) retryOrFail(c *change, j *jobState, msg string) {
	if j.rec.Attempt-j.rec.InfraLost < j.rec.MaxAttempts && !j.run.canceling {
		j.rec.Error = msg
		if o.setJob(c, j, state.JobQueued) {
			j.rec.QueuedAt = c.now
			o.enqueue(j, c.now)
		}
		return
	}
	o.finish(c, j, state.JobFailed, msg)
}

func (o *Orchestrator) onLogs(c *change, worker string, chunk bus.LogChunk) {
	j := o.jobs[chunk.JobID]
	if j == nil || chunk.Attempt < 1 || chunk.Attempt > j.rec.Attempt {
		o.drop(c, DropStaleLog)
		return
	}
	if chunk.Attempt == j.rec.Attempt && worker != j.rec.WorkerID {
		o.drop(c, DropStaleLog)
		return
	}
	lc := store.LogChunk{JobID: chunk.JobID, Attempt: chunk.Attempt, Seq: chunk.Seq, Step: chunk.Step, Data: chunk.Data, At: c.now}
	c.logs = append(c.logs, lc)
	if o.cfg.Metrics != nil {
		tenant, n := j.run.rec.Tenant, float64(len(chunk.Data))
		c.observe = append(c.observe, func() { o.cfg.Metrics.LogBytes.WithLabelValues(tenant).Add(n) })
	}
	c.notes = append(c.notes, hub.Note{Kind: hub.KindLog, RunID: j.rec.RunID, JobID: j.rec.ID, JobKey: j.rec.Key, Attempt: chunk.Attempt, At: c.now, Chunk: &c.logs[len(c.logs)-1]})
}

func (o *Orchestrator) setWorker(c *change, w *workerState, to state.WorkerState) {
	if w.rec.State == to {
		return
	}
	if err := state.WorkerTo(w.rec.State, to); err != nil {
		o.log.Debug("ignored worker transition", "worker", w.rec.ID, "err", err)
		return
	}
	w.rec.State = to
	c.workers[w] = true
	o.syncWorker(w)
}

// syncWorker tells the scheduler engine what it must know of a worker: its
// capacity and labels, and whether it takes new jobs.
func (o *Orchestrator) syncWorker(w *workerState) {
	spec := scheduler.WorkerSpec{
		ID: w.rec.ID, Pool: w.rec.Pool, Labels: w.rec.Labels,
		Capacity: scheduler.Resources{CPUMilli: w.rec.CPUMilli, Memory: w.rec.MemoryBytes, GPU: w.rec.GPU},
	}
	if w.once {
		spec.MaxJobs = 1
	}
	if !w.synced || !sameWorkerSpec(spec, w.spec) {
		if !w.synced {
			// The engine adds a worker schedulable: what we last told
			// it is true, whatever the worker's state.
			w.schedulable = true
		}
		o.eng.UpsertWorker(spec)
		w.spec = spec
		w.synced = true
		o.dirty = true
	}
	ok := (w.rec.State == state.WorkerIdle || w.rec.State == state.WorkerBusy) && !(w.once && w.took) && !w.fenced
	if ok != w.schedulable {
		o.eng.SetSchedulable(w.rec.ID, ok)
		w.schedulable = ok
		o.dirty = true
	}
}

func sameWorkerSpec(a, b scheduler.WorkerSpec) bool {
	if a.ID != b.ID || a.Pool != b.Pool || a.Capacity != b.Capacity || a.MaxJobs != b.MaxJobs || len(a.Labels) != len(b.Labels) {
		return false
	}
	for i := range a.Labels {
		if a.Labels[i] != b.Labels[i] {
			return false
		}
	}
	return true
}

func (o *Orchestrator) onHeartbeat(c *change, hb bus.Heartbeat) {
	w := o.workers[hb.WorkerID]
	if w != nil && w.stoppedBoot != "" && hb.BootID == w.stoppedBoot {
		hb.Draining = true // it handed work back: it is stopping
	}
	if w == nil {
		w = &workerState{jobs: map[string]*jobState{}, rec: store.Worker{ID: hb.WorkerID, State: state.WorkerIdle, FirstSeen: c.now}}
		o.workers[hb.WorkerID] = w
		c.workers[w] = true
		o.log.Info("worker joined", "worker", hb.WorkerID, "cpu_milli", hb.CPUMilli, "memory", hb.Memory, "labels", hb.Labels)
	}
	if w.fenced {
		o.log.Info("worker heard from since the restart", "worker", w.rec.ID, "same_boot", hb.BootID == w.rec.BootID)
		w.fenced = false
		o.dirty = true
	}
	if w.rec.BootID != "" && hb.BootID != w.rec.BootID {
		// The agent restarted: what it ran before is gone, and what was
		// sent to its previous incarnation is withdrawn (the new one
		// would refuse it anyway: assignments carry the boot id).
		for _, j := range w.jobList() {
			o.lose(c, j, LostRestarted)
		}
		c.workers[w] = true
		c.purge = append(c.purge, w.rec.ID)
		w.took = false
	}
	w.rec.BootID = hb.BootID
	w.rec.Pool = hb.Pool
	w.rec.Labels = hb.Labels
	w.rec.CPUMilli = hb.CPUMilli
	w.rec.MemoryBytes = hb.Memory
	w.rec.GPU = hb.GPU
	w.rec.LastSeen = c.now
	w.lastSeen = c.now
	w.hbAt = c.now
	w.draining = hb.Draining
	w.once = hb.Once
	w.running = make(map[bus.JobRef]bool, len(hb.Running))
	for _, r := range hb.Running {
		w.running[r] = true
		// Work the server has given up on (lost attempt, canceled job) is
		// stopped on the worker.
		j := o.jobs[r.JobID]
		if j == nil || j.rec.Attempt != r.Attempt || j.rec.WorkerID != w.rec.ID || !j.rec.State.Active() {
			c.send(w.rec.ID, bus.Dispatch{Kind: bus.KindCancel, JobID: r.JobID, Attempt: r.Attempt, BootID: hb.BootID})
		}
	}
	switch {
	case w.rec.State == state.WorkerLost || w.rec.State == state.WorkerProvisioning || w.rec.State == state.WorkerGone:
		w.rec.State = state.WorkerLost // a lost worker is back
		if len(w.jobs) > 0 {
			o.setWorker(c, w, state.WorkerBusy)
		} else {
			o.setWorker(c, w, state.WorkerIdle)
		}
		o.dirty = true
	case hb.Draining && w.rec.State != state.WorkerDraining:
		o.setWorker(c, w, state.WorkerDraining)
	case !hb.Draining && w.rec.State == state.WorkerDraining:
		o.setWorker(c, w, state.WorkerIdle)
		o.dirty = true
	}
	o.syncWorker(w)
	if c.now.Sub(w.lastSave) > 30*time.Second {
		c.workers[w] = true
	}
	if c.workers[w] {
		w.lastSave = c.now
		o.dirty = true
	}
}

func (w *workerState) jobList() []*jobState {
	out := make([]*jobState, 0, len(w.jobs))
	for _, j := range w.jobs {
		out = append(out, j)
	}
	return out
}

// Why attempts are lost to infrastructure (Attempt.Reason).
const (
	LostPrefix       = "lost: "
	LostRestarted    = LostPrefix + "worker restarted"
	LostSilent       = LostPrefix + "worker silent"
	LostServer       = LostPrefix + "server restarted"
	LostNotTaken     = LostPrefix + "assignment not taken"
	LostHandedBack   = LostPrefix + "handed back"
	LostNotRunning   = LostPrefix + "worker no longer runs it"
	LostWorkerIsLost = LostPrefix + "worker lost before the restart"
	LostFenced       = LostPrefix + "worker cut off from NATS stopped it"
)

// lose ends the current attempt of a job lost to infrastructure (its worker
// is gone or restarted, or handed it back). The attempt is recorded as lost,
// not failed: nobody knows how it ended, and a late report may still say.
// The job goes back to the queue without using its retry budget while its
// infra_retries last, then as a failure would.
func (o *Orchestrator) lose(c *change, j *jobState, why string) {
	if !j.rec.State.Active() {
		return
	}
	o.log.Warn("attempt lost", "run", j.rec.RunID, "job", j.rec.ID, "attempt", j.rec.Attempt, "reason", why)
	o.endAttempt(c, j, state.AttemptLost, -1, why)
	if j.given == nil {
		j.given = map[int]store.Attempt{}
	}
	j.given[j.att.N] = j.att
	if j.rec.InfraLost < o.infraRetries(j) && !j.run.canceling {
		j.rec.InfraLost++
		j.rec.Error = why
		c.dirtyJobs[j] = true
		if o.setJob(c, j, state.JobQueued) {
			j.rec.QueuedAt = c.now
			o.enqueue(j, c.now)
		}
	} else {
		o.retryOrFail(c, j, why)
	}
	if o.cfg.Metrics != nil {
		c.observe = append(c.observe, func() { o.cfg.Metrics.AttemptsLost.Inc() })
	}
}

// infraRetries is how many attempts of j may be lost to infrastructure
// without using its retry budget.
func (o *Orchestrator) infraRetries(j *jobState) int {
	if j.spec.InfraRetries != nil {
		return *j.spec.InfraRetries
	}
	return max(o.cfg.InfraRetries, 0)
}

// checkLeases declares silent workers lost and gives up assignments that
// their worker never took. It judges nothing while the orchestrator's own
// NATS connection is away (hearing): heartbeats sent meanwhile never reach
// it, and their silence is its own, not the workers'.
func (o *Orchestrator) checkLeases(c *change) {
	if !o.hearing(c.now) {
		return
	}
	for _, w := range o.workers {
		if w.rec.State == state.WorkerLost || w.rec.State == state.WorkerGone {
			continue
		}
		// Silence counts from the last heartbeat, or from when the
		// connection came back if that is later: the heartbeats of a
		// worker on another NATS node reach the connection only once
		// the cluster knows its subscription again.
		silent := c.now.Sub(later(w.lastSeen, o.bus.back))
		if silent > o.cfg.WorkerTTL && w.rec.State == state.WorkerDraining && len(w.jobs) == 0 {
			// A drained worker that stops is gone, as its manager meant.
			o.log.Info("worker gone", "worker", w.rec.ID)
			o.setWorker(c, w, state.WorkerGone)
			c.purge = append(c.purge, w.rec.ID)
			continue
		}
		if silent > o.cfg.WorkerTTL {
			o.log.Warn("worker lost", "worker", w.rec.ID, "silent_for", c.now.Sub(w.lastSeen).Round(time.Millisecond))
			for _, j := range w.jobList() {
				o.lose(c, j, LostSilent)
			}
			o.setWorker(c, w, state.WorkerLost)
			c.purge = append(c.purge, w.rec.ID)
			continue
		}
		for _, j := range w.jobList() {
			o.checkRunning(c, w, j)
			if j.rec.State == state.JobAssigned && c.now.Sub(j.att.AssignedAt) > o.cfg.AssignTimeout &&
				w.hbAt.After(j.att.AssignedAt) && !w.running[bus.JobRef{JobID: j.rec.ID, Attempt: j.rec.Attempt}] {
				// Withdrawn: if the worker takes it after all, it
				// finds the cancel first or is refused at its report.
				c.send(w.rec.ID, bus.Dispatch{Kind: bus.KindCancel, JobID: j.rec.ID, Attempt: j.rec.Attempt, BootID: w.rec.BootID})
				o.lose(c, j, LostNotTaken)
			}
		}
	}
}

// busWatch is what the loop knows of its own NATS connection (hearing).
type busWatch struct {
	reconnects uint64    // the connection's count when last looked at
	away       bool      // not connected when last looked at
	back       time.Time // when it was last seen back (zero: never away)
}

// hearing says whether the orchestrator's NATS connection is connected
// now, and notes when it came back from a disconnection (o.bus.back): at
// the first tick that finds it connected again, or with more reconnections
// than the last tick saw (a disconnection shorter than a tick). Heartbeats
// are core NATS: what workers published while it was away is lost to it.
func (o *Orchestrator) hearing(now time.Time) bool {
	if o.cfg.NC.Status() != nats.CONNECTED {
		if !o.bus.away {
			o.log.Warn("the orchestrator's NATS connection is away: no worker is lost for silence until it is back", "status", o.cfg.NC.Status().String())
		}
		o.bus.away = true
		return false
	}
	n := o.cfg.NC.Stats().Reconnects
	if o.bus.away || n != o.bus.reconnects {
		o.log.Info("the orchestrator's NATS connection is back: workers' silence counts from now", "url", o.cfg.NC.ConnectedUrl())
		o.bus.away, o.bus.reconnects, o.bus.back = false, n, now
	}
	return true
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkRunning gives up a running attempt that its worker's heartbeats have
// left out for longer than AssignTimeout: the worker no longer runs it, and
// its final report, which would have come before, never will (the agent
// could not publish it while the server was away for too long).
func (o *Orchestrator) checkRunning(c *change, w *workerState, j *jobState) {
	if j.rec.State != state.JobRunning || !w.hbAt.After(j.att.StartedAt) ||
		w.running[bus.JobRef{JobID: j.rec.ID, Attempt: j.rec.Attempt}] {
		j.missing = time.Time{}
		return
	}
	if j.missing.IsZero() {
		j.missing = c.now
		return
	}
	if c.now.Sub(j.missing) > o.cfg.AssignTimeout {
		j.missing = time.Time{}
		o.lose(c, j, LostNotRunning)
	}
}

// schedule asks the scheduler engine for placements and applies them.
func (o *Orchestrator) schedule(c *change) {
	o.dirty = false
	if len(o.queue) == 0 {
		return
	}
	o.passStart = time.Now()
	for _, a := range o.eng.Plan(c.now) {
		j, w := o.queue[a.JobID], o.workers[a.WorkerID]
		if j == nil || w == nil {
			// The engine and the loop disagree: a bug. Give the
			// reservation back rather than leak it.
			o.log.Error("scheduler placed an unknown job or worker", "job", a.JobID, "worker", a.WorkerID)
			o.eng.Release(a.JobID)
			continue
		}
		o.assign(c, j, w)
	}
	o.failUnrunnable(c)
}

// failUnrunnable fails the jobs enqueued since the last call that nothing
// could ever run (cfg.FailUnrunnable): no live worker, and no pool. It waits
// until the fleet is known (fleetKnown); before, the jobs stay to be
// checked.
func (o *Orchestrator) failUnrunnable(c *change) {
	if len(o.unchecked) == 0 {
		return
	}
	pools, known := o.fleetKnown(c.now)
	if !known {
		if len(o.unchecked) > 2*len(o.queue)+64 {
			// A worker that never joins must not make the list grow
			// without bound: keep the jobs still queued.
			o.unchecked = slices.DeleteFunc(o.unchecked, func(j *jobState) bool {
				_, queued := o.queue[j.rec.ID]
				return !queued
			})
		}
		return
	}
	for _, j := range o.unchecked {
		if _, queued := o.queue[j.rec.ID]; !queued {
			continue
		}
		if why := o.eng.WhyWith(j.rec.ID, pools); why.Never() {
			o.finish(c, j, state.JobFailed, "no worker can run it: "+why.Detail)
		}
	}
	clear(o.unchecked)
	o.unchecked = o.unchecked[:0]
}

// fleetKnown says whether every worker there may be is known: every
// in-process worker has joined since this process started, with the labels
// and capacity it has now; the pools are known (and returned); and the
// agents that connect over NATS have had JoinGrace since Start to join.
func (o *Orchestrator) fleetKnown(now time.Time) ([]scheduler.Pool, bool) {
	if now.Sub(o.startedAt) < o.cfg.JoinGrace {
		return nil, false
	}
	for _, id := range o.cfg.InProcess {
		w := o.workers[id]
		if w == nil || !w.synced || w.fenced || (w.rec.State != state.WorkerIdle && w.rec.State != state.WorkerBusy) {
			return nil, false
		}
	}
	if o.cfg.Pools == nil {
		return nil, true
	}
	return o.cfg.Pools()
}

// why says why a queued job waits, told of the pools (cfg.Pools) as they
// are now.
func (o *Orchestrator) why(jobID string) scheduler.Reason {
	var pools []scheduler.Pool
	if o.cfg.Pools != nil {
		pools, _ = o.cfg.Pools()
	}
	return o.eng.WhyWith(jobID, pools)
}

func (o *Orchestrator) assign(c *change, j *jobState, w *workerState) {
	j.rec.Attempt++
	if !o.setJob(c, j, state.JobAssigned) {
		j.rec.Attempt--
		o.eng.Release(j.rec.ID)
		return
	}
	delete(o.queue, j.rec.ID) // the engine took it out of its own queue when it placed it
	j.rec.WorkerID = w.rec.ID
	j.rec.ExitCode = 0
	j.att = store.Attempt{JobID: j.rec.ID, N: j.rec.Attempt, WorkerID: w.rec.ID, State: state.AttemptAssigned, AssignedAt: c.now}
	c.saveAttempt(j)
	o.traceAssigned(c, j, o.passStart)
	w.jobs[j.rec.ID] = j
	if w.once && !w.took {
		// An ephemeral worker takes no second job, even before its
		// heartbeat says it drains.
		w.took = true
		o.syncWorker(w)
	}
	if w.rec.State == state.WorkerIdle {
		o.setWorker(c, w, state.WorkerBusy)
	}
	c.send(w.rec.ID, bus.Dispatch{Kind: bus.KindAssign, RunID: j.rec.RunID, JobID: j.rec.ID, Attempt: j.rec.Attempt, BootID: w.rec.BootID,
		Tenant: j.run.rec.Tenant, Spec: j.rec.Spec})
}
