package bus

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/state"
)

// Kinds of dispatch messages.
const (
	KindAssign = "assign"
	KindCancel = "cancel"
)

// Dispatch is a message from the orchestrator to one worker.
type Dispatch struct {
	Kind    string `json:"kind"`
	RunID   string `json:"run_id"`
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	// BootID fences the message to one incarnation of the worker: an
	// agent whose boot id differs (it restarted since the orchestrator
	// chose it) drops an assignment, and a cancel with a boot id is a
	// refusal of a report of that incarnation. Empty: any incarnation.
	BootID string `json:"boot_id,omitempty"`
	// Tenant is the tenant of the job's run (assign only): the worker
	// keeps its object cache of repositories per tenant.
	Tenant string `json:"tenant,omitempty"`
	// Spec is the job's pipeline.JobSpec (assign only).
	Spec json.RawMessage `json:"spec,omitempty"`
	// Env is what Hodei adds to the job's environment (HODEI_RUN_ID...).
	Env map[string]string `json:"env,omitempty"`
	// Secrets are the values of the secrets the job names, for this
	// attempt only. They never travel or rest in clear (the tag keeps them
	// out of JSON): the orchestrator seals them into Sealed for the
	// worker's key, and the agent opens Sealed into Secrets.
	Secrets map[string]string `json:"-"`
	// Sealed is Secrets encrypted for the worker (see secrets/sealed).
	Sealed []byte `json:"sealed,omitempty"`
	// SealKey is the id of the worker key Sealed is for.
	SealKey string `json:"seal_key,omitempty"`
	// SecretsError says why the job's secrets could not be given to it
	// (it names secrets, never values); the agent fails the attempt.
	SecretsError string `json:"secrets_error,omitempty"`
	// MaxLogBytes is the most output of the attempt the worker keeps
	// (assign only; 0: the worker's own limit).
	MaxLogBytes int64 `json:"max_log_bytes,omitempty"`
	// TraceParent is the W3C traceparent of the attempt's span: it travels
	// in the message's header, not its body (see package tracing).
	TraceParent string `json:"-"`
}

// TraceParentHeader is the NATS header that carries Dispatch.TraceParent.
const TraceParentHeader = "traceparent"

// MsgID is the JetStream de-duplication id of a dispatch message: publishing
// the same assignment twice (after a restart) delivers it once.
// A cancel aimed at one incarnation (a refusal) has its own id, so that an
// earlier cancel of the same attempt does not hide it.
func (d Dispatch) MsgID() string {
	id := d.Kind + "-" + d.JobID + "-" + strconv.Itoa(d.Attempt)
	if d.Kind == KindCancel && d.BootID != "" {
		id += "-" + d.BootID
	}
	return id
}

// Status values a worker reports for an attempt: the names of the attempt
// states of package state.
const (
	StatusRunning   = string(state.AttemptRunning)
	StatusSucceeded = string(state.AttemptSucceeded)
	StatusFailed    = string(state.AttemptFailed)
	StatusCanceled  = string(state.AttemptCanceled)
	// StatusLost hands an attempt back: the worker stopped it for its own
	// reasons (a drain that ran out of time), not the job's. The
	// orchestrator counts it as an infrastructure loss.
	StatusLost = string(state.AttemptLost)
	// StatusFenced says the worker stopped an attempt because its own
	// NATS connection was away for longer than it may be (the agent's
	// FenceAfter): the server may have given the attempt to another
	// worker. The orchestrator counts it as an infrastructure loss, like
	// StatusLost, but the worker goes on taking work.
	StatusFenced = "fenced"
)

