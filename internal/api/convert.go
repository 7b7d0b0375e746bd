package api

import (
	"encoding/json"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/store"
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func elapsed(from, to, now time.Time) float64 {
	if from.IsZero() {
		return 0
	}
	if to.IsZero() {
		to = now
	}
	d := to.Sub(from)
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

// RunJSON converts a stored run (and its jobs, when given) to its API shape.
func RunJSON(r store.Run, jobs []store.Job, now time.Time) wire.Run {
	out := wire.Run{
		ID:              r.ID,
		Pipeline:        r.Pipeline,
		File:            r.File,
		Tenant:          r.Tenant,
		Priority:        r.Priority,
		State:           r.State,
		Error:           r.Error,
		CreatedAt:       r.CreatedAt.UTC(),
		StartedAt:       timePtr(r.StartedAt),
		FinishedAt:      timePtr(r.FinishedAt),
		DurationSeconds: elapsed(r.CreatedAt, r.FinishedAt, now),
		Inputs:          r.Inputs,
	}
	if !r.State.Final() {
		out.FinishedAt = nil
		out.DurationSeconds = elapsed(r.CreatedAt, time.Time{}, now)
	}
	if jobs != nil {
		out.Jobs = make([]wire.Job, len(jobs))
		for i, j := range jobs {
			out.Jobs[i] = JobJSON(j, now)
		}
	}
	return out
}

// JobJSON converts a stored job to its API shape (without attempts).
func JobJSON(j store.Job, now time.Time) wire.Job {
	var spec struct {
		Needs       []string              `json:"needs"`
		Environment *pipeline.Environment `json:"environment"`
	}
	_ = json.Unmarshal(j.Spec, &spec)
	if spec.Needs == nil {
		spec.Needs = []string{}
	}
	out := wire.Job{
		ID:          j.ID,
		RunID:       j.RunID,
		Key:         j.Key,
		Name:        j.Name,
		Index:       j.Index,
		Needs:       spec.Needs,
		State:       j.State,
		Attempt:     j.Attempt,
		MaxAttempts: j.MaxAttempts,
		InfraLost:   j.InfraLost,
		Worker:      j.WorkerID,
		QueuedAt:    timePtr(j.QueuedAt),
		StartedAt:   timePtr(j.StartedAt),
		FinishedAt:  timePtr(j.FinishedAt),
		Error:       j.Error,
		Outputs:     j.Outputs,
	}
	if e := spec.Environment; e != nil {
		out.Approval = &wire.Approval{Environment: e.Name, Approvers: e.Approvers, Deadline: timePtr(j.ApprovalDeadline),
			Decision: j.Decision, DecidedBy: j.DecidedBy, DecidedAt: timePtr(j.DecidedAt), Comment: j.DecisionComment}
	}
	final := j.State.Final()
	if !final {
		out.FinishedAt = nil
	}
	if !j.StartedAt.IsZero() {
		end := time.Time{}
		if final {
			end = j.FinishedAt
		}
		out.DurationSeconds = elapsed(j.StartedAt, end, now)
	}
	if final && j.Attempt > 0 {
		code := j.ExitCode
		out.ExitCode = &code
	}
	return out
}

// AttemptJSON converts a stored attempt to its API shape.
func AttemptJSON(a store.Attempt) wire.Attempt {
	out := wire.Attempt{
		N:          a.N,
		Worker:     a.WorkerID,
		State:      a.State,
		AssignedAt: timePtr(a.AssignedAt),
		StartedAt:  timePtr(a.StartedAt),
		FinishedAt: timePtr(a.FinishedAt),
		Error:      a.Error,
		Reason:     a.Reason,
	}
	if !a.FinishedAt.IsZero() {
		code := a.ExitCode
		out.ExitCode = &code
	}
	if a.PeakMemory > 0 || a.CPUTime > 0 {
		peak, cpu := a.PeakMemory, a.CPUTime.Seconds()
		out.PeakMemory, out.CPUSeconds = &peak, &cpu
	}
	return out
}
