package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Docker is the provider of worker containers: each worker is a container
// of the pool's image running the hodei binary (mounted read-only from the
// server's machine) as `hodei agent`, connected to the server's NATS, with
// the pool's shape as its cpu and memory limits. The container removes
// itself when the agent exits; Terminate removes it at once. After a
// restart of the server (the same Owner), List finds the worker containers
// the previous run left, by label, and the Manager adopts the live ones.
type Docker struct {
	pool   poolsfile.PoolConfig
	env    ProviderEnv
	d      *containers.Docker
	binary string
	events chan Event

	mu      sync.Mutex
	workers map[string]*dockerWorker
}

type dockerWorker struct {
	container string
	cpu, mem  int64
}

var (
	_ Provider = (*Docker)(nil)
	_ Drainer  = (*Docker)(nil)
	_ Lister   = (*Docker)(nil)
)

// agentBinary is where the hodei binary is mounted in worker containers.
const agentBinary = "/hodei/hodei"

// NewDockerProvider makes the provider of a docker pool (a Factory).
func NewDockerProvider(pool poolsfile.PoolConfig, env ProviderEnv) (Provider, error) {
	if env.NATSURL == "" {
		return nil, errors.New("docker workers need the server's NATS to listen on TCP (--nats-listen)")
	}
	bin := pool.Docker.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the hodei binary to mount: %w", err)
		}
		bin = exe
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("hodei binary for worker containers: %w", err)
	}
	d, err := containers.NewDocker(pool.Docker.Host)
	if err != nil {
		return nil, err
	}
	p := &Docker{pool: pool, env: env, d: d, binary: bin, events: make(chan Event, 256), workers: map[string]*dockerWorker{}}
	return p, nil
}

// List returns the worker containers of this pool made by this server (the
// same Owner), a previous run's included, found by label, and makes them
// this provider's own: the exit of a running one is reported, Terminate
// removes them. A container that was created and never started (the
// server stopped in between) is reported exited: nothing would start it.
func (p *Docker) List(ctx context.Context) ([]ListedWorker, error) {
	if p.env.Owner == "" {
		return nil, nil
	}
	ids, err := p.d.ListLabelled(ctx, containers.LabelOwner, p.owner())
	if err != nil {
		return nil, err
	}
	out := make([]ListedWorker, 0, len(ids))
	for _, cid := range ids {
		st, err := p.d.Inspect(ctx, cid)
		if err != nil {
			return nil, err
		}
		id := st.Labels[containers.LabelWorker]
		if !st.Exists || id == "" || st.Labels[containers.LabelPool] != p.pool.Name {
			continue
		}
		ws := WorkerStatus{ID: id, Phase: PhaseRunning, Detail: st.Status}
		switch {
		case st.Running:
		case st.Status == "created":
			ws.Phase, ws.Detail = PhaseExited, "created, never started"
		default:
			ws.Phase, ws.ExitCode = PhaseExited, st.ExitCode
		}
		out = append(out, ListedWorker{Ref: WorkerRef{ID: id, Pool: p.pool.Name, Provider: "docker", Handle: cid}, Status: ws})
		p.mu.Lock()
		_, known := p.workers[id]
		if !known {
			p.workers[id] = &dockerWorker{container: cid, cpu: st.NanoCPUs / 1_000_000, mem: st.Memory}
		}
		p.mu.Unlock()
		if !known && st.Running {
			go p.watch(id, p.pool.Name, cid)
		}
	}
	return out, nil
}

func (p *Docker) owner() string { return p.env.Owner + "." + p.pool.Name }

func containerName(id string) string { return "hodei-worker-" + id }

// agentTLSDir is where a worker container sees its agent's certificate.
const agentTLSDir = "/run/hodei-tls"

// tlsDir is the host directory of worker id's certificate (with
// ProviderEnv.AgentCert), removed with the worker.
func (p *Docker) tlsDir(id string) string {
	return filepath.Join(p.env.WorkDir, "docker", p.pool.Name, id, "tls")
}

