// Package state holds the run, job, attempt and worker state machines: the
// states, each machine's own type, the legal transitions between them, and
// nothing else. Every change of state in Hodei is checked by RunTo, JobTo or
// WorkerTo so that an illegal transition is rejected in one place. The types
// keep one machine's state from being assigned to another's; their values are
// the strings stored and sent on the wire.
package state

import (
	"fmt"
	"slices"
)

// RunState is the state of a run.
type RunState string

// Run states.
const (
	RunQueued    RunState = "queued"
	RunRunning   RunState = "running"
	RunSucceeded RunState = "succeeded"
	RunFailed    RunState = "failed"
	RunCanceled  RunState = "canceled"
)

// JobState is the state of a job.
type JobState string

// Job states.
const (
	JobPending JobState = "pending" // waiting on its needs
	// JobWaitingApproval: ready, but its environment asks for an approval
	// before it is queued.
	JobWaitingApproval JobState = "waiting_approval"
	JobQueued          JobState = "queued" // ready, waiting for a worker
	JobAssigned        JobState = "assigned"
	JobRunning         JobState = "running"
	JobSucceeded       JobState = "succeeded"
	JobFailed          JobState = "failed"
	JobCanceled        JobState = "canceled"
	JobSkipped         JobState = "skipped"
)

// AttemptState is the state of one attempt of a job. An attempt takes the
// names of the job states it shares (assigned, running, succeeded, failed,
// canceled) and one of its own, AttemptLost.
type AttemptState string

// Attempt states.
const (
	AttemptAssigned  = AttemptState(JobAssigned)
	AttemptRunning   = AttemptState(JobRunning)
	AttemptSucceeded = AttemptState(JobSucceeded)
	AttemptFailed    = AttemptState(JobFailed)
	AttemptCanceled  = AttemptState(JobCanceled)
	// AttemptLost is the state of an attempt given up because of
	// infrastructure (its worker lost or restarted, the server restarted):
	// it is an attempt's state only, never a job's.
	AttemptLost AttemptState = "lost"
)

// WorkerState is the state of a worker as the orchestrator records it.
type WorkerState string

// Worker states.
const (
	WorkerProvisioning WorkerState = "provisioning"
	WorkerIdle         WorkerState = "idle"
	WorkerBusy         WorkerState = "busy"
	WorkerDraining     WorkerState = "draining"
	WorkerLost         WorkerState = "lost" // heartbeats stopped; may come back
	WorkerGone         WorkerState = "gone"
)

// ErrIllegal is wrapped by every rejected transition.
var ErrIllegal = fmt.Errorf("illegal transition")

type machine[S ~string] map[S][]S

var runMachine = machine[RunState]{
	RunQueued:  {RunRunning, RunSucceeded, RunFailed, RunCanceled},
	RunRunning: {RunSucceeded, RunFailed, RunCanceled},
}

// A job goes back to queued when an attempt fails or is lost and the job has
// retries left; that starts a new attempt. A queued job fails without an
// attempt when no worker and no pool could ever run it; a pending one
// when its expressions cannot be evaluated once its needs have ended. A job
// whose environment needs an approval waits for it: approved, it is queued;
// rejected or timed out, it fails; its run canceled, it is canceled.
var jobMachine = machine[JobState]{
	JobPending:         {JobQueued, JobWaitingApproval, JobSkipped, JobFailed, JobCanceled},
	JobWaitingApproval: {JobQueued, JobFailed, JobCanceled},
	JobQueued:          {JobAssigned, JobFailed, JobCanceled},
	JobAssigned:        {JobRunning, JobQueued, JobSucceeded, JobFailed, JobCanceled},
	JobRunning:         {JobSucceeded, JobFailed, JobCanceled, JobQueued},
}

var workerMachine = machine[WorkerState]{
	WorkerProvisioning: {WorkerIdle, WorkerBusy, WorkerLost, WorkerGone},
	WorkerIdle:         {WorkerBusy, WorkerDraining, WorkerLost, WorkerGone},
	WorkerBusy:         {WorkerIdle, WorkerDraining, WorkerLost, WorkerGone},
	WorkerDraining:     {WorkerIdle, WorkerGone, WorkerLost},
	WorkerLost:         {WorkerIdle, WorkerBusy, WorkerGone},
}

// RunStates lists every run state; JobStates, AttemptStates and
// WorkerStates likewise.
var (
	RunStates     = []RunState{RunQueued, RunRunning, RunSucceeded, RunFailed, RunCanceled}
	JobStates     = []JobState{JobPending, JobWaitingApproval, JobQueued, JobAssigned, JobRunning, JobSucceeded, JobFailed, JobCanceled, JobSkipped}
	AttemptStates = []AttemptState{AttemptAssigned, AttemptRunning, AttemptSucceeded, AttemptFailed, AttemptCanceled, AttemptLost}
	WorkerStates  = []WorkerState{WorkerProvisioning, WorkerIdle, WorkerBusy, WorkerDraining, WorkerLost, WorkerGone}
)

func check[S ~string](kind string, m machine[S], from, to S) error {
	if !slices.Contains(m[from], to) {
		return fmt.Errorf("%s %s -> %s: %w", kind, from, to, ErrIllegal)
	}
	return nil
}

// RunTo returns nil when a run may move from one state to another.
func RunTo(from, to RunState) error { return check("run", runMachine, from, to) }

// JobTo returns nil when a job may move from one state to another.
func JobTo(from, to JobState) error { return check("job", jobMachine, from, to) }

// WorkerTo returns nil when a worker may move from one state to another.
func WorkerTo(from, to WorkerState) error { return check("worker", workerMachine, from, to) }

// Valid reports whether s is a run state.
func (s RunState) Valid() bool { return slices.Contains(RunStates, s) }

// Final reports whether s is a final run state.
func (s RunState) Final() bool { return len(runMachine[s]) == 0 && s.Valid() }

// Valid reports whether s is a job state.
func (s JobState) Valid() bool { return slices.Contains(JobStates, s) }

// Final reports whether s is a final job state.
func (s JobState) Final() bool { return len(jobMachine[s]) == 0 && s.Valid() }

// Active reports whether a job in state s holds a worker (assigned or
// running).
func (s JobState) Active() bool { return s == JobAssigned || s == JobRunning }

// Valid reports whether s is an attempt state.
func (s AttemptState) Valid() bool { return slices.Contains(AttemptStates, s) }

// Final reports whether s is a final attempt state.
func (s AttemptState) Final() bool {
	return s.Valid() && s != AttemptAssigned && s != AttemptRunning
}

// Valid reports whether s is a worker state.
func (s WorkerState) Valid() bool { return slices.Contains(WorkerStates, s) }

// Final reports whether s is a final worker state.
func (s WorkerState) Final() bool { return len(workerMachine[s]) == 0 && s.Valid() }

// Serving reports whether a worker in state s serves jobs: idle or busy.
func (s WorkerState) Serving() bool { return s == WorkerIdle || s == WorkerBusy }

// Names returns the names of states, in their order: for messages and
// metric labels.
func Names[S ~string](states []S) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}
