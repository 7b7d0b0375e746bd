// Package pipeline parses, validates and expands Hodei pipeline files (v1).
//
// A pipeline file is YAML: a name, an environment, and a map of jobs forming a
// DAG through their needs. Parse reads the file into a Pipeline through
// yamlpos, the reader every YAML file of Hodei goes through, so that errors
// name file, line, column and field;
// Expand turns the parsed pipeline into concrete JobSpecs (one per matrix
// combination) ordered topologically.
package pipeline

import "time"

// Pipeline is a parsed, validated pipeline file.
type Pipeline struct {
	Name     string
	Env      map[string]string
	Priority int
	// Concurrency limits how many runs of a group run at once; nil for
	// no limit.
	Concurrency *Concurrency
	// Jobs in file order.
	Jobs []*Job
	// File is the name used in error messages.
	File string
}

// Concurrency is a pipeline's concurrency group: at most Limit runs of the
// group run at once; the others wait in the order they were submitted (they
// are not canceled).
type Concurrency struct {
	Group string
	Limit int // 1..MaxConcurrencyLimit, 1 by default
}

// MaxConcurrencyLimit bounds a concurrency group's limit.
const MaxConcurrencyLimit = 1000

// Condition says when a job runs given the outcome of its needs.
type Condition string

// The conditions a job's `if` may hold.
const (
	// Success runs the job only when every need succeeded (the default).
	Success Condition = "success()"
	// Failure runs the job only when at least one need failed.
	Failure Condition = "failure()"
	// Always runs the job once its needs have ended, whatever their outcome.
	Always Condition = "always()"
)

// Resources is what a job asks of a worker.
type Resources struct {
	CPUMilli    int64    // millicores: "500m" = 500, "2" = 2000
	MemoryBytes int64    // "512Mi" = 512<<20
	GPU         int      // whole devices
	Labels      []string // every label must be on the worker
}

// Job is one job as written in the file, before matrix expansion.
type Job struct {
	ID     string // the key in `jobs:`
	Name   string
	Needs  []string
	If     Condition
	RunsOn Resources
	// Image, when set, runs the job's steps in a container of that image
	// on a worker labelled "docker"; Network gives the container a
	// network (it has none by default).
	Image   string
	Network bool
	Env     map[string]string
	// Secrets are the names of the secrets the job receives as
	// environment variables, resolved when an attempt is dispatched.
	Secrets []string
	Timeout time.Duration // 0 = no limit
	Retry   int           // 0..10
	// InfraRetries (0..10) bounds the new attempts given when an attempt
	// is lost to infrastructure; nil takes the server's default.
	InfraRetries *int
	Priority     int
	Matrix       *Matrix
	Steps        []Step
	Line         int // line of the job's key, for messages
	// Artifacts, Cache and NoArtifacts (the needs whose artifacts the job
	// does not want): see artifacts.go.
	Artifacts   *Artifacts
	Cache       []Cache
	NoArtifacts []string
}

// Matrix is a map of axis name to values; it expands into the cartesian product.
type Matrix struct {
	// Axes in file order.
	Axes []MatrixAxis
}

// MatrixAxis is one key of a matrix with its values (as strings).
type MatrixAxis struct {
	Name   string
	Values []string
}

// Step is one shell script run with `sh -e`.
type Step struct {
	Name    string
	Run     string
	Env     map[string]string
	Timeout time.Duration
}

// JobSpec is a concrete job after matrix expansion: everything a worker needs
// to run it. It is stored with the run and sent with every assignment.
type JobSpec struct {
	// Key is unique within the run: the job id, or for a matrix job the id
	// followed by its values, e.g. "test (1.22, linux)".
	Key      string    `json:"key"`
	JobID    string    `json:"job_id"` // the id in the file
	Name     string    `json:"name"`
	Needs    []string  `json:"needs,omitempty"` // keys of expanded jobs
	If       Condition `json:"if"`
	CPUMilli int64     `json:"cpu_milli"`
	Memory   int64     `json:"memory_bytes"`
	// LimitCPU and LimitMemory say that the job stated its cpu or memory
	// (runs-on): on a worker with cgroups, a stated request is also a
	// limit; a default (DefaultCPUMilli, DefaultMemory) only reserves.
	LimitCPU    bool     `json:"limit_cpu,omitempty"`
	LimitMemory bool     `json:"limit_memory,omitempty"`
	GPU         int      `json:"gpu,omitempty"`
	Labels      []string `json:"labels,omitempty"`
	// Image runs the steps in a container (see Job.Image); the labels then
	// include DockerLabel.
	Image   string            `json:"image,omitempty"`
	Network bool              `json:"network,omitempty"`
	Env     map[string]string `json:"env,omitempty"` // pipeline env merged under job env
	// Secrets are names only: values are resolved at dispatch, for one
	// attempt, and never stored with the job.
	Secrets []string      `json:"secrets,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Retry   int           `json:"retry"`
	// InfraRetries: see Job.InfraRetries (nil: the server's default).
	InfraRetries *int              `json:"infra_retries,omitempty"`
	Priority     int               `json:"priority"`
	Matrix       map[string]string `json:"matrix,omitempty"`
	Steps        []StepSpec        `json:"steps"`
	// Artifacts, Cache and NoArtifactsFrom (keys of needed jobs whose
	// artifacts the job does not receive): see artifacts.go.
	Artifacts       *Artifacts `json:"artifacts,omitempty"`
	Cache           []Cache    `json:"cache,omitempty"`
	NoArtifactsFrom []string   `json:"no_artifacts_from,omitempty"`
}

// StepSpec is a step with matrix values substituted.
type StepSpec struct {
	Name    string            `json:"name"`
	Run     string            `json:"run"`
	Env     map[string]string `json:"env,omitempty"`
	Timeout time.Duration     `json:"timeout,omitempty"`
}

// DockerLabel is the label of workers that can run jobs with an image; such
// a job asks for it implicitly.
const DockerLabel = "docker"

// Default resources of a job that does not say.
const (
	DefaultCPUMilli = 100
	DefaultMemory   = 64 << 20
)
