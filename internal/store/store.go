// Package store defines how Hodei keeps its state durably: runs, jobs, their
// attempts, log chunks and workers. Implementations live in sub-packages
// (sqlite for the embedded default; postgres for several replicas) and must
// pass the shared conformance suite in storetest.
//
// Concurrency contract: a Store is safe for concurrent use. Reads may run in
// parallel with a write transaction and see the last committed state. Write
// transactions (Update) are serialised by the implementation; the orchestrator
// funnels all its writes through one goroutine and batches many changes into
// one Update so that commits are few and large.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
)

// ErrNotFound is returned when a run, job or worker does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when an insert collides with an existing record.
var ErrConflict = errors.New("conflict")

// ErrUnavailable is wrapped by an error that says the database cannot be
// reached now: restarting, failing over, its connection lost or refused. The
// operation did not happen, or did not happen for sure (a commit whose answer
// was lost); it is worth trying again shortly, and the API answers it with a
// 503 and Retry-After rather than a 500.
var ErrUnavailable = errors.New("store unavailable")

// Run is one execution of a pipeline.
type Run struct {
	ID         string
	Pipeline   string // the pipeline's name
	File       string // file name the pipeline came from
	Tenant     string
	Priority   int
	State      state.RunState
	Source     []byte // the YAML as submitted
	CreatedAt  time.Time
	StartedAt  time.Time // zero until the first job starts
	FinishedAt time.Time // zero until final
	Error      string
	// ConcurrencyGroup and ConcurrencyLimit hold the pipeline's
	// concurrency group ("" and 0 for none).
	ConcurrencyGroup string
	ConcurrencyLimit int
	// Inputs are the values of the pipeline's inputs the run was made
	// with (given or defaulted).
	Inputs map[string]string
	// Includes are the files the pipeline includes, by name, as they
	// were read when the run was made: a re-run reads the same.
	Includes map[string][]byte
}

// Job is one job of a run (after matrix expansion).
type Job struct {
	ID          string // unique across runs; safe in a NATS subject token
	RunID       string
	Key         string // unique within the run, as written by users
	Name        string
	Index       int // position in the run's topological order
	State       state.JobState
	Spec        []byte // JSON of pipeline.JobSpec
	Attempt     int    // current attempt number, 0 before the first
	MaxAttempts int    // 1 + retry
	WorkerID    string // worker of the current attempt
	QueuedAt    time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
	ExitCode    int
	Error       string
	// InfraLost counts the attempts lost to infrastructure (a worker lost
	// or restarted, a server restart): they use the job's infra_retries,
	// not its retry budget.
	InfraLost int
	// Outputs are the job's outputs, set when it succeeded (every
	// declared name, "" when its steps wrote none).
	Outputs map[string]string
	// Approval: a job whose environment asks for one waits in
	// waiting_approval until ApprovalDeadline (zero: no timeout); the
	// decision ("approved", "rejected", "timed_out"), who made it, when
	// and why are kept with the job.
	ApprovalDeadline time.Time
	Decision         string
	DecidedBy        string
	DecidedAt        time.Time
	DecisionComment  string
}

// Decisions on a job that waits for an approval (Job.Decision).
const (
	DecisionApproved = "approved"
	DecisionRejected = "rejected"
	DecisionTimedOut = "timed_out"
)

// Attempt is one try of a job on one worker.
type Attempt struct {
	JobID      string
	N          int // 1-based
	WorkerID   string
	State      state.AttemptState
	AssignedAt time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int
	Error      string
	// Reason says why the attempt ended: "succeeded", "exit N",
	// "canceled", "lost: worker restarted"... (empty while it runs).
	Reason string
	// PeakMemory (bytes) and CPUTime are what the attempt used, measured
	// in its cgroup; zero when the worker could not measure them.
	PeakMemory int64
	CPUTime    time.Duration
}

// LogChunk is a batch of output of one attempt. Seq starts at 1 and grows by
// one per chunk within an attempt; (JobID, Attempt, Seq) identifies a chunk, so
// storing the same chunk twice keeps one copy.
type LogChunk struct {
	JobID   string
	Attempt int
	Seq     int64
	Step    int // 0-based step index; -1 for messages of the agent itself
	Data    []byte
	At      time.Time
}

// Worker is what the server last knew of a worker.
type Worker struct {
	ID          string
	Pool        string
	State       state.WorkerState
	Labels      []string
	CPUMilli    int64
	MemoryBytes int64
	GPU         int
	BootID      string // changes when the agent restarts
	FirstSeen   time.Time
	LastSeen    time.Time
}

// RunFilter selects runs for ListRuns. Zero fields do not filter.
type RunFilter struct {
	State  state.RunState
	Tenant string
	Before string // runs with an ID lower than this (pagination; IDs sort by time)
	Limit  int    // default 50, at most 1000
}

