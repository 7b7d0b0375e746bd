// Package dockerengine is the Docker Engine client of Hodei: a
// containers.Runtime for the job containers of agents, and the worker
// containers of the docker provider (internal/workers/docker). It is the
// only package that talks to the Docker Engine API.
package dockerengine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/hodei-ci/hodei/internal/containers"
)

// Docker is a Runtime (and the worker containers' engine) on a Docker
// Engine, through the official Go client.
type Docker struct {
	c *client.Client
	// Pull, when true, pulls an image that the engine does not have.
	Pull bool
}

var _ containers.Runtime = (*Docker)(nil)

// NewDocker returns a client of the engine at host ("unix:///path" or
// "tcp://host:port"); an empty host takes DOCKER_HOST, else the default
// socket. It does not connect: Ping does.
func NewDocker(host string) (*Docker, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{c: c, Pull: true}, nil
}

// Detect returns a Docker client if an engine answers within timeout: the
// one DOCKER_HOST names, else the default socket. It returns
// ErrUnavailable (wrapped) when there is none.
func Detect(ctx context.Context, timeout time.Duration) (*Docker, error) {
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return nil, fmt.Errorf("%w: DOCKER_HOST is not set and there is no /var/run/docker.sock", containers.ErrUnavailable)
		}
	}
	d, err := NewDocker("")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Ping checks that the engine answers and agrees on an API version.
func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("%w: %v", containers.ErrUnavailable, err)
	}
	return nil
}

// Host is the engine's address.
func (d *Docker) Host() string { return d.c.DaemonHost() }

// Close releases the client's connections.
func (d *Docker) Close() { _ = d.c.Close() }

// keepAlive is the main process of a job container: it waits on stdin,
// which the agent holds open through an attach connection. When the agent
// dies the connection closes, the read ends, and the container stops (and
// removes itself): a killed agent leaves no running container behind.
const keepAlive = "read _"

// StartJob creates and starts the container of an attempt.
func (d *Docker) StartJob(ctx context.Context, spec containers.JobSpec) (containers.Container, error) {
	if spec.Image == "" {
		return nil, errors.New("container: no image")
	}
	labels := map[string]string{"hodei": "job"}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	network := container.NetworkMode("none")
	if spec.Network {
		network = container.NetworkMode(spec.NetworkMode)
	}
	init := true
	hc := &container.HostConfig{
		NetworkMode: network,
		AutoRemove:  true,
		Init:        &init,
		Resources: container.Resources{
			NanoCPUs: spec.CPUMilli * 1_000_000,
			Memory:   spec.Memory,
		},
	}
	if spec.Memory > 0 {
		hc.Resources.MemorySwap = spec.Memory // no swap beyond the limit
	}
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: []string{"/bin/sh", "-c", keepAlive},
		Cmd:        []string{"hodei-job"},
		OpenStdin:  true,
		StdinOnce:  true,
		Labels:     labels,
		WorkingDir: spec.Workspace,
	}
	if spec.Workspace != "" {
		hc.Binds = []string{spec.Workspace + ":" + spec.Workspace}
	}
	name := "hodei-job-" + sanitize(spec.Labels[containers.LabelJob]) + "-" + spec.Labels[containers.LabelAttempt] + "-" + randomSuffix()
	id, err := d.create(ctx, name, cfg, hc)
	if err != nil {
		return nil, err
	}
	c := &dockerContainer{d: d, id: id}
	// Attach before start: the container must not start without the
	// connection whose end stops it.
	// The connection outlives ctx: only its handshake is bound to it.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	att, err := d.c.ContainerAttach(actx, id, client.ContainerAttachOptions{Stream: true, Stdin: true})
	cancel()
	if err != nil {
		_ = c.Remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("attach to container: %w", err)
	}
	c.stdin = att.HijackedResponse
	if _, err := d.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		_ = c.Remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("start container of %s: %w", spec.Image, err)
	}
	return c, nil
}

// create creates a container, pulling its image first if the engine does
// not have it and d.Pull is set.
func (d *Docker) create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig) (string, error) {
	return d.createWith(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: name})
}

