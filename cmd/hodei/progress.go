package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/state"
)

// queuePoll is how often "submit --follow" asks the server why the run's
// jobs wait, while they do.
const queuePoll = time.Second

// clearLine returns a terminal's cursor to the start of the line and
// erases it.
const clearLine = "\r\x1b[K"

// queueProgress is the line "submit --follow" shows on stderr while the
// run's jobs wait in the queue: each queued job's reason and its detail
// (wire.Job's Reason and ReasonDetail), redrawn when they change, erased
// when output is printed and for good once a job starts. Its methods may
// be called from several goroutines.
type queueProgress struct {
	w     io.Writer
	width int // of the terminal: a longer line would wrap and not be erased

	mu      sync.Mutex
	shown   string // the line on the screen, "" for none
	stopped bool
}

func newQueueProgress(f *os.File) *queueProgress {
	width := 80
	if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		width = int(ws.Col)
	}
	return &queueProgress{w: f, width: width}
}

// queueLine says why the queued jobs of r wait: "" when none says.
func queueLine(r wire.Run) string {
	var parts []string
	for _, j := range r.Jobs {
		if j.State != state.JobQueued || j.Reason == "" {
			continue
		}
		why := j.Reason
		if j.ReasonDetail != "" {
			why = j.ReasonDetail + " (" + j.Reason + ")"
		}
		parts = append(parts, cli.Text(j.Key)+": "+cli.Text(why))
	}
	if len(parts) == 0 {
		return ""
	}
	return "waiting: " + strings.Join(parts, "; ")
}

// started reports whether a job of r has left the queue.
func started(r wire.Run) bool {
	for _, j := range r.Jobs {
		if j.State != state.JobQueued {
			return true
		}
	}
	return false
}

// show draws the line for r; it reports false once the progress has
// stopped (a job started).
func (p *queueProgress) show(r wire.Run) bool {
	if started(r) {
		p.stop()
		return false
	}
	line := queueLine(r)
	if r := []rune(line); len(r) > p.width-1 {
		line = string(r[:max(p.width-2, 0)]) + "…"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	if line != p.shown {
		fmt.Fprint(p.w, clearLine+line)
		p.shown = line
	}
	return true
}

// clear erases the line (before other output); the next show draws it
// again.
func (p *queueProgress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown != "" {
		fmt.Fprint(p.w, clearLine)
		p.shown = ""
	}
}

// stop erases the line for good.
func (p *queueProgress) stop() {
	p.clear()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// event is called with each event of the followed run, before it is
// printed.
func (p *queueProgress) event(ev wire.Event) {
	if ev.Type == wire.EventLog || ev.Type == wire.EventEnd || ev.Type == wire.EventJob && ev.Job.State != state.JobQueued {
		p.stop()
		return
	}
	p.clear()
}

// watch asks the server for the run every queuePoll and shows why its jobs
// wait, until one starts or ctx ends.
func (p *queueProgress) watch(ctx context.Context, c *client.Client, runID string) {
	t := time.NewTicker(queuePoll)
	defer t.Stop()
	for {
		if r, err := c.GetRun(ctx, runID); err == nil && !p.show(r) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
