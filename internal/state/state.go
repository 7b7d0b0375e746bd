// Package state holds the run, job and worker state machines: the states, the
// legal transitions between them, and nothing else. Every change of state in
// Hodei goes through Run.To, Job.To or Worker.To so that an illegal transition
// is rejected in one place.
package state

import "fmt"

// Run states.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCanceled  = "canceled"
)

// Job states.
const (
	JobPending   = "pending" // waiting on its needs
	JobQueued    = "queued"  // ready, waiting for a worker
	JobAssigned  = "assigned"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
	JobSkipped   = "skipped"
)

// AttemptLost is the state of an attempt given up because of
// infrastructure (its worker lost or restarted, the server restarted): it is
// an attempt's state only, never a job's. Attempts otherwise take the job
// states assigned, running, succeeded, failed and canceled.
const AttemptLost = "lost"

// Worker states.
const (
	WorkerProvisioning = "provisioning"
	WorkerIdle         = "idle"
	WorkerBusy         = "busy"
	WorkerDraining     = "draining"
	WorkerLost         = "lost" // heartbeats stopped; may come back
	WorkerGone         = "gone"
)

// ErrIllegal is wrapped by every rejected transition.
var ErrIllegal = fmt.Errorf("illegal transition")

type machine map[string][]string

func (m machine) allowed(from, to string) bool {
	for _, s := range m[from] {
		if s == to {
			return true
		}
	}
	return false
}

var runMachine = machine{
	RunQueued:  {RunRunning, RunSucceeded, RunFailed, RunCanceled},
	RunRunning: {RunSucceeded, RunFailed, RunCanceled},
}

// A job goes back to queued when an attempt fails or is lost and the job has
// retries left; that starts a new attempt.
var jobMachine = machine{
	JobPending:  {JobQueued, JobSkipped, JobCanceled},
	JobQueued:   {JobAssigned, JobCanceled},
	JobAssigned: {JobRunning, JobQueued, JobSucceeded, JobFailed, JobCanceled},
	JobRunning:  {JobSucceeded, JobFailed, JobCanceled, JobQueued},
}

var workerMachine = machine{
	WorkerProvisioning: {WorkerIdle, WorkerBusy, WorkerLost, WorkerGone},
	WorkerIdle:         {WorkerBusy, WorkerDraining, WorkerLost, WorkerGone},
	WorkerBusy:         {WorkerIdle, WorkerDraining, WorkerLost, WorkerGone},
	WorkerDraining:     {WorkerIdle, WorkerGone, WorkerLost},
	WorkerLost:         {WorkerIdle, WorkerBusy, WorkerGone},
}

// RunStates lists every run state; JobStates and WorkerStates likewise.
var (
	RunStates    = []string{RunQueued, RunRunning, RunSucceeded, RunFailed, RunCanceled}
	JobStates    = []string{JobPending, JobQueued, JobAssigned, JobRunning, JobSucceeded, JobFailed, JobCanceled, JobSkipped}
	WorkerStates = []string{WorkerProvisioning, WorkerIdle, WorkerBusy, WorkerDraining, WorkerLost, WorkerGone}
)

func check(kind string, m machine, from, to string) error {
	if !m.allowed(from, to) {
		return fmt.Errorf("%s %s -> %s: %w", kind, from, to, ErrIllegal)
	}
	return nil
}

// RunTo returns nil when a run may move from one state to another.
func RunTo(from, to string) error { return check("run", runMachine, from, to) }

// JobTo returns nil when a job may move from one state to another.
func JobTo(from, to string) error { return check("job", jobMachine, from, to) }

// WorkerTo returns nil when a worker may move from one state to another.
func WorkerTo(from, to string) error { return check("worker", workerMachine, from, to) }

// RunFinal reports whether a run state is final.
func RunFinal(s string) bool { return len(runMachine[s]) == 0 && known(RunStates, s) }

// JobFinal reports whether a job state is final.
func JobFinal(s string) bool { return len(jobMachine[s]) == 0 && known(JobStates, s) }

// JobActive reports whether a job holds a worker (assigned or running).
func JobActive(s string) bool { return s == JobAssigned || s == JobRunning }

func known(all []string, s string) bool {
	for _, x := range all {
		if x == s {
			return true
		}
	}
	return false
}
