// Package local is the provider of local pools (`provider: local`): workers
// on the server's own machine. In mode process (Process) each worker is a
// `hodei agent` process, child of the server; in mode inprocess
// (InProcess) each is an agent inside the server's process, the fake that
// makes pools testable without an engine. New picks one by the pool's
// local.mode.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// InProcess is the provider of a local pool in mode inprocess: agents that run
// inside this process, each with its own NATS connection and work dir (the
// fake that makes pools testable without an engine). Mode process, the
// default of `hodei server`, is Process: `hodei agent` processes.
type InProcess struct {
	pool   poolsfile.PoolConfig
	env    workers.ProviderEnv
	events chan workers.Event

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
	_ workers.Provider = (*InProcess)(nil)
	_ workers.Drainer  = (*InProcess)(nil)
)

// New makes the provider of a local pool (a Factory): Process for
// mode process, InProcess for mode inprocess or none.
func New(pool poolsfile.PoolConfig, env workers.ProviderEnv) (workers.Provider, error) {
	if env.WorkDir == "" {
		env.WorkDir = filepath.Join(os.TempDir(), "hodei-pools")
	}
	switch pool.Local.Mode {
	case poolsfile.LocalModeProcess:
		lp, err := NewProcess(pool, env)
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
	return &InProcess{pool: pool, env: env, events: make(chan workers.Event, 256), agents: map[string]*localAgent{}}, nil
}

// Create starts an agent.
func (l *InProcess) Create(ctx context.Context, spec workers.WorkerSpec) (workers.WorkerRef, error) {
	ref := workers.WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "local", Handle: spec.ID}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.agents[spec.ID]; ok {
		return ref, nil
	}
	nc, err := l.env.Connect(spec.ID)
	if err != nil {
		return workers.WorkerRef{}, workers.Transient(fmt.Errorf("connect agent %s: %w", spec.ID, err))
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
		return workers.WorkerRef{}, err
	}
	actx, cancel := context.WithCancel(context.Background())
	la := &localAgent{a: a, cancel: cancel, done: make(chan struct{}), workDir: workDir}
	l.agents[spec.ID] = la
	workers.Emit(l.events, workers.Event{Kind: workers.EventCreated, ID: spec.ID, Pool: spec.Pool})
	go func() {
		defer close(la.done)
		defer nc.Close()
		workers.Emit(l.events, workers.Event{Kind: workers.EventStarted, ID: spec.ID, Pool: spec.Pool})
		la.err = a.Run(actx)
		e := workers.Event{Kind: workers.EventExited, ID: spec.ID, Pool: spec.Pool}
		if la.err != nil {
			e.Err, e.ExitCode = la.err.Error(), 1
		}
		workers.Emit(l.events, e)
	}()
	return ref, nil
}

// Terminate stops an agent (its running jobs are canceled) and removes its
// work dir.
func (l *InProcess) Terminate(ctx context.Context, id string) error {
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
	workers.Emit(l.events, workers.Event{Kind: workers.EventGone, ID: id, Pool: l.pool.Name})
	return nil
}

// Status says whether an agent runs.
func (l *InProcess) Status(_ context.Context, id string) (workers.WorkerStatus, error) {
	l.mu.Lock()
	la := l.agents[id]
	l.mu.Unlock()
	if la == nil {
		return workers.WorkerStatus{}, workers.ErrNotFound
	}
	select {
	case <-la.done:
		st := workers.WorkerStatus{ID: id, Phase: workers.PhaseExited}
		if la.err != nil {
			st.ExitCode, st.Detail = 1, la.err.Error()
		}
		return st, nil
	default:
		return workers.WorkerStatus{ID: id, Phase: workers.PhaseRunning}, nil
	}
}

// Logs: in-process agents log to the server's log.
func (l *InProcess) Logs(_ context.Context, id string, w io.Writer) error {
	if _, err := l.Status(context.Background(), id); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "worker %s runs inside the server: its messages are in the server's log (worker=%s)\n", id, id)
	return err
}

// Capacity: as many agents as asked; they share this machine.
func (l *InProcess) Capacity(context.Context) (workers.Capacity, error) {
	return workers.Capacity{Workers: -1, CPUMilli: -1, Memory: -1}, nil
}

// Drain tells an agent to take no new jobs.
func (l *InProcess) Drain(_ context.Context, id string) error {
	l.mu.Lock()
	la := l.agents[id]
	l.mu.Unlock()
	if la == nil {
		return workers.ErrNotFound
	}
	la.a.Drain()
	return nil
}

// Events reports agents created, started, exited and gone.
func (l *InProcess) Events() <-chan workers.Event { return l.events }
