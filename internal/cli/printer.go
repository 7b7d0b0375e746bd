package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/state"
)

// Printer prints a followed run as a person reads it: each job's output
// line by line, prefixed by the job's key, and a short line when a job
// starts, is retried or ends. It is not safe for concurrent use.
type Printer struct {
	w       io.Writer
	prefix  func(string) string
	lines   *Lines
	started map[string]time.Time // job id -> start of the current attempt
}

// NewPrinter prints to w, prefixing lines with prefix (KeyPrefix if nil;
// NoPrefix for the output of a single job).
func NewPrinter(w io.Writer, prefix func(string) string) *Printer {
	if prefix == nil {
		prefix = KeyPrefix
	}
	return &Printer{w: w, prefix: prefix, lines: NewLines(w, prefix), started: map[string]time.Time{}}
}

// Event prints one event of a followed run.
func (p *Printer) Event(ev wire.Event) error {
	switch ev.Type {
	case wire.EventLog:
		return p.lines.Write(ev.Log.JobKey, []byte(ev.Log.Data))
	case wire.EventJob:
		return p.job(ev.Job)
	case wire.EventEnd:
		return p.lines.FlushAll()
	}
	return nil
}

// Flush writes every partial line, and what a TerminalWriter under the
// printer holds back.
func (p *Printer) Flush() error {
	if err := p.lines.FlushAll(); err != nil {
		return err
	}
	if t, ok := p.w.(*TerminalWriter); ok {
		return t.Flush()
	}
	return nil
}

func (p *Printer) job(j *wire.JobEvent) error {
	var line string
	switch j.State {
	case state.JobRunning:
		start := j.At
		if j.StartedAt != nil {
			start = *j.StartedAt
		}
		p.started[j.JobID] = start
		if j.Attempt > 1 {
			line = fmt.Sprintf("▶ started (attempt %d)", j.Attempt)
		} else {
			line = "▶ started"
		}
	case state.JobQueued:
		if j.Attempt == 0 {
			return nil
		}
		// Back in the queue after a failed attempt (a retry), or one lost
		// to infrastructure (its error says "lost: ...").
		if strings.HasPrefix(j.Error, "lost: ") {
			line = fmt.Sprintf("↻ attempt %d %s; running it again", j.Attempt, j.Error)
			break
		}
		line = fmt.Sprintf("↻ attempt %d failed", j.Attempt)
		if j.Error != "" {
			line += ": " + Text(j.Error)
		}
		line += "; retrying"
	case state.JobWaitingApproval:
		line = "⏸ waiting for an approval (hodei approve RUN " + j.JobKey + ")"
	case state.JobSucceeded, state.JobFailed, state.JobCanceled, state.JobSkipped:
		d := time.Duration(-1)
		start, ok := p.started[j.JobID]
		if j.StartedAt != nil {
			start, ok = *j.StartedAt, true
		}
		if ok && !j.At.IsZero() && !j.At.Before(start) {
			d = j.At.Sub(start)
		}
		line = JobStateLine(j.State, d, j.Error)
	default:
		return nil
	}
	if err := p.lines.Flush(j.JobKey); err != nil {
		return err
	}
	_, err := io.WriteString(p.w, p.prefix(j.JobKey)+line+"\n")
	return err
}

// JobStateLine describes a job's final state: "✓ succeeded in 1.2s",
// "✗ failed: step 1: exit status 1 (0.3s)", "✗ canceled", "- skipped". A
// negative duration is unknown.
func JobStateLine(st state.JobState, d time.Duration, errMsg string) string {
	switch st {
	case state.JobSucceeded:
		if d < 0 {
			return "✓ succeeded"
		}
		return "✓ succeeded in " + FormatDuration(d)
	case state.JobFailed:
		s := "✗ failed"
		if errMsg != "" {
			s += ": " + Text(errMsg)
		}
		if d >= 0 {
			s += " (" + FormatDuration(d) + ")"
		}
		return s
	case state.JobCanceled:
		return "✗ canceled"
	case state.JobSkipped:
		return "- skipped"
	}
	return string(st)
}
