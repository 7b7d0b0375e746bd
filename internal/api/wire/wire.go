// Package wire holds the JSON shapes of Hodei's REST API, shared by the
// server (package api) and its client (package client).
package wire

import (
	"time"

	"github.com/hodei-ci/hodei/internal/state"
)

// Run is one run of a pipeline.
type Run struct {
	ID         string         `json:"id"`
	Pipeline   string         `json:"pipeline"`
	File       string         `json:"file"`
	Tenant     string         `json:"tenant"`
	Priority   int            `json:"priority"`
	State      state.RunState `json:"state"`
	Error      string         `json:"error,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  *time.Time     `json:"started_at,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	// DurationSeconds runs from creation to the end (or to now while the
	// run is not final).
	DurationSeconds float64 `json:"duration_seconds"`
	// Inputs are the values of the pipeline's inputs the run was made with.
	Inputs map[string]string `json:"inputs,omitempty"`
	// Jobs are set when one run is asked for, and in the end event.
	Jobs []Job `json:"jobs,omitempty"`
	// Trigger says what started a run from a repository (repos.go);
	// Statuses, for one run, the commit statuses posted for it.
	Trigger  *Trigger       `json:"trigger,omitempty"`
	Statuses []StatusReport `json:"statuses,omitempty"`
	// RerunOf is the run this one runs again (hodei rerun); FailedOnly
	// says only its failed and cancelled jobs and their dependents did.
	RerunOf    string `json:"rerun_of,omitempty"`
	FailedOnly bool   `json:"failed_only,omitempty"`
}

// RerunRequest is the body of POST /api/v1/runs/{id}/rerun (optional).
type RerunRequest struct {
	// FailedOnly runs again only the jobs that failed or were cancelled
	// and the jobs that need them; the others are carried over.
	FailedOnly bool `json:"failed_only"`
}

