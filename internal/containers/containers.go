// Package containers is what Hodei asks of a container engine: the
// container of a job that names an image (one per attempt, its steps run in
// it with exec) and the service containers beside it, behind the small
// Runtime interface, and the labels Hodei puts on its containers and
// networks. The engine's client lives in dockerengine, the
// only package that talks to the Docker Engine API, so that code that only
// needs the interface links no engine client.
//
// The agent uses Runtime, so that an agent without Docker still works (it
// refuses jobs with an image, and the scheduler does not send them: it
// lacks the "docker" label).
package containers

import (
	"context"
	"errors"
	"io"
	"time"
)

// Labels Hodei puts on every container it creates, so that what a killed
// agent or server left behind can be found and removed.
const (
	LabelJob     = "hodei.job"     // job id (job containers)
	LabelAttempt = "hodei.attempt" // attempt number (job containers)
	LabelAgent   = "hodei.agent"   // the agent that owns a job container
	LabelPool    = "hodei.pool"    // pool of a worker container
	LabelWorker  = "hodei.worker"  // worker id of a worker container
	LabelOwner   = "hodei.owner"   // the provider instance that owns a worker container
	LabelService = "hodei.service" // name of a service container in its job
)

// ErrUnavailable means no container engine answers.
var ErrUnavailable = errors.New("container engine unavailable")

// JobSpec describes the container of one attempt of a job.
type JobSpec struct {
	Image string
	// Workspace is the job's workspace on the agent's machine. It is
	// bind-mounted at the same path and is the working directory, so the
	// engine must see the agent's file system (a local engine).
	Workspace string
	// CPUMilli and Memory become the container's limits (0: none).
	CPUMilli int64
	Memory   int64
	// Network, when false, gives the container no network at all; when
	// true, it joins NetworkMode (the engine's default network if empty).
	Network     bool
	NetworkMode string
	// Labels are added to the container (LabelJob, LabelAgent...).
	Labels map[string]string
}

// ServicesSpec describes the service containers of one attempt of a job
// and the network they share with the job's container.
type ServicesSpec struct {
	// Services in the order they start.
	Services []Service
	// Internal, when true, gives the network no way out of the machine:
	// the job and its services reach each other only.
	Internal bool
	// CPUMilli and Memory are each service's limits (0: none).
	CPUMilli int64
	Memory   int64
	// Labels are added to the network and to every service container
	// (LabelJob, LabelAttempt, LabelAgent), so that what a dead agent
	// left can be found.
	Labels map[string]string
}

// Service is one service container: it is reached by its Name on the
// attempt's network.
type Service struct {
	Name       string
	Image      string
	Env        []string // KEY=VALUE
	Entrypoint []string // nil: the image's
	Command    []string // nil: the image's
	Ports      []int    // exposed on the network, never published
	// Health, when set, replaces the image's own health check; a
	// service is ready when it is healthy, or, with no health check at
	// all, when it runs.
	Health *Health
}

// Health is a service's health check: Cmd runs in the service with the
// image's shell every Interval; Retries failures in a row (each bounded
// by Timeout) make it unhealthy.
type Health struct {
	Cmd      string
	Interval time.Duration
	Timeout  time.Duration
	Retries  int
}

// Services are the running service containers of an attempt.
type Services interface {
	// Network is the name of the network the job's container must join.
	Network() string
	// Logs copies each service's output to w, under a line naming it.
	Logs(ctx context.Context, w io.Writer) error
	// Remove removes the service containers and the network; removing
	// what is gone is not an error.
	Remove(ctx context.Context) error
}

// ServiceError is the failure of one service to start or to become
// healthy; Reason says what happened ("did not become healthy: " and the
// last output of its health check, or why it stopped).
type ServiceError struct {
	Service string
	Reason  string
}

func (e *ServiceError) Error() string { return "service " + e.Service + " " + e.Reason }

// Runtime creates job containers. Implementations are safe for concurrent
// use.
type Runtime interface {
	// StartJob creates and starts the container of an attempt. The
	// container lives until Remove is called, or until the process that
	// started it dies (it then stops and removes itself).
	StartJob(ctx context.Context, spec JobSpec) (Container, error)
	// RemoveLabelled force-removes every container whose label key has
	// value, and returns how many there were.
	RemoveLabelled(ctx context.Context, key, value string) (int, error)
	// StartServices creates the attempt's network, starts the services
	// on it, each with its name as its address, and returns when every
	// one is ready, or fails (after removing what it made) when one does
	// not start or does not become healthy (a *ServiceError), or when
	// ctx ends.
	StartServices(ctx context.Context, spec ServicesSpec) (Services, error)
	// RemoveLabelledNetworks removes every network whose label key has
	// value (their containers must be gone), and returns how many there
	// were.
	RemoveLabelledNetworks(ctx context.Context, key, value string) (int, error)
}

// Container is a running job container.
type Container interface {
	// ID is the engine's id of the container.
	ID() string
	// Exec runs script with `sh -e -c` in dir with env added to the
	// image's environment, copies its output (stderr merged into stdout,
	// in order) to out, and returns its exit code. When ctx ends, Exec
	// returns at once with ctx's cause; the step's processes are stopped by
	// Remove.
	Exec(ctx context.Context, script, dir string, env []string, out io.Writer) (int, error)
	// Remove kills and removes the container; removing one that is gone
	// is not an error.
	Remove(ctx context.Context) error
}

// LogsError is a failure of StartServices with the services' output up to
// it (removing them loses it).
type LogsError struct {
	Err  error
	Logs string
}

func (e *LogsError) Error() string { return e.Err.Error() }
func (e *LogsError) Unwrap() error { return e.Err }

// ServiceLogs returns the services' output that err carries, if any.
func ServiceLogs(err error) string {
	var le *LogsError
	if errors.As(err, &le) {
		return le.Logs
	}
	return ""
}