// createWith is create with all the engine's options.
func (d *Docker) createWith(ctx context.Context, opts client.ContainerCreateOptions) (string, error) {
	cfg := opts.Config
	res, err := d.c.ContainerCreate(ctx, opts)
	if err != nil && cerrdefs.IsNotFound(err) && d.Pull {
		if perr := d.pull(ctx, cfg.Image); perr != nil {
			return "", fmt.Errorf("image %s is not on the docker host and pulling it failed: %w", cfg.Image, perr)
		}
		res, err = d.c.ContainerCreate(ctx, opts)
	}
	if err != nil {
		if ctx.Err() != nil && opts.Name != "" {
			// The engine may have made the container after the
			// request was given up: remove it by name.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = d.Remove(rctx, opts.Name)
			cancel()
		}
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("image %s is not on the docker host: %w", cfg.Image, err)
		}
		return "", fmt.Errorf("create container of %s: %w", cfg.Image, err)
	}
	return res.ID, nil
}

func (d *Docker) pull(ctx context.Context, image string) error {
	r, err := d.c.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Wait(ctx)
}

// RemoveLabelled force-removes the containers whose label key is value.
func (d *Docker) RemoveLabelled(ctx context.Context, key, value string) (int, error) {
	ids, err := d.ListLabelled(ctx, key, value)
	if err != nil {
		return 0, err
	}
	return removeEach(ctx, ids, d.Remove)
}

// removeEach calls remove for every id, one failure not stopping the
// others, and returns how many went and the errors of the rest.
func removeEach(ctx context.Context, ids []string, remove func(context.Context, string) error) (int, error) {
	n := 0
	var errs []error
	for _, id := range ids {
		if err := remove(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ListLabelled returns the ids of the containers, running or not, whose
// label key is value.
func (d *Docker) ListLabelled(ctx context.Context, key, value string) ([]string, error) {
	res, err := d.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", key+"="+value)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// Remove kills and removes a container. One that does not exist, or is
// already being removed, counts as removed.
func (d *Docker) Remove(ctx context.Context, id string) error {
	_, err := d.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return nil
	}
	return fmt.Errorf("remove container %s: %w", short(id), err)
}

// WorkerSpec describes a worker container: a long-running process (the
// agent) with limits, labels and a network.
type WorkerSpec struct {
	Name        string
	Image       string
	Entrypoint  []string
	Env         []string
	Binds       []string // host:container[:ro]
	Labels      map[string]string
	NetworkMode string // "" = the engine's default
	CPUMilli    int64
	Memory      int64
}

// RunWorker creates and starts a worker container that removes itself when
// its process exits. A container of the same name that exists already is
// returned as it is, so that a retried call does not make two.
func (d *Docker) RunWorker(ctx context.Context, s WorkerSpec) (string, error) {
	init := true
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(s.NetworkMode),
		AutoRemove:  true,
		Init:        &init,
		Binds:       s.Binds,
		Resources:   container.Resources{NanoCPUs: s.CPUMilli * 1_000_000, Memory: s.Memory},
	}
	cfg := &container.Config{Image: s.Image, Entrypoint: s.Entrypoint, Cmd: nil, Env: s.Env, Labels: s.Labels}
	id, err := d.create(ctx, s.Name, cfg, hc)
	if err != nil {
		if !cerrdefs.IsConflict(err) {
			return "", err
		}
		ins, ierr := d.c.ContainerInspect(ctx, s.Name, client.ContainerInspectOptions{})
		if ierr != nil {
			return "", err
		}
		id = ins.Container.ID
		if ins.Container.State != nil && ins.Container.State.Running {
			return id, nil
		}
	}
	if _, err := d.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return "", fmt.Errorf("start worker container %s: %w", s.Name, err)
	}
	return id, nil
}

// State is what the engine says of a container.
type State struct {
	Exists   bool
	Running  bool
	Status   string // created, running, exited...
	ExitCode int
	Labels   map[string]string
	// Limits as the engine applied them.
	NanoCPUs    int64
	Memory      int64
	NetworkMode string
}

// Inspect returns the state of a container; one that does not exist has
// Exists false and no error.
func (d *Docker) Inspect(ctx context.Context, id string) (State, error) {
	res, err := d.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return State{}, nil
		}
		return State{}, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	c := res.Container
	st := State{Exists: true}
	if c.State != nil {
		st.Running = c.State.Running
		st.Status = string(c.State.Status)
		st.ExitCode = c.State.ExitCode
	}
	if c.Config != nil {
		st.Labels = c.Config.Labels
	}
	if c.HostConfig != nil {
		st.NanoCPUs = c.HostConfig.NanoCPUs
		st.Memory = c.HostConfig.Memory
		st.NetworkMode = string(c.HostConfig.NetworkMode)
	}
	return st, nil
}