// Create starts a worker container.
func (p *Docker) Create(ctx context.Context, spec WorkerSpec) (WorkerRef, error) {
	image := spec.Image
	if image == "" {
		image = p.pool.Docker.Image
	}
	args := []string{agentBinary, "agent",
		"--nats", p.env.NATSURL,
		"--id", spec.ID,
		"--pool", spec.Pool,
		"--cpu", strconv.FormatInt(spec.Resources.CPUMilli, 10) + "m",
		"--memory", strconv.FormatInt(spec.Resources.Memory, 10),
		"--work-dir", "/tmp/hodei-work",
		"--docker", "off",
		"--log-format", "json",
		// The container is the worker's wall (Docker's default seccomp
		// profile refuses the namespaces a sandbox needs): steps share the
		// agent's user inside it, and the worker is listed as unisolated
		// (docs/security.md).
		"--unsafe-shared-user",
	}
	if len(spec.Labels) > 0 {
		args = append(args, "--labels", strings.Join(spec.Labels, ","))
	}
	if hb := p.env.HeartbeatInterval; hb > 0 {
		args = append(args, "--heartbeat", hb.String())
	}
	if spec.Ephemeral {
		args = append(args, "--once")
	}
	env := make([]string, 0, len(spec.Env)+len(spec.Secrets))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	for _, name := range spec.Secrets {
		if p.env.Secret == nil {
			return WorkerRef{}, fmt.Errorf("worker secret %s: this server has no secrets for workers", name)
		}
		v, err := p.env.Secret(ctx, name)
		if err != nil {
			return WorkerRef{}, fmt.Errorf("worker secret %s: %w", name, err)
		}
		env = append(env, name+"="+v)
	}
	sort.Strings(env)
	binds := []string{p.binary + ":" + agentBinary + ":ro"}
	if p.env.AgentCert != nil {
		// The agent's certificate, on the host, mounted read-only.
		// Files are rewritten in place: a container of a Create retried
		// after a timeout keeps its mount.
		dir := p.tlsDir(spec.ID)
		tlsArgs, err := writeAgentCert(p.env.AgentCert, spec.ID, dir, agentTLSDir)
		if err != nil {
			return WorkerRef{}, err
		}
		args = append(args, tlsArgs...)
		binds = append(binds, dir+":"+agentTLSDir+":ro")
	}
	id, err := p.d.RunWorker(ctx, containers.WorkerSpec{
		Name:        containerName(spec.ID),
		Image:       image,
		Entrypoint:  args,
		Env:         env,
		Binds:       binds,
		NetworkMode: p.pool.Docker.Network,
		CPUMilli:    spec.Resources.CPUMilli,
		Memory:      spec.Resources.Memory,
		Labels: map[string]string{
			"hodei":                "worker",
			containers.LabelPool:   spec.Pool,
			containers.LabelWorker: spec.ID,
			containers.LabelOwner:  p.owner(),
		},
	})
	if err != nil {
		p.mu.Lock()
		_, known := p.workers[spec.ID]
		p.mu.Unlock()
		if !known && p.env.AgentCert != nil {
			_ = os.RemoveAll(filepath.Dir(p.tlsDir(spec.ID)))
		}
		return WorkerRef{}, err
	}
	p.mu.Lock()
	_, known := p.workers[spec.ID]
	p.workers[spec.ID] = &dockerWorker{container: id, cpu: spec.Resources.CPUMilli, mem: spec.Resources.Memory}
	p.mu.Unlock()
	if !known {
		emit(p.events, Event{Kind: EventCreated, ID: spec.ID, Pool: spec.Pool})
		emit(p.events, Event{Kind: EventStarted, ID: spec.ID, Pool: spec.Pool})
		go p.watch(spec.ID, spec.Pool, id)
	}
	return WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "docker", Handle: id}, nil
}

// watch reports the exit of a worker container.
func (p *Docker) watch(id, pool, container string) {
	code, err := p.d.Wait(context.Background(), container)
	e := Event{Kind: EventExited, ID: id, Pool: pool, ExitCode: code}
	if err != nil {
		e.Err = err.Error()
	}
	emit(p.events, e)
}

// Terminate removes a worker container (killing the agent and its jobs).
func (p *Docker) Terminate(ctx context.Context, id string) error {
	if err := p.d.Remove(ctx, containerName(id)); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Dir(p.tlsDir(id))); err != nil {
		return fmt.Errorf("remove the certificate of worker %s: %w", id, err)
	}
	p.mu.Lock()
	_, known := p.workers[id]
	delete(p.workers, id)
	p.mu.Unlock()
	if known {
		emit(p.events, Event{Kind: EventGone, ID: id, Pool: p.pool.Name})
	}
	return nil
}

// Status inspects a worker container.
func (p *Docker) Status(ctx context.Context, id string) (WorkerStatus, error) {
	st, err := p.d.Inspect(ctx, containerName(id))
	if err != nil {
		return WorkerStatus{}, err
	}
	if !st.Exists {
		return WorkerStatus{}, ErrNotFound
	}
	ws := WorkerStatus{ID: id, Phase: PhaseRunning, Detail: st.Status}
	switch {
	case st.Status == "created":
		ws.Phase = PhaseCreating
	case !st.Running:
		ws.Phase, ws.ExitCode = PhaseExited, st.ExitCode
	}
	return ws, nil
}

// Logs copies the agent's output.
func (p *Docker) Logs(ctx context.Context, id string, w io.Writer) error {
	st, err := p.d.Inspect(ctx, containerName(id))
	if err != nil {
		return err
	}
	if !st.Exists {
		return ErrNotFound
	}
	return p.d.Logs(ctx, containerName(id), w)
}

// Capacity is what the engine's machine has left after the limits of the
// workers this provider made.
func (p *Docker) Capacity(ctx context.Context) (Capacity, error) {
	cpu, mem, err := p.d.Info(ctx)
	if err != nil {
		return Capacity{}, err
	}
	p.mu.Lock()
	for _, w := range p.workers {
		cpu -= w.cpu
		mem -= w.mem
	}
	p.mu.Unlock()
	c := Capacity{Workers: -1, CPUMilli: max(cpu, 0), Memory: max(mem, 0)}
	sh := p.pool.Shape
	if sh.CPUMilli > 0 && sh.Memory > 0 {
		c.Workers = int(min(c.CPUMilli/sh.CPUMilli, c.Memory/sh.Memory))
	}
	return c, nil
}

// Drain sends SIGUSR1 to the agent: it takes no new jobs.
func (p *Docker) Drain(ctx context.Context, id string) error {
	return p.d.Signal(ctx, containerName(id), "USR1")
}

// Events reports worker containers created, started, exited and gone.
func (p *Docker) Events() <-chan Event { return p.events }
