package agent

import (
	"io"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/steplog"
	"github.com/hodei-ci/hodei/internal/tracing"
)

// stepHeader is the line the agent writes before step i (0-based) of n.
// The title is masked: the script may name a secret's value.
func stepHeader(i, n int, st pipeline.StepSpec, masks *mask.Set) string {
	return steplog.Header(i, n, steplog.Title(masks.String(st.Name), masks.String(st.Run)))
}

// stepFooter is the line the agent writes after step i (0-based) of n: its
// exit code, or why it was stopped when it has none, and how long it ran.
func stepFooter(i, n, code int, err error, took time.Duration, masks *mask.Set) string {
	how := steplog.Exited(code)
	if err != nil && code < 0 {
		how = steplog.Stopped(masks.String(err.Error()))
	}
	return steplog.Footer(i, n, how, took)
}

// traceStep emits step i's span, a child of the attempt's span: the one
// the assignment's traceparent names, or the one derived from the attempt
// (the same, unless the header was lost). Its name is masked as the log's
// header is.
func traceStep(d bus.Dispatch, i int, st pipeline.StepSpec, started time.Time, code int, err error, masks *mask.Set) {
	if !tracing.Enabled() {
		return
	}
	parent := tracing.AttemptSpan(d.JobID, d.Attempt)
	if sc := tracing.Extract(func(k string) string {
		if k == bus.TraceParentHeader {
			return d.TraceParent
		}
		return ""
	}); sc.IsValid() && sc.TraceID() == tracing.RunTrace(d.RunID) {
		parent = sc.SpanID()
	}
	name := st.Name
	if name == "" {
		name = "step " + strconv.Itoa(i+1)
	}
	s := tracing.Span{Name: masks.String(name), Run: d.RunID, ID: tracing.StepSpan(d.JobID, d.Attempt, i), Parent: parent,
		Start: started, End: time.Now(),
		Attrs: []attribute.KeyValue{attribute.String("hodei.run.id", d.RunID), attribute.String("hodei.job.id", d.JobID),
			attribute.Int("hodei.attempt", d.Attempt), attribute.Int("hodei.step", i), attribute.Int("hodei.exit_code", code)}}
	switch {
	case err != nil:
		s.Err = masks.String(err.Error())
	case code != 0:
		s.Err = "exit " + strconv.Itoa(code)
	}
	tracing.Emit(s)
}

// lineEnds passes output on and remembers whether it last ended a line, so
// that the agent can close a step's unterminated last line before its own.
type lineEnds struct {
	w    io.Writer
	open bool // bytes were written since the last newline
}

func (l *lineEnds) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.open = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}

// close ends an open line.
func (l *lineEnds) close() {
	if l.open {
		_, _ = l.w.Write([]byte("\n"))
		l.open = false
	}
}
