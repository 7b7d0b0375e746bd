// Package pipeline parses, validates and expands Hodei pipeline files (v1).
//
// A pipeline file is YAML: a name, inputs, an environment, and a map of jobs
// forming a DAG through their needs. Parse reads the file into a Pipeline
// through yamlpos, the reader every YAML file of Hodei goes through, so that
// errors name file, line, column and field; it checks the ${{ }} expressions
// (package expr) against what each field may read, and merges jobs over the
// templates they extend. ResolveInputs checks the values a run is given;
// ExpandRun turns the pipeline into concrete JobSpecs (one per matrix
// combination) ordered topologically, with the expressions known when the run
// is made evaluated; Ready evaluates the rest, and a job's if, when its needs
// have ended; StepRuns decides a step's if on the agent.
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
	// On says which events start runs of the pipeline (on.go); nil when
	// the file has no `on:` (DefaultOn).
	On *On
	// Inputs are the values a run is given when it is made (hodei submit
	// --input), in file order.
	Inputs []Input
	// Jobs in file order.
	Jobs []*Job
	// File is the name used in error messages.
	File string
	// Includes are the files the pipeline includes, by name (see
	// Loader), as they were read: kept with a run, they give the same
	// pipeline again (MapLoader).
	Includes map[string][]byte
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

// Condition is the expression of an `if` (without ${{ }}), as written
// or folded: when a job runs given how its needs ended, or when a step runs
// given how the steps before it ended. See docs/pipeline.md.
type Condition string

// Common conditions.
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
	// ContinueOnError: a failure of the job does not fail the run, and
	// the jobs that need it see it as a success.
	ContinueOnError bool
	Retry           int // 0..10
	// InfraRetries (0..10) bounds the new attempts given when an attempt
	// is lost to infrastructure; nil takes the server's default.
	InfraRetries *int
	Priority     int
	Matrix       *Matrix
	Steps        []Step
	// Checkout holds the job's `checkout:` options; nil: the defaults.
	Checkout *Checkout
	Line     int    // line of the job's key, for messages
	File     string // the included file the job is in ("": the pipeline's), for messages
	// Artifacts, Cache and NoArtifacts (the needs whose artifacts the job
	// does not want): see artifacts.go.
	Artifacts   *Artifacts
	Cache       []Cache
	NoArtifacts []string
	// Outputs are the names the job's steps may write to $HODEI_OUTPUT,
	// read by the jobs that need it (outputs.go).
	Outputs []string
	// Services run beside the job's container (services.go).
	Services []Service
	// Environment, when set, makes the job wait for an approval once it
	// is ready (environment.go).
	Environment *Environment
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

// Step is one script run by its shell (`sh -e` by default).
type Step struct {
	Name    string
	Run     string
	Env     map[string]string
	Timeout time.Duration
	// If decides whether the step runs given how the steps before it
	// ended; "" is success().
	If Condition
	// WorkingDirectory is relative to the workspace and stays inside it.
	WorkingDirectory string
	// Shell is "" (sh), a name of Shells, or a command template with {0}
	// for the script's file.
	Shell string
	// ContinueOnError: a failure of the step does not fail the job.
	ContinueOnError bool
}

// JobSpec is a concrete job after matrix expansion: everything a worker needs
// to run it. It is stored with the run and sent with every assignment.
type JobSpec struct {
	// Key is unique within the run: the job id, or for a matrix job the id
	// followed by its values, e.g. "test (1.22, linux)".
	Key   string   `json:"key"`
	JobID string   `json:"job_id"` // the id in the file
	Name  string   `json:"name"`
	Needs []string `json:"needs,omitempty"` // keys of expanded jobs
	// If is evaluated when the needs have ended (see Ready).
	If Condition `json:"if"`
	// Deferred says that the env values and the steps' names, scripts and
	// env values still hold expressions on needs.* or hodei.run_id, to be
	// evaluated when the job is ready (see Ready).
	Deferred bool  `json:"deferred,omitempty"`
	CPUMilli int64 `json:"cpu_milli"`
	Memory   int64 `json:"memory_bytes"`
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
	// ContinueOnError: see Job.ContinueOnError.
	ContinueOnError bool `json:"continue_on_error,omitempty"`
	Retry           int  `json:"retry"`
	// InfraRetries: see Job.InfraRetries (nil: the server's default).
	InfraRetries *int              `json:"infra_retries,omitempty"`
	Priority     int               `json:"priority"`
	Matrix       map[string]string `json:"matrix,omitempty"`
	Steps        []StepSpec        `json:"steps"`
	// Checkout puts the run's commit in the workspace before the first
	// step (on.go); nil: nothing to check out.
	Checkout *Checkout `json:"checkout,omitempty"`
	// Artifacts, Cache and NoArtifactsFrom (keys of needed jobs whose
	// artifacts the job does not receive): see artifacts.go.
	Artifacts       *Artifacts `json:"artifacts,omitempty"`
	Cache           []Cache    `json:"cache,omitempty"`
	NoArtifactsFrom []string   `json:"no_artifacts_from,omitempty"`
	// Outputs are the declared outputs of the job (see Job.Outputs).
	Outputs []string `json:"outputs,omitempty"`
	// NeedsOutputs are the outputs of the job's needs as environment
	// variables (NeedsOutputVar), set by Ready: the agent gives them to
	// the steps as they are, with no $VAR expansion.
	NeedsOutputs map[string]string `json:"needs_outputs,omitempty"`
	// Services run beside the job's container (services.go).
	Services []Service `json:"services,omitempty"`
	// Environment: see Job.Environment.
	Environment *Environment `json:"environment,omitempty"`
}

// StepSpec is a step with its expressions evaluated, but for its `if`,
// which the agent evaluates when the step's turn comes.
type StepSpec struct {
	Name             string            `json:"name"`
	Run              string            `json:"run"`
	Env              map[string]string `json:"env,omitempty"`
	Timeout          time.Duration     `json:"timeout,omitempty"`
	If               Condition         `json:"if,omitempty"`
	WorkingDirectory string            `json:"working_directory,omitempty"`
	Shell            string            `json:"shell,omitempty"`
	ContinueOnError  bool              `json:"continue_on_error,omitempty"`
}

// DockerLabel is the label of workers that can run jobs with an image; such
// a job asks for it implicitly.
const DockerLabel = "docker"

// Default resources of a job that does not say.
const (
	DefaultCPUMilli = 100
	DefaultMemory   = 64 << 20
)
