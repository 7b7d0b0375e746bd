// Package workers provisions the fleet: providers create and remove workers
// (an agent in this process or a `hodei agent` process, a Docker container
// running `hodei agent`, a Kubernetes pod), pools say how many of which
// shape to keep, and the Manager keeps each pool between its min and max,
// starts workers for queued jobs that fit no running one, and drains and
// removes idle ones.
//
// The decision of what to create and what to remove is a pure function
// (Scaler.Decide over a Snapshot): the Manager gathers the snapshot and
// applies the actions, through providers wrapped in Guard (timeouts,
// retries of transient errors, circuit breaker).
//
// This package holds the contract (Provider) and what plans and applies;
// the providers are packages of their own (local, docker, kubernetes),
// registered in a Registry by the binary (cmd/hodei), and the pools file is
// read by poolsfile. Code that only plans (the simulator, the autoscaler,
// the API) thus links none of the engines' clients.
package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Provider creates and removes the workers of one pool.
//
// Lifecycle of a worker: Create returns once the provider has started it
// (Event EventCreated, then EventStarted); the agent then joins the server
// by heartbeat like any other. It runs until it exits by itself (an
// ephemeral worker after its job: EventExited) or until Terminate stops it
// and frees what it held (EventGone). Terminate is idempotent: terminating
// a worker that does not exist, or no longer does, succeeds.
//
// Concurrency: every method may be called from several goroutines at once.
// Create with the ID of a worker that exists returns that worker (so that a
// retried Create does not make two). Calls may block on I/O: callers pass a
// context with a deadline (Guard does).
//
// Errors: ErrNotFound when the worker is unknown (Status, Logs); errors
// that may go away on a retry are marked with Transient, or are recognised
// by IsTransient (timeouts, refused connections, an engine that is
// unavailable).
type Provider interface {
	Create(ctx context.Context, spec WorkerSpec) (WorkerRef, error)
	Terminate(ctx context.Context, id string) error
	Status(ctx context.Context, id string) (WorkerStatus, error)
	// Logs copies what the worker printed so far to w.
	Logs(ctx context.Context, id string, w io.Writer) error
	// Capacity is what the provider can still create.
	Capacity(ctx context.Context) (Capacity, error)
	// Events reports lifecycle changes. The channel is never closed; events
	// are dropped when its buffer is full (Status tells the truth).
	Events() <-chan Event
}

// Drainer is a Provider that can tell a worker to take no new jobs (its
// agent says so in its heartbeats). The Manager drains an idle worker before
// terminating it.
type Drainer interface {
	Drain(ctx context.Context, id string) error
}

// Lister is a Provider whose workers outlive the server that created them
// (containers, pods), so that a restarted server can find them again. List
// returns the workers of this pool that this server (ProviderEnv.Owner)
// created, found by the labels Create put on them, in any phase, and
// makes them the provider's own again: their events are reported and
// Terminate removes them, as for workers this run created. Without an
// Owner it returns nothing. The Manager calls it when it starts, adopts the
// live workers into their pool (at most max) and terminates the others.
type Lister interface {
	List(ctx context.Context) ([]ListedWorker, error)
}

// ListedWorker is a worker found by Lister.List.
type ListedWorker struct {
	Ref    WorkerRef
	Status WorkerStatus
	// CreatedAt is when the provider created it (zero if unknown).
	CreatedAt time.Time
}

// WorkerSpec is what to create.
type WorkerSpec struct {
	ID        string // unique in the fleet; a NATS subject token
	Pool      string
	Image     string // for container providers
	Resources Resources
	Labels    []string
	Env       map[string]string
	// Secrets are names, resolved by the provider (ProviderEnv.Secret);
	// values never appear in a spec.
	Secrets []string
	// Ephemeral workers take one job, then exit.
	Ephemeral bool
	// Container, when set, makes the worker for the jobs of one
	// container (pipeline.ContainerKey): Image is their image, Services
	// run beside the worker's (the Kubernetes provider makes them native
	// sidecars of the pod), and its agent runs those jobs' steps in its
	// own container (agent --job-container). The Manager sets it for
	// providers that are ContainerWorkers.
	Container string
	Services  []pipeline.Service
}

// ContainerWorkers is a Provider that can make a worker for the jobs of one
// container (WorkerSpec.Container): its agent runs in the jobs' image, with
// their services beside it. The Manager gives such a pool the demand of
// jobs with an image, one ephemeral worker per job (Kubernetes: a pod per
// job, its services as sidecars).
type ContainerWorkers interface {
	MakesContainerWorkers() bool
}

