package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Process is the provider of a local pool in mode process: each worker
// is a `hodei agent` process on this machine, connected to the server's
// NATS over TCP, in its own process group, with its output in a log file
// of its directory (WorkDir/POOL/ID: agent.log, and work/, the agent's work
// dir).
//
// The processes are children of the server: on Linux they get SIGTERM when
// the server dies (Pdeathsig), so none outlives a server that was killed;
// a server that starts again does not adopt them, it removes the
// directories they left.
type Process struct {
	pool   poolsfile.PoolConfig
	env    workers.ProviderEnv
	binary string
	// Grace is how long Terminate waits between SIGTERM and SIGKILL.
	Grace  time.Duration
	events chan workers.Event
	// cg finds the cgroups of the agents' attempts (they are under the
	// server's own, like the agents); nil where the machine has none.
	cg *cgroup.Manager

	mu    sync.Mutex
	procs map[string]*localProc
}

type localProc struct {
	id, pool string
	dir      string // the worker's: agent.log and work/
	pid      int    // also its process group
	done     chan struct{}
	killed   atomic.Bool // Terminate had to SIGKILL the agent
	// Set before done is closed.
	exitCode int
	detail   string
}

var (
	_ workers.Provider = (*Process)(nil)
	_ workers.Drainer  = (*Process)(nil)
)

// DefaultGrace is how long a local agent process has to stop after
// SIGTERM (it cancels its jobs, whose steps get 0.5 s) before SIGKILL.
const DefaultGrace = 10 * time.Second

// agentLogFile is the output of a local agent process, in its directory.
const agentLogFile = "agent.log"

// agentEnvKeys are the variables of the server's environment that agent
// processes get; the rest of it (credentials of the server, HODEI_
// variables that would set the agent's flags) they do not.
var agentEnvKeys = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL", "DOCKER_HOST"}

