package orchestrator

import (
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/tracing"
)

// The spans of a run's trace that the orchestrator emits (see package
// tracing), each once what it measures has ended and its batch is
// committed. A server restarted meanwhile still emits them, with the
// times of the records: only the schedule span of an attempt assigned
// before the restart is lost.

func (o *Orchestrator) emit(c *change, s tracing.Span) {
	if tracing.Enabled() {
		c.observe = append(c.observe, func() { tracing.Emit(s) })
	}
}

func runAttrs(r *runState) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("hodei.run.id", r.rec.ID),
		attribute.String("hodei.pipeline", r.rec.Pipeline),
		attribute.String("hodei.tenant", r.rec.Tenant),
	}
}

func jobAttrs(j *jobState) []attribute.KeyValue {
	return append(runAttrs(j.run), attribute.String("hodei.job.id", j.rec.ID), attribute.String("hodei.job.key", j.rec.Key))
}

// traceRun emits the run's span, the root of its trace.
func (o *Orchestrator) traceRun(c *change, r *runState) {
	if !tracing.Enabled() {
		return
	}
	s := tracing.Span{Name: "run " + r.rec.Pipeline, Run: r.rec.ID, ID: tracing.RunSpan(r.rec.ID),
		Start: r.rec.CreatedAt, End: r.rec.FinishedAt, Attrs: append(runAttrs(r), attribute.String("hodei.state", string(r.rec.State)))}
	if r.rec.State != state.RunSucceeded {
		s.Err = string(r.rec.State)
	}
	o.emit(c, s)
}

// traceJob emits a job's span (child of the run's), from when it was first
// queued (the run's creation if that is not known: a restart came between)
// to its end.
func (o *Orchestrator) traceJob(c *change, j *jobState) {
	if !tracing.Enabled() {
		return
	}
	start := j.firstQueued
	if start.IsZero() {
		start = j.run.rec.CreatedAt
	}
	s := tracing.Span{Name: "job " + j.rec.Key, Run: j.run.rec.ID, ID: tracing.JobSpan(j.rec.ID), Parent: tracing.RunSpan(j.run.rec.ID),
		Start: start, End: j.rec.FinishedAt,
		Attrs: append(jobAttrs(j), attribute.String("hodei.state", string(j.rec.State)), attribute.Int("hodei.attempts", j.rec.Attempt))}
	if j.rec.State != state.JobSucceeded {
		s.Err = j.rec.Error
		if s.Err == "" {
			s.Err = string(j.rec.State)
		}
	}
	o.emit(c, s)
}

// traceAssigned emits, for the attempt just assigned, the queue wait that
// ended (children of the job's span) and the scheduling pass that placed it.
func (o *Orchestrator) traceAssigned(c *change, j *jobState, passStart time.Time) {
	if !tracing.Enabled() {
		return
	}
	n := strconv.Itoa(j.att.N)
	attrs := append(jobAttrs(j), attribute.Int("hodei.attempt", j.att.N), attribute.String("hodei.worker.id", j.att.WorkerID))
	o.emit(c, tracing.Span{Name: "queue", Run: j.run.rec.ID, ID: tracing.SpanID("queue", j.rec.ID, n), Parent: tracing.JobSpan(j.rec.ID),
		Start: j.rec.QueuedAt, End: j.att.AssignedAt, Attrs: attrs})
	o.emit(c, tracing.Span{Name: "schedule", Run: j.run.rec.ID, ID: tracing.SpanID("schedule", j.rec.ID, n), Parent: tracing.JobSpan(j.rec.ID),
		Start: passStart, End: time.Now(), Attrs: attrs})
}

// traceStarted emits the dispatch of an attempt: from its assignment to
// its worker saying it started (child of the attempt's span).
func (o *Orchestrator) traceStarted(c *change, j *jobState) {
	if !tracing.Enabled() {
		return
	}
	o.emit(c, tracing.Span{Name: "dispatch", Run: j.run.rec.ID, ID: tracing.SpanID("dispatch", j.rec.ID, strconv.Itoa(j.att.N)),
		Parent: tracing.AttemptSpan(j.rec.ID, j.att.N), Start: j.att.AssignedAt, End: j.att.StartedAt,
		Attrs: append(jobAttrs(j), attribute.Int("hodei.attempt", j.att.N), attribute.String("hodei.worker.id", j.att.WorkerID))})
}

// traceAttempt emits an ended attempt's span (child of the job's).
func (o *Orchestrator) traceAttempt(c *change, j *jobState) {
	if !tracing.Enabled() {
		return
	}
	a := j.att
	s := tracing.Span{Name: "attempt " + strconv.Itoa(a.N), Run: j.run.rec.ID, ID: tracing.AttemptSpan(j.rec.ID, a.N), Parent: tracing.JobSpan(j.rec.ID),
		Start: a.AssignedAt, End: a.FinishedAt,
		Attrs: append(jobAttrs(j), attribute.Int("hodei.attempt", a.N), attribute.String("hodei.worker.id", a.WorkerID),
			attribute.String("hodei.state", string(a.State)), attribute.Int("hodei.exit_code", a.ExitCode), attribute.String("hodei.reason", a.Reason))}
	if a.State != state.AttemptSucceeded {
		s.Err = a.Reason
	}
	o.emit(c, s)
}