// Signal sends a signal (like "USR1") to a container's main process.
func (d *Docker) Signal(ctx context.Context, id, signal string) error {
	_, err := d.c.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal})
	if err != nil {
		return fmt.Errorf("signal container %s: %w", short(id), err)
	}
	return nil
}

// Wait returns when the container is no longer running, with its exit
// code, or when ctx ends.
func (d *Docker) Wait(ctx context.Context, id string) (int, error) {
	res := d.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		return int(r.StatusCode), nil
	case err := <-res.Error:
		return -1, err
	}
}

// Logs copies a container's output (stdout and stderr) to w.
func (d *Docker) Logs(ctx context.Context, id string, w io.Writer) error {
	r, err := d.c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Errorf("container logs %s: %w", short(id), err)
	}
	defer r.Close()
	_, err = stdcopy.StdCopy(w, w, r)
	return err
}

// Info is the engine's machine: its CPUs (in millicores) and memory.
func (d *Docker) Info(ctx context.Context) (cpuMilli, memory int64, err error) {
	res, err := d.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return 0, 0, fmt.Errorf("docker info: %w", err)
	}
	return int64(res.Info.NCPU) * 1000, res.Info.MemTotal, nil
}

// dockerContainer is a running job container.
type dockerContainer struct {
	d     *Docker
	id    string
	once  sync.Once
	stdin client.HijackedResponse
}

func (c *dockerContainer) ID() string { return c.id }

// stepWrapper runs the script with stderr merged into stdout at the file
// descriptor, so that their order is kept as on the host.
const stepWrapper = `exec 2>&1; exec /bin/sh -e -c "$1"`

func (c *dockerContainer) Exec(ctx context.Context, script, dir string, env []string, out io.Writer) (int, error) {
	ex, err := c.d.c.ExecCreate(ctx, c.id, client.ExecCreateOptions{
		Cmd:          []string{"/bin/sh", "-c", stepWrapper, "hodei-step", script},
		Env:          env,
		WorkingDir:   dir,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil {
			return -1, cause
		}
		return -1, fmt.Errorf("exec in container: %w", err)
	}
	att, err := c.d.c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil {
			return -1, cause
		}
		return -1, fmt.Errorf("start exec in container: %w", err)
	}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, att.Reader)
		copied <- err
	}()
	select {
	case <-ctx.Done():
		att.Close()
		<-copied
		return -1, context.Cause(ctx)
	case err := <-copied:
		att.Close()
		if err != nil && ctx.Err() == nil {
			return -1, fmt.Errorf("read step output: %w", err)
		}
	}
	// The stream ends when the process exits; the engine may take a moment
	// to record its exit code.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ins, err := c.d.c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			if cause := context.Cause(ctx); ctx.Err() != nil {
				return -1, cause
			}
			return -1, fmt.Errorf("exec status: %w", err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return -1, errors.New("exec status: the step's output ended but it still runs")
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return -1, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// Remove kills and removes the container, then lets go of its stdin (which
// alone would stop it too).
func (c *dockerContainer) Remove(ctx context.Context) error {
	err := c.d.Remove(ctx, c.id)
	c.once.Do(func() {
		if c.stdin.Conn != nil {
			c.stdin.Close()
		}
	})
	return err
}

func sanitize(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