// Status is a worker's report on one attempt of a job.
type Status struct {
	WorkerID string    `json:"worker_id"`
	JobID    string    `json:"job_id"`
	Attempt  int       `json:"attempt"`
	State    string    `json:"state"`
	ExitCode int       `json:"exit_code,omitempty"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
	// PeakMemory (bytes) and CPUTime are what a final attempt used,
	// measured in its cgroup; zero when the worker has no cgroups.
	PeakMemory int64         `json:"peak_memory_bytes,omitempty"`
	CPUTime    time.Duration `json:"cpu_time_ns,omitempty"`
	// Outputs are the job's outputs, with a final status of an attempt
	// that succeeded (pipeline.FillOutputs).
	Outputs map[string]string `json:"outputs,omitempty"`
}

// MsgID de-duplicates status messages: one per attempt and state.
func (s Status) MsgID() string {
	return "st-" + s.JobID + "-" + strconv.Itoa(s.Attempt) + "-" + s.State
}

// JobRef names one attempt of a job.
type JobRef struct {
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
}

// Heartbeat is what a worker says of itself every interval.
type Heartbeat struct {
	WorkerID string   `json:"worker_id"`
	BootID   string   `json:"boot_id"` // new at every start of the agent
	Pool     string   `json:"pool,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	Labels   []string `json:"labels,omitempty"`
	CPUMilli int64    `json:"cpu_milli"`
	Memory   int64    `json:"memory_bytes"`
	GPU      int      `json:"gpu,omitempty"`
	Running  []JobRef `json:"running,omitempty"`
	Draining bool     `json:"draining,omitempty"`
	// Once marks an ephemeral agent: it takes one job in its life.
	Once bool `json:"once,omitempty"`
	// SealKey is the public key the orchestrator seals job secrets to
	// (X25519, made at every start of the agent, see secrets/sealed).
	SealKey []byte `json:"seal_key,omitempty"`
	// Usage of the machine, for operators and the autoscaler.
	Load1    float64   `json:"load1,omitempty"`
	MemUsed  int64     `json:"mem_used_bytes,omitempty"`
	At       time.Time `json:"at"`
	Interval float64   `json:"interval_s"`
}

// Headers of log chunk messages; the body is the raw output.
const (
	HdrRun     = "Hodei-Run"
	HdrJob     = "Hodei-Job"
	HdrAttempt = "Hodei-Attempt"
	HdrSeq     = "Hodei-Seq"
	HdrStep    = "Hodei-Step"
)

// LogChunk is a batch of a job's output as it travels on the bus.
type LogChunk struct {
	RunID   string
	JobID   string
	Attempt int
	Seq     int64
	Step    int
	Data    []byte
}

// Msg turns a chunk into a NATS message on the given subject.
func (c LogChunk) Msg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(HdrRun, c.RunID)
	m.Header.Set(HdrJob, c.JobID)
	m.Header.Set(HdrAttempt, strconv.Itoa(c.Attempt))
	m.Header.Set(HdrSeq, strconv.FormatInt(c.Seq, 10))
	m.Header.Set(HdrStep, strconv.Itoa(c.Step))
	m.Header.Set(nats.MsgIdHdr, "log-"+c.JobID+"-"+strconv.Itoa(c.Attempt)+"-"+strconv.FormatInt(c.Seq, 10))
	m.Data = c.Data
	return m
}

// ParseLogChunk reads a chunk back from a message's headers and body.
func ParseLogChunk(h nats.Header, data []byte) (LogChunk, error) {
	c := LogChunk{RunID: h.Get(HdrRun), JobID: h.Get(HdrJob), Data: data}
	var err error
	if c.Attempt, err = strconv.Atoi(h.Get(HdrAttempt)); err != nil {
		return c, fmt.Errorf("log chunk attempt: %w", err)
	}
	if c.Seq, err = strconv.ParseInt(h.Get(HdrSeq), 10, 64); err != nil {
		return c, fmt.Errorf("log chunk seq: %w", err)
	}
	if c.Step, err = strconv.Atoi(h.Get(HdrStep)); err != nil {
		return c, fmt.Errorf("log chunk step: %w", err)
	}
	if c.JobID == "" {
		return c, fmt.Errorf("log chunk without job")
	}
	return c, nil
}
