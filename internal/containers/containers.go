// Package containers is what Hodei asks of a container engine: the
// container of a job that names an image (one per attempt, its steps run in
// it with exec), behind the small Runtime interface, and the labels Hodei
// puts on its containers. The engine's client lives in dockerengine, the
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
