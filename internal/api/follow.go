package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// FollowOptions say what Follow follows.
type FollowOptions struct {
	RunID string
	// Job limits log and job events to one job, named by its id or its key;
	// empty follows every job of the run.
	Job string
	// Sub is a subscription taken earlier, before the run existed (for all
	// runs or for this one). Follow reads it first, ignoring notes of other
	// runs, and closes it. Nil subscribes to the run.
	Sub *hub.Sub
	// Buffer is the size of the subscriptions Follow takes (1024 by default).
	Buffer int
	// Heartbeat, when positive, emits a ping event at that period.
	Heartbeat time.Duration
	// Resync, when positive, reads the store again at that period (what
	// was already sent is not sent again): for hubs fed from another
	// process, whose notes may be lost on the way.
	Resync time.Duration
	// OnLag is called each time the hub drops the follower for falling
	// behind; Follow then catches up from the store by itself.
	OnLag func()
}

const (
	defaultFollowBuffer = 1024
	// logPage is the chunks read from the store at a time: at most 4 MiB
	// with chunks of 64 KiB, whatever the length of the log or its lines.
	logPage = 64
)

// Follow streams what happens to a run to emit: first what the store holds
// (each job's output so far, the state of every job and of the run), then the
// changes the hub announces, until the run is final. It ends with an end
// event carrying the run and its jobs and returns nil; or returns the error
// of emit, of the store, or ctx's.
//
// Nothing is lost and nothing is sent twice: the hub subscription is taken
// before the store is read, and a log chunk is sent only if it comes after
// the last (attempt, seq) sent for its job; a job's state only if it moves the
// job forward. When the hub drops the follower, Follow subscribes again and
// catches up from the store.
func Follow(ctx context.Context, st store.Store, h *hub.Hub, o FollowOptions, emit func(wire.Event) error) error {
	if o.Buffer <= 0 {
		o.Buffer = defaultFollowBuffer
	}
	sub := o.Sub
	if sub == nil {
		sub = h.Subscribe(o.RunID, o.Buffer)
	}
	defer func() { sub.Close() }()

	f := &follower{
		st:     st,
		runID:  o.RunID,
		emit:   emit,
		logPos: map[string]logPos{},
		jobPos: map[string]jobMark{},
		runPos: -1,
	}
	if o.Job != "" {
		jobs, err := st.ListJobs(ctx, o.RunID)
		if err != nil {
			return err
		}
		j, ok := findJob(jobs, o.Job)
		if !ok {
			return fmt.Errorf("run %s has no job %q: %w", o.RunID, o.Job, store.ErrNotFound)
		}
		f.only = j.ID
	}
	var tick <-chan time.Time
	if o.Heartbeat > 0 {
		t := time.NewTicker(o.Heartbeat)
		defer t.Stop()
		tick = t.C
	}
	var resync <-chan time.Time
	if o.Resync > 0 {
		t := time.NewTicker(o.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		done, err := f.catchUp(ctx)
		if err != nil || done {
			return err
		}
	live:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick:
				if err := emit(wire.Event{Type: wire.EventPing}); err != nil {
					return err
				}
			case <-resync:
				break live // catch up from the store, same subscription
			case n, ok := <-sub.C:
				if !ok {
					if !sub.Lagged() {
						return errors.New("follow: hub subscription closed")
					}
					if o.OnLag != nil {
						o.OnLag()
					}
					sub = h.Subscribe(o.RunID, o.Buffer)
					break live
				}
				if n.RunID != o.RunID {
					continue
				}
				done, err := f.note(ctx, n)
				if err != nil || done {
					return err
				}
			}
		}
	}
}

// findJob finds a job by id, or else by key.
func findJob(jobs []store.Job, idOrKey string) (store.Job, bool) {
	for _, j := range jobs {
		if j.ID == idOrKey {
			return j, true
		}
	}
	for _, j := range jobs {
		if j.Key == idOrKey {
			return j, true
		}
	}
	return store.Job{}, false
}

type logPos struct {
	attempt int
	seq     int64
}

func (p logPos) before(attempt int, seq int64) bool {
	return p.attempt < attempt || p.attempt == attempt && p.seq < seq
}

// jobMark is the last state sent for a job, as a position in the job's
// life: (attempt, rank).
type jobMark struct {
	attempt int
	rank    int
	state   state.JobState
}

// jobRank places a state in a job's life. Within an attempt a job goes
// assigned, running, then either a final state or back to queued for a retry
// (which keeps the attempt number of the attempt that ended); a final state
// ends the life.
func jobRank(s state.JobState, attempt int) int {
	switch s {
	case state.JobPending:
		return 0
	case state.JobQueued:
		if attempt == 0 {
			return 1
		}
		return 5
	case state.JobAssigned:
		return 2
	case state.JobRunning:
		return 3
	default:
		return 6
	}
}

func runRank(s state.RunState) int {
	switch s {
	case state.RunQueued:
		return 0
	case state.RunRunning:
		return 1
	default:
		return 2
	}
}

type follower struct {
	st     store.Store
	runID  string
	only   string // job id when following one job
	emit   func(wire.Event) error
	logPos map[string]logPos
	jobPos map[string]jobMark
	runPos int
}