// Store is the durable state of Hodei.
type Store interface {
	// Update runs fn in one write transaction: all of fn's changes commit
	// together or none does. fn must not keep tx after it returns.
	Update(ctx context.Context, fn func(tx Tx) error) error

	GetRun(ctx context.Context, id string) (Run, error)
	ListRuns(ctx context.Context, f RunFilter) ([]Run, error)
	// ListJobs returns the jobs of a run ordered by Index.
	ListJobs(ctx context.Context, runID string) ([]Job, error)
	GetJob(ctx context.Context, id string) (Job, error)
	// ListAttempts returns the attempts of a job ordered by N.
	ListAttempts(ctx context.Context, jobID string) ([]Attempt, error)
	// ReadLogs returns up to limit chunks of a job after the position
	// (attempt, seq), ordered by attempt then seq. Start with (0, 0).
	ReadLogs(ctx context.Context, jobID string, afterAttempt int, afterSeq int64, limit int) ([]LogChunk, error)
	// ActiveRuns returns every run that is not final, with all their jobs:
	// what the orchestrator reloads after a restart.
	ActiveRuns(ctx context.Context) ([]Run, []Job, error)
	// CountRuns returns the number of runs per state.
	CountRuns(ctx context.Context) (map[state.RunState]int, error)
	ListWorkers(ctx context.Context) ([]Worker, error)
	// RecentDurations returns how long the most recently finished
	// succeeded jobs ran (at most limit), oldest first: the history the
	// scheduler's predictor starts from after a restart.
	RecentDurations(ctx context.Context, limit int) ([]Duration, error)
	// RunByKey returns the id of the run that the submission with an
	// idempotency key made in a tenant (ErrNotFound if none).
	RunByKey(ctx context.Context, tenant, key string) (string, error)
	// Repos: the repositories runs come from (repos.go).
	Repos
	Firings
	Reruns
	Artifacts
	Close() error
}

// Duration is how long one succeeded job ran.
type Duration struct {
	Pipeline   string // the run's pipeline name
	JobKey     string
	Ran        time.Duration
	FinishedAt time.Time
}

// Tx is a write transaction. Updates replace the whole record by ID.
type Tx interface {
	InsertRun(r Run) error // ErrConflict if the ID exists
	UpdateRun(r Run) error // ErrNotFound if missing
	InsertJobs(jobs []Job) error
	UpdateJob(j Job) error
	// UpsertAttempt inserts or replaces attempt (JobID, N).
	UpsertAttempt(a Attempt) error
	// AppendLogs stores chunks, ignoring those already stored.
	AppendLogs(chunks []LogChunk) error
	UpsertWorker(w Worker) error
	// InsertTrigger records what started a run from a repository, with
	// the run (ErrConflict if the run has one already).
	InsertTrigger(t Trigger) error
	// SetFiringRun records f.RunID on the claimed firing with f's key,
	// with the run, so that a firing whose run was committed is never
	// tried again (no error if the firing is not recorded).
	SetFiringRun(f Firing) error
	// InsertRerun records, with its run and jobs, what a re-run re-runs
	// and carries over (ErrConflict if the run has a record already).
	InsertRerun(r Rerun) error
	// InsertRunKey records the idempotency key of a run inserted in the
	// same transaction (ErrConflict if the tenant has the key already).
	InsertRunKey(k RunKey) error
}

// Kinds of stored objects (Artifact.Kind).
const (
	KindArtifact = "artifact"
	KindCache    = "cache"
)

// Artifact is the record of one object of the blob store: a job's artifact
// or a cache entry. The record is written once the object is complete, so
// that a record always names a whole object.
type Artifact struct {
	// ID is unique per (job, attempt, name) for artifacts and per
	// (tenant, scope, key) for caches: a second record is ErrConflict.
	ID      string
	Kind    string // KindArtifact or KindCache
	Tenant  string
	Scope   string // caches: the repository and branch ("" when none)
	RunID   string
	JobID   string
	JobKey  string
	Attempt int
	Name    string // the artifact's name, or the cache key
	Object  string // the key of the object in the blob store
	Size    int64  // bytes stored
	// Files is the JSON list of the files in the object with their sizes
	// and sha256.
	Files     []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ArtifactFilter selects artifacts for ListArtifacts. Zero fields do not
// filter.
type ArtifactFilter struct {
	Kind       string
	Tenant     string
	Scope      string
	RunID      string
	NamePrefix string
	// ExpiredAt selects the records whose ExpiresAt is at or before it.
	ExpiredAt time.Time
	Limit     int // default 1000
}

// Artifacts is the index of the blob store's objects. Its writes do not go
// through Update: they touch no state the orchestrator owns.
type Artifacts interface {
	// PutArtifact records an object; ErrConflict if the ID exists.
	PutArtifact(ctx context.Context, a Artifact) error
	// ListArtifacts returns the records that match f, newest first.
	ListArtifacts(ctx context.Context, f ArtifactFilter) ([]Artifact, error)
	// DeleteArtifact removes a record (no error if it is gone).
	DeleteArtifact(ctx context.Context, id string) error
	// ArtifactBytes is the size of every object of a tenant.
	ArtifactBytes(ctx context.Context, tenant string) (int64, error)
}