// Resources of a worker.
type Resources struct {
	CPUMilli int64
	Memory   int64
	GPU      int
}

// WorkerRef names a created worker.
type WorkerRef struct {
	ID       string
	Pool     string
	Provider string
	// Handle is the provider's own name for it (a container id).
	Handle string
}

// Phase of a worker as its provider sees it.
type Phase string

// Phases.
const (
	PhaseCreating Phase = "creating"
	PhaseRunning  Phase = "running"
	PhaseExited   Phase = "exited"
	PhaseGone     Phase = "gone"
)

// WorkerStatus is a worker as its provider sees it.
type WorkerStatus struct {
	ID       string
	Phase    Phase
	ExitCode int
	Detail   string
}

// Capacity is what a provider can still create; -1 means no known limit.
type Capacity struct {
	Workers  int
	CPUMilli int64
	Memory   int64
}

// EventKind is a step in a worker's lifecycle.
type EventKind string

// Event kinds.
const (
	EventCreated EventKind = "created"
	EventStarted EventKind = "started"
	EventExited  EventKind = "exited"
	EventGone    EventKind = "gone"
)

// Event is a lifecycle change of a worker.
type Event struct {
	Kind     EventKind
	ID       string
	Pool     string
	At       time.Time
	ExitCode int
	Err      string
}

// Errors of providers.
var (
	ErrNotFound    = errors.New("worker not found")
	ErrCircuitOpen = errors.New("provider circuit open: not called")
)

// ProviderEnv is what providers get from the server they work for.
type ProviderEnv struct {
	// NATSURL is where agents outside this process connect.
	NATSURL string
	// Connect opens an in-process NATS connection for agent id (local
	// provider).
	Connect func(id string) (*nats.Conn, error)
	// WorkDir holds the work dirs of local workers.
	WorkDir string
	// Containers, when set, lets local workers run jobs with an image.
	Containers containers.Runtime
	// ContainerNetwork is the network of job containers that ask for one.
	ContainerNetwork string
	// NoCgroups runs local workers' attempts without a cgroup each.
	NoCgroups bool
	// Owner names this server among others on the same engine: worker
	// containers and pods carry it, and those left by a previous run are
	// found again (Lister).
	Owner string
	// Secret resolves a secret name for WorkerSpec.Secrets (nil: none).
	Secret func(ctx context.Context, name string) (string, error)
	// AgentCert, when set, issues the certificate an agent started for
	// worker id presents to a NATS that requires mutual TLS (nil: the
	// NATS takes agents without one).
	AgentCert func(id string) (AgentCert, error)
	// Unisolated runs the steps of local workers as the server's user,
	// without a sandbox (--unsafe-shared-user; see agent.Config).
	Unisolated bool
	// Hide lists directories the steps of local workers must not see (the
	// server's data directory).
	Hide              []string
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
}

// AgentCert is an agent's TLS identity: its certificate and key, and the
// CA of the server's certificate, PEM-encoded.
type AgentCert struct {
	CertPEM, KeyPEM, CAPEM []byte
}

// Factory makes the provider of one pool.
type Factory func(pool poolsfile.PoolConfig, env ProviderEnv) (Provider, error)

// Registry maps provider names (the `provider:` of a pool) to factories.
// Each provider lives in its own package (local, docker, kubernetes under
// internal/workers) and is registered by the binary that wants it
// (cmd/hodei registers them all), so that code which only plans links none
// of the engines' clients.
type Registry struct {
	mu sync.Mutex
	m  map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Factory{}} }

// Register adds a provider; registering a name twice panics (a programming
// error).
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic("workers: provider " + name + " registered twice")
	}
	r.m[name] = f
}

// Names lists the registered providers.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New makes the provider of a pool.
func (r *Registry) New(pool poolsfile.PoolConfig, env ProviderEnv) (Provider, error) {
	r.mu.Lock()
	f := r.m[pool.Provider]
	r.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("pool %s: no provider %q (known: %v)", pool.Name, pool.Provider, r.Names())
	}
	p, err := f(pool, env)
	if err != nil {
		return nil, fmt.Errorf("pool %s: provider %s: %w", pool.Name, pool.Provider, err)
	}
	return p, nil
}

// Emit sends an event on a provider's events channel without blocking
// (see Provider.Events), stamped with the time if it has none.
func Emit(ch chan Event, e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	select {
	case ch <- e:
	default:
	}
}