// advance records a job state if it moves the job forward and returns the
// attempt to report with it, and whether to send it.
//
// Hub notes of the assigned state carry the attempt number from before the
// assignment, so an assigned note counts as fresh exactly when the last state
// sent is queued, and belongs to the attempt after that queued state's.
func (f *follower) advance(jobID string, s state.JobState, attempt int, fromStore bool) (int, bool) {
	last, seen := f.jobPos[jobID]
	if s == state.JobAssigned && !fromStore {
		if seen && last.state != state.JobQueued {
			return 0, false
		}
		if seen {
			attempt = last.attempt + 1
		}
		f.jobPos[jobID] = jobMark{attempt: attempt, rank: jobRank(s, attempt), state: s}
		return attempt, true
	}
	m := jobMark{attempt: attempt, rank: jobRank(s, attempt), state: s}
	if seen && (m.attempt < last.attempt || m.attempt == last.attempt && m.rank <= last.rank) {
		return 0, false
	}
	f.jobPos[jobID] = m
	return attempt, true
}

func (f *follower) sendLog(jobID, jobKey string, c *store.LogChunk) error {
	p := f.logPos[jobID]
	if !p.before(c.Attempt, c.Seq) {
		return nil
	}
	f.logPos[jobID] = logPos{attempt: c.Attempt, seq: c.Seq}
	return f.emit(wire.Event{Type: wire.EventLog, Log: &wire.LogEvent{
		JobID: jobID, JobKey: jobKey, Attempt: c.Attempt, Step: c.Step, Seq: c.Seq, Data: string(c.Data), At: c.At,
	}})
}

func (f *follower) readLogs(ctx context.Context, j store.Job) error {
	for {
		p := f.logPos[j.ID]
		chunks, err := f.st.ReadLogs(ctx, j.ID, p.attempt, p.seq, logPage)
		if err != nil {
			return err
		}
		for i := range chunks {
			if err := f.sendLog(j.ID, j.Key, &chunks[i]); err != nil {
				return err
			}
		}
		if len(chunks) < logPage {
			return nil
		}
	}
}

// catchUp sends what the store holds that was not sent yet. The run is read
// first, then its jobs, then their logs: a job's output read after its state
// holds everything the job wrote up to that state (a worker's output is
// stored no later than the job's final state), so a final run's output is
// complete. It reports whether the run is final (and the end sent).
func (f *follower) catchUp(ctx context.Context) (bool, error) {
	run, jobs, err := f.read(ctx)
	if err != nil {
		return false, err
	}
	for _, j := range jobs {
		if f.only != "" && j.ID != f.only {
			continue
		}
		if err := f.readLogs(ctx, j); err != nil {
			return false, err
		}
		if attempt, ok := f.advance(j.ID, j.State, j.Attempt, true); ok {
			at := j.QueuedAt
			switch {
			case j.State.Final():
				at = j.FinishedAt
			case j.State.Active() && !j.StartedAt.IsZero():
				at = j.StartedAt
			}
			if at.IsZero() {
				at = run.CreatedAt
			}
			ev := &wire.JobEvent{JobID: j.ID, JobKey: j.Key, State: j.State, Attempt: attempt, Error: j.Error,
				At: at.UTC(), StartedAt: timePtr(j.StartedAt)}
			if err := f.emit(wire.Event{Type: wire.EventJob, Job: ev}); err != nil {
				return false, err
			}
		}
	}
	if err := f.runState(run.ID, run.State, run.Error, run.CreatedAt); err != nil {
		return false, err
	}
	if !run.State.Final() {
		return false, nil
	}
	return true, f.end(run, jobs)
}

// read reads the run, then its jobs (in that order: see catchUp).
func (f *follower) read(ctx context.Context) (store.Run, []store.Job, error) {
	run, err := f.st.GetRun(ctx, f.runID)
	if err != nil {
		return store.Run{}, nil, err
	}
	jobs, err := f.st.ListJobs(ctx, f.runID)
	if err != nil {
		return store.Run{}, nil, err
	}
	return run, jobs, nil
}

// end sends the end of the final run, with its jobs.
func (f *follower) end(run store.Run, jobs []store.Job) error {
	end := RunJSON(run, jobs, time.Now())
	return f.emit(wire.Event{Type: wire.EventEnd, End: &end})
}

func (f *follower) runState(id string, s state.RunState, errMsg string, at time.Time) error {
	if r := runRank(s); r > f.runPos {
		f.runPos = r
		return f.emit(wire.Event{Type: wire.EventRun, Run: &wire.RunEvent{ID: id, State: s, Error: errMsg, At: at.UTC()}})
	}
	return nil
}

// note sends what a hub note brings; it reports whether the run ended.
func (f *follower) note(ctx context.Context, n hub.Note) (bool, error) {
	switch n.Kind {
	case hub.KindLog:
		if f.only != "" && n.JobID != f.only {
			return false, nil
		}
		if n.Chunk == nil {
			// A note that output was stored, without it (from the
			// leader of several servers): read it from the store.
			return false, f.readLogs(ctx, store.Job{ID: n.JobID, Key: n.JobKey})
		}
		return false, f.sendLog(n.JobID, n.JobKey, n.Chunk)
	case hub.KindJob:
		if f.only != "" && n.JobID != f.only {
			return false, nil
		}
		attempt, ok := f.advance(n.JobID, n.JobState, n.Attempt, false)
		if !ok {
			return false, nil
		}
		return false, f.emit(wire.Event{Type: wire.EventJob, Job: &wire.JobEvent{
			JobID: n.JobID, JobKey: n.JobKey, State: n.JobState, Attempt: attempt, Error: n.Error, At: n.At.UTC(),
		}})
	case hub.KindRun:
		if err := f.runState(n.RunID, n.RunState, n.Error, n.At); err != nil {
			return false, err
		}
		if !n.RunState.Final() {
			return false, nil
		}
		// The run's end is committed before it is announced, and so is
		// every job's output before its job's end.
		run, jobs, err := f.read(ctx)
		if err != nil {
			return false, err
		}
		return true, f.end(run, jobs)
	}
	return false, nil
}
