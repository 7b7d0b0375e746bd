package agent

import (
	"io"
	"time"

	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/steplog"
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
