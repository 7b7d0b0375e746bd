// Package docker is the provider of docker pools (`provider: docker`):
// each worker is a container running `hodei agent`, made through the
// Docker Engine client of internal/containers.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Provider is the provider of worker containers: each worker is a container
// of the pool's image running the hodei binary (mounted read-only from the
// server's machine) as `hodei agent`, connected to the server's NATS, with
// the pool's shape as its cpu and memory limits. The container removes
// itself when the agent exits; Terminate removes it at once. After a
// restart of the server (the same Owner), List finds the worker containers
// the previous run left, by label, and the Manager adopts the live ones.
type Provider struct {
	pool   poolsfile.PoolConfig
	env    workers.ProviderEnv
	d      *dockerengine.Docker
	binary string
	events chan workers.Event

	mu      sync.Mutex
	workers map[string]*dockerWorker
}

type dockerWorker struct {
	container string
	cpu, mem  int64
}

var (
	_ workers.Provider = (*Provider)(nil)
	_ workers.Drainer  = (*Provider)(nil)
	_ workers.Lister   = (*Provider)(nil)
)

// agentBinary is where the hodei binary is mounted in worker containers.
const agentBinary = "/hodei/hodei"

// New makes the provider of a docker pool (a Factory).
func New(pool poolsfile.PoolConfig, env workers.ProviderEnv) (workers.Provider, error) {
	if env.NATSURL == "" {
		return nil, errors.New("docker workers need the server's NATS to listen on TCP (--nats-listen)")
	}
	bin, err := workers.AgentBinary(pool.Docker.Binary)
	if err != nil {
		return nil, fmt.Errorf("find the hodei binary to mount: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("hodei binary for worker containers: %w", err)
	}
	d, err := dockerengine.NewDocker(pool.Docker.Host)
	if err != nil {
		return nil, err
	}
	p := &Provider{pool: pool, env: env, d: d, binary: bin, events: make(chan workers.Event, 256), workers: map[string]*dockerWorker{}}
	return p, nil
}

// List returns the worker containers of this pool made by this server (the
// same Owner), a previous run's included, found by label, and makes them
// this provider's own: the exit of a running one is reported, Terminate
// removes them. A container that was created and never started (the
// server stopped in between) is reported exited: nothing would start it.
func (p *Provider) List(ctx context.Context) ([]workers.ListedWorker, error) {
	if p.env.Owner == "" {
		return nil, nil
	}
	ids, err := p.d.ListLabelled(ctx, containers.LabelOwner, p.owner())
	if err != nil {
		return nil, err
	}
	out := make([]workers.ListedWorker, 0, len(ids))
	for _, cid := range ids {
		st, err := p.d.Inspect(ctx, cid)
		if err != nil {
			return nil, err
		}
		id := st.Labels[containers.LabelWorker]
		if !st.Exists || id == "" || st.Labels[containers.LabelPool] != p.pool.Name {
			continue
		}
		ws := workers.WorkerStatus{ID: id, Phase: workers.PhaseRunning, Detail: st.Status}
		switch {
		case st.Running:
		case st.Status == "created":
			ws.Phase, ws.Detail = workers.PhaseExited, "created, never started"
		default:
			ws.Phase, ws.ExitCode = workers.PhaseExited, st.ExitCode
		}
		out = append(out, workers.ListedWorker{Ref: workers.WorkerRef{ID: id, Pool: p.pool.Name, Provider: "docker", Handle: cid}, Status: ws})
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

func (p *Provider) owner() string { return p.env.Owner + "." + p.pool.Name }

func containerName(id string) string { return "hodei-worker-" + id }

// agentTLSDir is where a worker container sees its agent's certificate.
const agentTLSDir = "/run/hodei-tls"

// tlsDir is the host directory of worker id's certificate (with
// ProviderEnv.AgentCert), removed with the worker.
func (p *Provider) tlsDir(id string) string {
	return filepath.Join(p.env.WorkDir, "docker", p.pool.Name, id, "tls")
}

// Create starts a worker container.
func (p *Provider) Create(ctx context.Context, spec workers.WorkerSpec) (workers.WorkerRef, error) {
	image := spec.Image
	if image == "" {
		image = p.pool.Docker.Image
	}
	args := workers.WalledAgentArgs(agentBinary, "/tmp/hodei-work", spec, p.env)
	env := make([]string, 0, len(spec.Env)+len(spec.Secrets))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	secrets, err := workers.SecretValues(ctx, p.env, spec.Secrets)
	if err != nil {
		return workers.WorkerRef{}, err
	}
	for i, name := range spec.Secrets {
		env = append(env, name+"="+secrets[i])
	}
	sort.Strings(env)
	binds := []string{p.binary + ":" + agentBinary + ":ro"}
	if p.env.AgentCert != nil {
		// The agent's certificate, on the host, mounted read-only.
		// Files are rewritten in place: a container of a Create retried
		// after a timeout keeps its mount.
		dir := p.tlsDir(spec.ID)
		tlsArgs, err := workers.WriteAgentCert(p.env.AgentCert, spec.ID, dir, agentTLSDir)
		if err != nil {
			return workers.WorkerRef{}, err
		}
		args = append(args, tlsArgs...)
		binds = append(binds, dir+":"+agentTLSDir+":ro")
	}
	id, err := p.d.RunWorker(ctx, dockerengine.WorkerSpec{
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
		return workers.WorkerRef{}, err
	}
	p.mu.Lock()
	_, known := p.workers[spec.ID]
	p.workers[spec.ID] = &dockerWorker{container: id, cpu: spec.Resources.CPUMilli, mem: spec.Resources.Memory}
	p.mu.Unlock()
	if !known {
		workers.Emit(p.events, workers.Event{Kind: workers.EventCreated, ID: spec.ID, Pool: spec.Pool})
		workers.Emit(p.events, workers.Event{Kind: workers.EventStarted, ID: spec.ID, Pool: spec.Pool})
		go p.watch(spec.ID, spec.Pool, id)
	}
	return workers.WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "docker", Handle: id}, nil
}

// watch reports the exit of a worker container.
func (p *Provider) watch(id, pool, container string) {
	code, err := p.d.Wait(context.Background(), container)
	e := workers.Event{Kind: workers.EventExited, ID: id, Pool: pool, ExitCode: code}
	if err != nil {
		e.Err = err.Error()
	}
	workers.Emit(p.events, e)
}

// Terminate removes a worker container (killing the agent and its jobs).
func (p *Provider) Terminate(ctx context.Context, id string) error {
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
		workers.Emit(p.events, workers.Event{Kind: workers.EventGone, ID: id, Pool: p.pool.Name})
	}
	return nil
}

// Status inspects a worker container.
func (p *Provider) Status(ctx context.Context, id string) (workers.WorkerStatus, error) {
	st, err := p.d.Inspect(ctx, containerName(id))
	if err != nil {
		return workers.WorkerStatus{}, err
	}
	if !st.Exists {
		return workers.WorkerStatus{}, workers.ErrNotFound
	}
	ws := workers.WorkerStatus{ID: id, Phase: workers.PhaseRunning, Detail: st.Status}
	switch {
	case st.Status == "created":
		ws.Phase = workers.PhaseCreating
	case !st.Running:
		ws.Phase, ws.ExitCode = workers.PhaseExited, st.ExitCode
	}
	return ws, nil
}

// Logs copies the agent's output.
func (p *Provider) Logs(ctx context.Context, id string, w io.Writer) error {
	st, err := p.d.Inspect(ctx, containerName(id))
	if err != nil {
		return err
	}
	if !st.Exists {
		return workers.ErrNotFound
	}
	return p.d.Logs(ctx, containerName(id), w)
}

// Capacity is what the engine's machine has left after the limits of the
// workers this provider made.
func (p *Provider) Capacity(ctx context.Context) (workers.Capacity, error) {
	cpu, mem, err := p.d.Info(ctx)
	if err != nil {
		return workers.Capacity{}, err
	}
	p.mu.Lock()
	for _, w := range p.workers {
		cpu -= w.cpu
		mem -= w.mem
	}
	p.mu.Unlock()
	c := workers.Capacity{Workers: -1, CPUMilli: max(cpu, 0), Memory: max(mem, 0)}
	sh := p.pool.Shape
	if sh.CPUMilli > 0 && sh.Memory > 0 {
		c.Workers = int(min(c.CPUMilli/sh.CPUMilli, c.Memory/sh.Memory))
	}
	return c, nil
}

// Drain sends SIGUSR1 to the agent: it takes no new jobs.
func (p *Provider) Drain(ctx context.Context, id string) error {
	return p.d.Signal(ctx, containerName(id), "USR1")
}

// Events reports worker containers created, started, exited and gone.
func (p *Provider) Events() <-chan workers.Event { return p.events }
