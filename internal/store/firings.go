package store

import (
	"context"
	"time"
)

// Kinds of schedule firings (Firing.Kind).
const (
	// FiringSeen marks when the server first saw a schedule: the start
	// from which its missed firings are counted. It makes no run.
	FiringSeen = "seen"
	// FiringRun is a firing that makes a run.
	FiringRun = "run"
	// FiringSkipped is a firing missed while no server ran, not run
	// (`missed: skip`).
	FiringSkipped = "skipped"
)

// Firing is one firing of a pipeline's schedule (`on: schedule`), keyed
// by (Tenant, Repo, File, Schedule, At): recorded before its run is made,
// so that a second try makes nothing.
type Firing struct {
	Tenant   string
	Repo     string
	File     string // the pipeline file's path in the repository
	Schedule string // pipeline.Schedule.Key: the cron, branch and timezone
	At       time.Time
	Kind     string // FiringSeen, FiringRun, FiringSkipped
	// RunID is the run the firing made, recorded in the run's own
	// transaction ("" until then).
	RunID string
	// Error says why no run was made ("" when none was tried or it was
	// made).
	Error      string
	RecordedAt time.Time
}

// Firings is the part of the store that keeps the firings of schedules.
// Its writes do not go through Update (the scheduler of the schedules
// makes them), except SetFiringRun, which is part of a run's insert.
type Firings interface {
	// ClaimFiring records f; false (and nothing recorded) if a firing
	// with its key exists.
	ClaimFiring(ctx context.Context, f Firing) (bool, error)
	// LastFiring returns the latest firing of a schedule (ErrNotFound
	// if it has none).
	LastFiring(ctx context.Context, tenant, repo, file, schedule string) (Firing, error)
	// PendingFirings returns the firings of kind FiringRun with neither
	// a run nor an error: claimed, and their run not committed.
	PendingFirings(ctx context.Context) ([]Firing, error)
	// SetFiringError records why a claimed firing made no run.
	SetFiringError(ctx context.Context, f Firing, msg string) error
	// ListFirings returns the firings of a repository, oldest first.
	ListFirings(ctx context.Context, tenant, repo string) ([]Firing, error)
}
