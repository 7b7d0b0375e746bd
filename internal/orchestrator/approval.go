package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// ErrNotWaiting means the job does not wait for an approval (it has no
// environment, or it was decided, timed out or canceled already).
var ErrNotWaiting = errors.New("job is not waiting for an approval")

// Decision is an approval or a rejection of a job that waits in
// waiting_approval. Who may decide is checked by the caller (the API asks
// the policies and the job's approvers); the orchestrator records it.
type Decision struct {
	Approve bool
	// By names who decided, as the audit trail names them.
	By      string
	Comment string
}

type decideReq struct {
	answer
	runID, jobID string
	d            Decision
	job          store.Job // the job as stored, once answered without error
}

func (r *decideReq) handle(o *Orchestrator, c *change) { o.onDecide(c, r) }

// Decide approves or rejects a job of a run that waits for an approval. An
// approved job is queued; a rejected one fails, and its dependents see a
// failure. It returns the job as stored once the decision is committed.
// ErrNotWaiting if the job does not wait; store.ErrNotFound if the run has
// no such job; ErrRunFinal if the run has ended.
func (o *Orchestrator) Decide(ctx context.Context, runID, jobID string, d Decision) (store.Job, error) {
	r := &decideReq{answer: newAnswer(), runID: runID, jobID: jobID, d: d}
	if err := o.send(ctx, r); err != nil {
		return store.Job{}, err
	}
	return r.job, nil
}

func (o *Orchestrator) onDecide(c *change, r *decideReq) {
	j := o.jobs[r.jobID]
	if j == nil || j.rec.RunID != r.runID {
		if o.runs[r.runID] != nil {
			c.reply(r, fmt.Errorf("job %s of run %s: %w", r.jobID, r.runID, store.ErrNotFound))
			return
		}
		c.reply(r, o.notLoaded(r.runID))
		return
	}
	if j.rec.State != state.JobWaitingApproval {
		c.reply(r, fmt.Errorf("job %s is %s: %w", j.rec.Key, j.rec.State, ErrNotWaiting))
		return
	}
	j.rec.DecidedBy, j.rec.DecidedAt, j.rec.DecisionComment = r.d.By, c.now, r.d.Comment
	if r.d.Approve {
		j.rec.Decision = store.DecisionApproved
		o.log.Info("job approved", "run", j.rec.RunID, "job", j.rec.Key, "by", r.d.By)
		o.approved(c, j)
	} else {
		j.rec.Decision = store.DecisionRejected
		o.log.Info("job rejected", "run", j.rec.RunID, "job", j.rec.Key, "by", r.d.By)
		msg := "rejected by " + r.d.By
		if r.d.Comment != "" {
			msg += ": " + r.d.Comment
		}
		o.finish(c, j, state.JobFailed, msg)
	}
	r.job = j.rec
	c.reply(r, nil)
}

// ready moves a job whose condition holds on: to the queue, or, when its
// environment asks for an approval, to waiting_approval until its
// deadline. The deadline is stored, so that a restart keeps it.
func (o *Orchestrator) ready(c *change, j *jobState) {
	if env := j.spec.Environment; env != nil {
		if o.setJob(c, j, state.JobWaitingApproval) {
			j.rec.ApprovalDeadline = c.now.Add(env.Timeout)
			o.waiting[j.rec.ID] = j
		}
		return
	}
	if o.setJob(c, j, state.JobQueued) {
		j.rec.QueuedAt = c.now
		o.enqueue(j, c.now)
	}
}

// approved queues a job that waited for its approval.
func (o *Orchestrator) approved(c *change, j *jobState) {
	delete(o.waiting, j.rec.ID)
	if o.setJob(c, j, state.JobQueued) {
		j.rec.QueuedAt = c.now
		o.enqueue(j, c.now)
	}
}

// checkApprovals fails the jobs whose wait for an approval has passed its
// deadline, as a rejection would.
func (o *Orchestrator) checkApprovals(c *change) {
	for _, j := range o.waiting {
		if j.rec.State != state.JobWaitingApproval {
			delete(o.waiting, j.rec.ID)
			continue
		}
		if j.rec.ApprovalDeadline.IsZero() || c.now.Before(j.rec.ApprovalDeadline) {
			continue
		}
		timeout := time.Duration(0)
		if env := j.spec.Environment; env != nil {
			timeout = env.Timeout
		}
		o.log.Info("approval timed out", "run", j.rec.RunID, "job", j.rec.Key)
		j.rec.Decision, j.rec.DecidedAt = store.DecisionTimedOut, c.now
		o.finish(c, j, state.JobFailed, fmt.Sprintf("no approval within %s", timeout))
	}
}