// NewProcess makes the provider of a local pool in mode process. It
// removes the directories that workers of this pool left (a previous run
// of the server) and kills the steps recorded there.
func NewProcess(pool poolsfile.PoolConfig, env workers.ProviderEnv) (*Process, error) {
	if env.NATSURL == "" {
		return nil, fmt.Errorf("local workers in mode %s need the server's NATS to listen on TCP (--nats-listen): set local.mode: %s to run them inside the server",
			poolsfile.LocalModeProcess, poolsfile.LocalModeInProcess)
	}
	if env.WorkDir == "" {
		env.WorkDir = filepath.Join(os.TempDir(), "hodei-pools")
	}
	bin, err := workers.AgentBinary(pool.Local.Binary)
	if err != nil {
		return nil, fmt.Errorf("find the hodei binary for agent processes: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("hodei binary for agent processes: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("hodei binary for agent processes: %s is not an executable file", bin)
	}
	p := &Process{pool: pool, env: env, binary: bin, Grace: DefaultGrace,
		events: make(chan workers.Event, 256), procs: map[string]*localProc{}}
	// Without cgroups, the agents say so in their own logs.
	p.cg, _ = cgroup.New(cgroup.Options{})
	p.removeLeftovers()
	return p, nil
}

// removeLeftovers removes the directories of this pool's workers that a
// previous run left, after killing the process groups of steps recorded
// in them (an agent killed with SIGKILL leaves its steps' children).
func (p *Process) removeLeftovers() {
	poolDir := filepath.Join(p.env.WorkDir, p.pool.Name)
	entries, err := os.ReadDir(poolDir)
	if err != nil {
		return
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(poolDir, e.Name())
		killSteps(dir)
		p.killAttempts(e.Name(), dir)
		if err := os.RemoveAll(dir); err != nil {
			p.logWarn("remove the directory of a previous worker", "dir", dir, "err", err)
			continue
		}
		n++
	}
	if n > 0 && p.env.Logger != nil {
		p.env.Logger.Info("removed the directories of local workers of a previous run", "pool", p.pool.Name, "count", n)
	}
}

func (p *Process) logWarn(msg string, args ...any) {
	if p.env.Logger != nil {
		p.env.Logger.Warn(msg, append([]any{"pool", p.pool.Name}, args...)...)
	}
}

// killAttempts kills every process left in the cgroups of the attempts of
// worker id, whose directory is dir (an agent that dies, even by SIGKILL,
// leaves its steps' setsid daemons there) and removes the groups.
func (p *Process) killAttempts(id, dir string) {
	if p.cg == nil {
		return
	}
	n, err := p.cg.KillTree(agent.CgroupName(id, filepath.Join(dir, "work")))
	if err != nil {
		p.logWarn("kill what a worker's attempts left", "worker", id, "err", err)
	}
	if n > 0 && p.env.Logger != nil {
		p.env.Logger.Warn("killed processes a local worker's attempts left", "pool", p.pool.Name, "worker", id, "processes", n)
	}
}

// killSteps kills the process groups of steps that the agent of dir
// recorded and did not remove (it was killed mid-step).
func killSteps(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "work", "*.pgid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
}

// Binary is the hodei executable the provider runs.
func (p *Process) Binary() string { return p.binary }

func (p *Process) ref(w *localProc) workers.WorkerRef {
	return workers.WorkerRef{ID: w.id, Pool: w.pool, Provider: "local", Handle: strconv.Itoa(w.pid)}
}

// args are those of `hodei agent` for spec, whose directory is dir.
func (p *Process) args(spec workers.WorkerSpec, dir string) []string {
	docker := "off"
	if p.env.Containers != nil {
		// The server reaches an engine (and the manager gives the pool the
		// label docker): the agent finds the same one.
		docker = "auto"
	}
	args := []string{"agent",
		"--nats", p.env.NATSURL,
		"--id", spec.ID,
		"--pool", spec.Pool,
		"--work-dir", filepath.Join(dir, "work"),
		"--docker", docker,
		// Terminate is a forced stop (the manager drains a worker
		// before it ends it when it can): the agent hands its jobs back
		// at once, well within Terminate's grace, rather than waiting
		// for them.
		"--drain-timeout", "0s",
	}
	if c := spec.Resources.CPUMilli; c > 0 {
		args = append(args, "--cpu", strconv.FormatInt(c, 10)+"m")
	}
	if m := spec.Resources.Memory; m > 0 {
		args = append(args, "--memory", strconv.FormatInt(m, 10))
	}
	if g := spec.Resources.GPU; g > 0 {
		args = append(args, "--gpu", strconv.Itoa(g))
	}
	if len(spec.Labels) > 0 {
		args = append(args, "--labels", strings.Join(spec.Labels, ","))
	}
	if hb := p.env.HeartbeatInterval; hb > 0 {
		args = append(args, "--heartbeat", hb.String())
	}
	if n := p.env.ContainerNetwork; n != "" && docker == "auto" {
		args = append(args, "--container-network", n)
	}
	if spec.Ephemeral {
		args = append(args, "--once")
	}
	if p.env.NoCgroups {
		args = append(args, "--no-cgroups")
	}
	if p.env.Unisolated {
		args = append(args, "--unsafe-shared-user")
	}
	for _, h := range p.env.Hide {
		args = append(args, "--hide", h)
	}
	return args
}

// environ is the environment of an agent process: a few variables of the
// server's, then the spec's, then its secrets.
func (p *Process) environ(ctx context.Context, spec workers.WorkerSpec) ([]string, error) {
	m := map[string]string{}
	for _, k := range agentEnvKeys {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	if _, ok := m["PATH"]; !ok {
		m["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	for k, v := range spec.Env {
		m[k] = v
	}
	secrets, err := workers.SecretValues(ctx, p.env, spec.Secrets)
	if err != nil {
		return nil, err
	}
	for i, name := range spec.Secrets {
		m[name] = secrets[i]
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, nil
}

// Create starts an agent process.
func (p *Process) Create(ctx context.Context, spec workers.WorkerSpec) (workers.WorkerRef, error) {
	if !bus.ValidToken(spec.ID) || !bus.ValidToken(spec.Pool) {
		return workers.WorkerRef{}, fmt.Errorf("worker %q of pool %q: ids are letters, digits, - and _", spec.ID, spec.Pool)
	}
	env, err := p.environ(ctx, spec)
	if err != nil {
		return workers.WorkerRef{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.procs[spec.ID]; w != nil {
		return p.ref(w), nil
	}
	dir := filepath.Join(p.env.WorkDir, spec.Pool, spec.ID)
	// What a worker of the same id left is not this one's.
	if err := os.RemoveAll(dir); err != nil {
		return workers.WorkerRef{}, fmt.Errorf("worker directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o700); err != nil {
		return workers.WorkerRef{}, fmt.Errorf("worker directory: %w", err)
	}
	args := p.args(spec, dir)
	if p.env.AgentCert != nil {
		tlsDir := filepath.Join(dir, "tls")
		tlsArgs, err := workers.WriteAgentCert(p.env.AgentCert, spec.ID, tlsDir, tlsDir)
		if err != nil {
			_ = os.RemoveAll(dir)
			return workers.WorkerRef{}, err
		}
		args = append(args, tlsArgs...)
	}
	logf, err := os.OpenFile(filepath.Join(dir, agentLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		_ = os.RemoveAll(dir)
		return workers.WorkerRef{}, fmt.Errorf("worker log: %w", err)
	}
	cmd := exec.Command(p.binary, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, which Terminate signals as a whole; SIGTERM
	// when the server dies, so that the agent stops its jobs and exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	w := &localProc{id: spec.ID, pool: spec.Pool, dir: dir, done: make(chan struct{})}
	started := make(chan error, 1)
	go p.run(w, cmd, started)
	err = <-started
	logf.Close() // the child has its own descriptor
	if err != nil {
		_ = os.RemoveAll(dir)
		return workers.WorkerRef{}, fmt.Errorf("start agent %s: %w", spec.ID, err)
	}
	p.procs[spec.ID] = w
	workers.Emit(p.events, workers.Event{Kind: workers.EventCreated, ID: spec.ID, Pool: spec.Pool})
	workers.Emit(p.events, workers.Event{Kind: workers.EventStarted, ID: spec.ID, Pool: spec.Pool})
	return p.ref(w), nil
}

// run starts the agent process, waits for it and reports its exit.
func (p *Process) run(w *localProc, cmd *exec.Cmd, started chan<- error) {
	// Pdeathsig fires when the thread that started the child ends, not the
	// process: this goroutine keeps its thread until the child has exited.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	w.pid = cmd.Process.Pid
	started <- nil
	err := cmd.Wait()
	// An agent that stopped cleanly left nothing; one that was killed left
	// its attempts' processes, which go now, not when a worker of the same
	// id starts again.
	p.killAttempts(w.id, w.dir)
	// Create holds the lock until it has reported the worker: its events
	// come first.
	p.mu.Lock()
	w.exitCode, w.detail = exitOf(cmd.ProcessState, err)
	close(w.done)
	p.mu.Unlock()
	e := workers.Event{Kind: workers.EventExited, ID: w.id, Pool: w.pool, ExitCode: w.exitCode}
	if w.exitCode != 0 {
		e.Err = w.detail
	}
	workers.Emit(p.events, e)
}

// exitOf is the exit code of a process (128+N when signal N killed it) and
// a description.
func exitOf(ps *os.ProcessState, err error) (int, string) {
	if ps == nil {
		if err == nil {
			err = errors.New("no process state")
		}
		return -1, err.Error()
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), "killed by signal " + strconv.Itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
	}
	return ps.ExitCode(), ps.String()
}

// Terminate stops an agent process: SIGTERM to its process group (the
// agent cancels its jobs), SIGKILL after Grace (or when ctx ends), then it
// removes the worker's directory. A worker that is unknown or has exited
// is a success.
func (p *Process) Terminate(ctx context.Context, id string) error {
	p.mu.Lock()
	w := p.procs[id]
	p.mu.Unlock()
	if w == nil {
		return nil
	}
	if err := w.stop(ctx, p.Grace); err != nil {
		return err
	}
	if w.killed.Load() {
		killSteps(w.dir)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("remove worker directory: %w", err)
	}
	p.mu.Lock()
	known := p.procs[id] == w
	if known {
		delete(p.procs, id)
	}
	p.mu.Unlock()
	if known {
		workers.Emit(p.events, workers.Event{Kind: workers.EventGone, ID: id, Pool: w.pool})
	}
	return nil
}

// stop ends the process and what is left in its group.
func (w *localProc) stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-w.done:
	default:
		_ = syscall.Kill(-w.pid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-w.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	// The group outlives its leader while a member lives, and its id is
	// not reused until then: this reaches only what the agent left.
	select {
	case <-w.done:
		_ = syscall.Kill(-w.pid, syscall.SIGKILL)
		return nil
	default:
	}
	w.killed.Store(true)
	_ = syscall.Kill(-w.pid, syscall.SIGKILL)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return workers.Transient(fmt.Errorf("agent process %d did not exit after SIGKILL", w.pid))
	}
}

// Status is running until the process has exited, then exited with its
// exit code.
func (p *Process) Status(_ context.Context, id string) (workers.WorkerStatus, error) {
	p.mu.Lock()
	w := p.procs[id]
	p.mu.Unlock()
	if w == nil {
		return workers.WorkerStatus{}, workers.ErrNotFound
	}
	select {
	case <-w.done:
		return workers.WorkerStatus{ID: id, Phase: workers.PhaseExited, ExitCode: w.exitCode, Detail: w.detail}, nil
	default:
		return workers.WorkerStatus{ID: id, Phase: workers.PhaseRunning, Detail: "pid " + strconv.Itoa(w.pid)}, nil
	}
}

// Logs copies the agent's log file (its stdout and stderr).
func (p *Process) Logs(_ context.Context, id string, out io.Writer) error {
	p.mu.Lock()
	w := p.procs[id]
	p.mu.Unlock()
	if w == nil {
		return workers.ErrNotFound
	}
	f, err := os.Open(filepath.Join(w.dir, agentLogFile))
	if errors.Is(err, os.ErrNotExist) {
		return workers.ErrNotFound // terminated meanwhile
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(out, f)
	return err
}

// Capacity: as many agents as asked; they share this machine.
func (p *Process) Capacity(context.Context) (workers.Capacity, error) {
	return workers.Capacity{Workers: -1, CPUMilli: -1, Memory: -1}, nil
}

// Drain sends SIGUSR1 to the agent: it takes no new jobs.
func (p *Process) Drain(_ context.Context, id string) error {
	p.mu.Lock()
	w := p.procs[id]
	p.mu.Unlock()
	if w == nil {
		return workers.ErrNotFound
	}
	select {
	case <-w.done:
		return nil
	default:
	}
	if err := syscall.Kill(w.pid, syscall.SIGUSR1); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("drain agent process %d: %w", w.pid, err)
	}
	return nil
}

// Events reports agent processes created, started, exited and gone.
func (p *Process) Events() <-chan workers.Event { return p.events }
