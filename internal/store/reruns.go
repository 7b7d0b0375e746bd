package store

import "context"

// Rerun is what a run made again from an earlier one records: the run it
// re-runs and the jobs it carried over (`hodei rerun --failed`).
type Rerun struct {
	RunID string
	Of    string // the run re-run
	// FailedOnly: only the failed and cancelled jobs of Of and their
	// dependents run again; the others are Carried.
	FailedOnly bool
	Carried    []CarriedJob
}

// CarriedJob is a job of a re-run that did not run again: it ended as the
// attempt it points at (of the run that ran it, following re-runs back to
// it) ended.
type CarriedJob struct {
	JobID       string // the job of the re-run
	JobKey      string
	FromRun     string
	FromJob     string
	FromAttempt int
}

// Reruns is the part of the store that says which runs re-run others.
// InsertRerun is part of the run's insert (Tx).
type Reruns interface {
	// GetRerun returns what a re-run records (ErrNotFound for a run that
	// re-runs nothing).
	GetRerun(ctx context.Context, runID string) (Rerun, error)
}