// Carried says which attempt a job of a re-run was carried over from.
type Carried struct {
	RunID   string `json:"run_id"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
}

// Duration returns DurationSeconds as a time.Duration.
func (r Run) Duration() time.Duration { return seconds(r.DurationSeconds) }

// Job is one job of a run.
type Job struct {
	ID          string         `json:"id"`
	RunID       string         `json:"run_id"`
	Key         string         `json:"key"`
	Name        string         `json:"name"`
	Index       int            `json:"index"`
	Needs       []string       `json:"needs"`
	State       state.JobState `json:"state"`
	Attempt     int            `json:"attempt"`
	MaxAttempts int            `json:"max_attempts"`
	// InfraLost counts the attempts lost to infrastructure: they do not
	// use the retry budget (MaxAttempts counts only the others).
	InfraLost int `json:"infra_lost,omitempty"`
	// Carried, for a job of a re-run that did not run again, is the
	// attempt whose end it took (its logs and artifacts are there).
	Carried    *Carried   `json:"carried,omitempty"`
	Worker     string     `json:"worker,omitempty"`
	QueuedAt   *time.Time `json:"queued_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// ExitCode is set once an attempt of the job has ended.
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	// Outputs are the job's outputs once it succeeded (every declared
	// name; "" for one its steps did not write).
	Outputs map[string]string `json:"outputs,omitempty"`
	// DurationSeconds runs from the start to the end (or now); 0 before
	// the job starts.
	DurationSeconds float64 `json:"duration_seconds"`
	// PredictedSeconds is the scheduler's estimate of the job's duration,
	// learned from earlier runs of the same job; set while the job is
	// queued, assigned or running.
	PredictedSeconds float64 `json:"predicted_duration_s,omitempty"`
	// ETA is when the job should end: its start plus the prediction while
	// it runs; now plus the prediction while it waits (the earliest it can
	// end).
	ETA *time.Time `json:"eta,omitempty"`
	// Reason says, with a fixed code, why a queued job is not placed:
	// no_workers, no_worker_with_labels, no_worker_large_enough,
	// workers_busy, pool_adding_worker, pool_at_max, over_fair_share or
	// lower_priority (empty when the next
	// scheduling pass may place it), or why a pending job is not queued:
	// waiting_on_needs or concurrency_group.
	// ReasonDetail says it in a sentence ("asks 64 cpu, the largest worker
	// has 2").
	Reason       string `json:"reason,omitempty"`
	ReasonDetail string `json:"reason_detail,omitempty"`
	// Approval is set for a job whose environment asks for an approval.
	Approval *Approval `json:"approval,omitempty"`
	// Attempts are set by the job endpoints.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Approval is the approval a job of an environment waits for, or the
// decision taken on it.
type Approval struct {
	Environment string   `json:"environment"`
	Approvers   []string `json:"approvers,omitempty"`
	// Deadline is when the wait ends with a rejection (set once the job
	// waits).
	Deadline *time.Time `json:"deadline,omitempty"`
	// Decision is approved, rejected or timed_out ("" while it waits).
	Decision  string     `json:"decision,omitempty"`
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	Comment   string     `json:"comment,omitempty"`
}

// Decision is the body of POST /api/v1/runs/{id}/jobs/{job}/approve and
// /reject (optional).
type Decision struct {
	Comment string `json:"comment,omitempty"`
}

// Duration returns DurationSeconds as a time.Duration.
func (j Job) Duration() time.Duration { return seconds(j.DurationSeconds) }

// Attempt is one try of a job on one worker.
type Attempt struct {
	N          int                `json:"n"`
	Worker     string             `json:"worker"`
	State      state.AttemptState `json:"state"`
	AssignedAt *time.Time         `json:"assigned_at,omitempty"`
	StartedAt  *time.Time         `json:"started_at,omitempty"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
	ExitCode   *int               `json:"exit_code,omitempty"`
	Error      string             `json:"error,omitempty"`
	// Reason says why the attempt ended: "succeeded", "exit 1",
	// "canceled", "lost: worker restarted", "lost: worker silent",
	// "lost: server restarted", "lost: handed back"... State "lost" means
	// the attempt was given up because of infrastructure, not the job.
	Reason string `json:"reason,omitempty"`
	// PeakMemory (bytes) and CPUSeconds are what the attempt used, measured
	// in its cgroup; absent when its worker could not measure them.
	PeakMemory *int64   `json:"peak_memory_bytes,omitempty"`
	CPUSeconds *float64 `json:"cpu_seconds,omitempty"`
}

// RunList is a page of runs, newest first. Next is the Before cursor of the
// following page; empty on the last page.
type RunList struct {
	Runs []Run  `json:"runs"`
	Next string `json:"next"`
}

// JobList is the jobs of a run.
type JobList struct {
	Jobs []Job `json:"jobs"`
}

// Worker is a worker as the orchestrator sees it.
type Worker struct {
	ID           string            `json:"id"`
	Pool         string            `json:"pool"`
	State        state.WorkerState `json:"state"`
	Labels       []string          `json:"labels"`
	CPUMilli     int64             `json:"cpu_milli"`
	MemoryBytes  int64             `json:"memory_bytes"`
	GPU          int               `json:"gpu"`
	UsedCPUMilli int64             `json:"used_cpu_milli"`
	UsedMemory   int64             `json:"used_memory_bytes"`
	UsedGPU      int               `json:"used_gpu"`
	Jobs         []string          `json:"jobs"`
	FirstSeen    time.Time         `json:"first_seen"`
	LastSeen     time.Time         `json:"last_seen"`
}

// WorkerList is the answer of GET /api/v1/workers.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}

// Error is the body of every error response.
type Error struct {
	Code    Code          `json:"code"`
	Message string        `json:"message"`
	Details []ErrorDetail `json:"details,omitempty"`
}

// ErrorDetail is one problem of an invalid pipeline file.
type ErrorDetail struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// SubmitRequest is the JSON form of POST /api/v1/runs.
type SubmitRequest struct {
	File     string `json:"file"`
	Pipeline string `json:"pipeline"`
	Tenant   string `json:"tenant"`
	// Inputs are values for the pipeline's inputs, by name.
	Inputs map[string]string `json:"inputs,omitempty"`
	// Includes are the files the pipeline includes, by name (the path of
	// the pipeline's directory joined with the path written in include),
	// as YAML text.
	Includes map[string]string `json:"includes,omitempty"`
}

// Kinds of log stream events (the SSE event field).
const (
	EventLog  = "log"
	EventJob  = "job"
	EventRun  = "run"
	EventEnd  = "end"
	EventPing = "ping" // a heartbeat; SSE sends it as a comment
)

// Event is one event of a followed run. Type says which field is set.
type Event struct {
	Type string
	Log  *LogEvent
	Job  *JobEvent
	Run  *RunEvent
	End  *Run // the run, with its jobs, once it is final
}

// LogEvent is one chunk of a job's output.
type LogEvent struct {
	JobID   string `json:"job_id"`
	JobKey  string `json:"job_key"`
	Attempt int    `json:"attempt"`
	Step    int    `json:"step"`
	Seq     int64  `json:"seq"`
	Data    string `json:"data"`
	// At is when the chunk was stored (absent when unknown).
	At time.Time `json:"at,omitzero"`
}

// Permissions says which actions the caller may do on a resource (GET
// /api/v1/permissions), as the authorizer decides them for the API.
type Permissions struct {
	// Resource is the Cedar entity asked about: Hodei::Run::"01…", or
	// Hodei::Cluster::"hodei".
	Resource string `json:"resource"`
	// Actions maps each action asked about to whether it is allowed.
	Actions map[string]bool `json:"actions"`
}

// JobEvent is a job's change of state.
type JobEvent struct {
	JobID   string         `json:"job_id"`
	JobKey  string         `json:"job_key"`
	State   state.JobState `json:"state"`
	Attempt int            `json:"attempt"`
	Error   string         `json:"error,omitempty"`
	At      time.Time      `json:"at"`
	// StartedAt is set when known (events replayed from the store).
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// RunEvent is a run's change of state.
type RunEvent struct {
	ID    string         `json:"id"`
	State state.RunState `json:"state"`
	Error string         `json:"error,omitempty"`
	At    time.Time      `json:"at"`
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Artifact is one artifact of a job, as GET /api/v1/runs/{id}/artifacts
// lists it. Its content (GET .../artifacts/{job}/{name}) is a tar archive
// compressed with zstd; Files gives the sha256 of every file in it, which
// `hodei artifacts --download` checks.
type Artifact struct {
	Job       string         `json:"job"` // the job's key
	JobID     string         `json:"job_id"`
	Attempt   int            `json:"attempt"`
	Name      string         `json:"name"`
	Size      int64          `json:"size"` // bytes of the archive
	Files     []ArtifactFile `json:"files"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
}

// ArtifactFile is one file of an artifact.
type ArtifactFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
	SHA256 string `json:"sha256"`
}

// Artifacts is the body of GET /api/v1/runs/{id}/artifacts.
type Artifacts struct {
	Artifacts []Artifact `json:"artifacts"`
}

// Leader is GET /api/v1/leader: which of the servers sharing a store leads
// (runs the orchestrator loop, the scheduler and the autoscaler).
type Leader struct {
	// ID names the leading server ("" when none has led yet).
	ID string `json:"id"`
	// API is the leader's address as it announced it.
	API string `json:"api,omitempty"`
	// Epoch grows by one with each new leader; the store refuses the
	// writes of an older one.
	Epoch int64 `json:"epoch"`
	// Since is when the leader took over.
	Since time.Time `json:"since,omitzero"`
	// Known says the answering server sees a live leader: it leads, or a
	// leader answered it lately.
	Known bool `json:"known"`
	// Self says the answering server is the leader; Server is its id.
	Self   bool   `json:"self"`
	Server string `json:"server,omitempty"`
}
