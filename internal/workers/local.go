package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Local is the provider of a local pool in mode inprocess: agents that run
// inside this process, each with its own NATS connection and work dir (the
// fake that makes pools testable without an engine). Mode process, the
// default of `hodei server`, is LocalProcess: `hodei agent` processes.
type Local struct {
	pool   poolsfile.PoolConfig
	env    ProviderEnv
	events chan Event

	mu     sync.Mutex
	agents map[string]*localAgent
}

type localAgent struct {
	a       *agent.Agent
	cancel  context.CancelFunc
	done    chan struct{}
	workDir string
	err     error
}

var (
	_ Provider = (*Local)(nil)
	_ Drainer  = (*Local)(nil)
)

// NewLocal makes the provider of a local pool (a Factory): LocalProcess for
// mode process, Local for mode inprocess or none.
func NewLocal(pool poolsfile.PoolConfig, env ProviderEnv) (Provider, error) {
	if env.WorkDir == "" {
		env.WorkDir = filepath.Join(os.TempDir(), "hodei-pools")
	}
	switch pool.Local.Mode {
	case poolsfile.LocalModeProcess:
		lp, err := NewLocalProcess(pool, env)
		if err != nil {
			return nil, err
		}
		return lp, nil
	case "", poolsfile.LocalModeInProcess:
	default:
		return nil, fmt.Errorf("unknown local mode %q; want %s or %s", pool.Local.Mode, poolsfile.LocalModeProcess, poolsfile.LocalModeInProcess)
	}
	if env.Connect == nil {
		return nil, errors.New("local workers need an in-process NATS connection")
	}
	return &Local{pool: pool, env: env, events: make(chan Event, 256), agents: map[string]*localAgent{}}, nil
}

// Create starts an agent.
func (l *Local) Create(ctx context.Context, spec WorkerSpec) (WorkerRef, error) {
	ref := WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "local", Handle: spec.ID}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.agents[spec.ID]; ok {
		return ref, nil
	}
	nc, err := l.env.Connect(spec.ID)
	if err != nil {
		return WorkerRef{}, Transient(fmt.Errorf("connect agent %s: %w", spec.ID, err))
	}
	workDir := filepath.Join(l.env.WorkDir, spec.Pool, spec.ID)
	labels := append(agent.DefaultLabels(), spec.Labels...)
	a, err := agent.New(nc, agent.Config{
		ID:                spec.ID,
		Pool:              spec.Pool,
		Labels:            labels,
		CPUMilli:          spec.Resources.CPUMilli,
		Memory:            spec.Resources.Memory,
		GPU:               spec.Resources.GPU,
		WorkDir:           workDir,
		HeartbeatInterval: l.env.HeartbeatInterval,
		Once:              spec.Ephemeral,
		Containers:        l.env.Containers,
		ContainerNetwork:  l.env.ContainerNetwork,
		NoCgroups:         l.env.NoCgroups,
		Logger:            l.env.Logger,
		Unisolated:        l.env.Unisolated,
		Hide:              l.env.Hide,
	})
	if err != nil {
		nc.Close()
		return WorkerRef{}, err
	}
	actx, cancel := context.WithCancel(context.Background())
	la := &localAgent{a: a, cancel: cancel, done: make(chan struct{}), workDir: workDir}
	l.agents[spec.ID] = la
	emit(l.events, Event{Kind: EventCreated, ID: spec.ID, Pool: spec.Pool})
	go func() {
		defer close(la.done)
		defer nc.Close()
		emit(l.events, Event{Kind: EventStarted, ID: spec.ID, Pool: spec.Pool})
		la.err = a.Run(actx)
		e := Event{Kind: EventExited, ID: spec.ID, Pool: spec.Pool}
		if la.err != nil {
			e.Err, e.ExitCode = la.err.Error(), 1
		}
		emit(l.events, e)
	}()
	return ref, nil
}

// Terminate stops an agent (its running jobs are canceled) and removes its
// work dir.
func (l *Local) Terminate(ctx context.Context, id string) error {
	l.mu.Lock()
	la := l.agents[id]
	l.mu.Unlock()
	if la == nil {
		return nil
	}
	la.cancel()
	select {
	case <-la.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	delete(l.agents, id)
	l.mu.Unlock()
	if err := os.RemoveAll(la.workDir); err != nil {
		return fmt.Errorf("remove work dir: %w", err)
	}
	emit(l.events, Event{Kind: EventGone, ID: id, Pool: l.pool.Name})
	return nil
}

// Status says whether an agent runs.
func (l *Local) Status(_ context.Context, id string) (WorkerStatus, error) {
	l.mu.Lock()
	la := l.agents[id]
	l.mu.Unlock()
	if la == nil {
		return WorkerStatus{}, ErrNotFound
	}
	select {
	case <-la.done:
		st := WorkerStatus{ID: id, Phase: PhaseExited}
		if la.err != nil {
			st.ExitCode, st.Detail = 1, la.err.Error()
		}
		return st, nil
	default:
		return WorkerStatus{ID: id, Phase: PhaseRunning}, nil
	}
}

// Logs: in-process agents log to the server's log.
func (l *Local) Logs(_ context.Context, id string, w io.Writer) error {
	if _, err := l.Status(context.Background(), id); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "worker %s runs inside the server: its messages are in the server's log (worker=%s)\n", id, id)
	return err
}

// Capacity: as many agents as asked; they share this machine.
func (l *Local) Capacity(context.Context) (Capacity, error) {
	return Capacity{Workers: -1, CPUMilli: -1, Memory: -1}, nil
}

// Drain tells an agent to take no new jobs.
func (l *Local) Drain(_ context.Context, id string) error {
	l.mu.Lock()
	la := l.agents[id]
	l.mu.Unlock()
	if la == nil {
		return ErrNotFound
	}
	la.a.Drain()
	return nil
}

// Events reports agents created, started, exited and gone.
func (l *Local) Events() <-chan Event { return l.events }
