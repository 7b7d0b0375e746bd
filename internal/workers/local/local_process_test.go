package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/proctest"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/local"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// The hodei binary that local worker processes run, built once per test
// binary (by the first test that needs it) and removed by TestMain.
var (
	hodeiOnce  sync.Once
	hodeiDir   string
	hodeiBin   string
	hodeiErr   error
	hodeiBuild time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	if hodeiDir != "" {
		_ = os.RemoveAll(hodeiDir)
	}
	os.Exit(code)
}

// hodeiBinary builds cmd/hodei (without -race: it is the agent, not under
// test here) and returns its path.
func hodeiBinary(t *testing.T) string {
	t.Helper()
	hodeiOnce.Do(func() {
		start := time.Now()
		if hodeiDir, hodeiErr = os.MkdirTemp("", "hodei-workers-bin"); hodeiErr != nil {
			return
		}
		hodeiBin = filepath.Join(hodeiDir, "hodei")
		out, err := exec.Command("go", "build", "-o", hodeiBin, "github.com/hodei-ci/hodei/cmd/hodei").CombinedOutput()
		if err != nil {
			hodeiErr = fmt.Errorf("go build cmd/hodei: %v\n%s", err, out)
		}
		hodeiBuild = time.Since(start)
	})
	if hodeiErr != nil {
		t.Fatal(hodeiErr)
	}
	t.Logf("hodei binary %s (built in %s)", hodeiBin, hodeiBuild.Round(time.Millisecond))
	return hodeiBin
}

// pidPattern matches NAME=PID (name) in a job's output.
func pidPattern(name string) *regexp.Regexp {
	return regexp.MustCompile(`\b` + name + `=(\d+)\b`)
}

// pidIn reads NAME=PID from a job's output.
func pidIn(t *testing.T, out, name string) int {
	t.Helper()
	m := pidPattern(name).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s=PID in the job's output:\n%s", name, out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// stepStarts submits a job of one step, script, to the workers labelled
// label, and waits until the step has printed NAME=PID (name) of a process
// it started: the step runs in an agent process and its log is only seen
// through the server, so it is polled. It returns the run's ID, that pid
// and the job's log so far; the process is killed when the test ends if it is still
// alive (the test failed: leave nothing behind).
func stepStarts(t *testing.T, s *server.Server, label, script, name string) (runID string, pid int, log string) {
	t.Helper()
	run := workerstest.Submit(t, s, "name: t\njobs:\n  j:\n    runs-on: {labels: ["+label+"], cpu: 1}\n    steps: [{run: '"+script+"'}]\n")
	var out string
	workerstest.WaitFor(t, 60*time.Second, "the step to start its "+name, func() bool {
		out = workerstest.LogsOf(t, s, workerstest.JobByKey(t, s, run.ID, "j").ID)
		// NAME=PID, not just NAME=: the log's step header quotes the
		// script, which says NAME= too.
		return pidPattern(name).MatchString(out)
	})
	pid = pidIn(t, out, name)
	t.Cleanup(func() {
		if proctest.Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return run.ID, pid, out
}

// processServer starts a server whose NATS listens on a loopback port, with
// the pools of poolsYAML; workDir is where pool workers have their
// directories (workDir/pools/POOL/ID).
func processServer(t *testing.T, poolsYAML, workDir string) *server.Server {
	return startServer(t, poolsYAML, 0, func(o *server.Options) {
		o.NATSListen = "" // a random loopback port
		o.Docker = "off"
		o.WorkDir = workDir
		// The steps of these tests look at their agent process
		// ($PPID, /proc/$PPID/cmdline): only an unisolated step can.
		o.UnsafeSharedUser = true
	})
}

// directProcess makes a provider of mode process for a pool, name, of one
// worker that the test drives itself (no manager), and returns it with the
// spec of that worker (name-1, 1 cpu, 256Mi, labelled name). Its agents
// join s, work in workDir and run steps unisolated, as the agent process's
// own children.
func directProcess(t *testing.T, s *server.Server, name, workDir string) (*local.Process, workers.WorkerSpec) {
	t.Helper()
	p, err := local.NewProcess(poolsfile.PoolConfig{Name: name, Provider: "local", Max: 1,
		Local: poolsfile.LocalOptions{Mode: poolsfile.LocalModeProcess, Binary: hodeiBinary(t)}},
		workers.ProviderEnv{NATSURL: s.NATSURL, WorkDir: workDir, HeartbeatInterval: 100 * time.Millisecond, Logger: workerstest.Logger(), Unisolated: true})
	if err != nil {
		t.Fatal(err)
	}
	return p, workers.WorkerSpec{ID: name + "-1", Pool: name, Labels: []string{name},
		Resources: workers.Resources{CPUMilli: 1000, Memory: 256 << 20}}
}

// probeJob is a pipeline of one job for label that prints the agent's pid
// (the step's shell is its child) and its command line.
func probeJob(label string) string {
	return `name: probe
jobs:
  j:
    runs-on: {labels: [` + label + `], cpu: 1}
    steps:
      - run: |
          echo "agent=$PPID worker=$HODEI_WORKER"
          echo "cmdline $(tr '\0' ' ' < /proc/$PPID/cmdline)"
`
}

// runProbe runs probeJob(label), fails the test unless it succeeds, and
// returns the job's worker, its output and its agent's pid.
func runProbe(t *testing.T, s *server.Server, label string) (worker, out string, agentPID int) {
	t.Helper()
	run := workerstest.Submit(t, s, probeJob(label))
	r, jobs := workerstest.WaitRun(t, s, run.ID, 90*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v", r.State, jobs)
	}
	out = workerstest.LogsOf(t, s, jobs["j"].ID)
	return jobs["j"].WorkerID, out, pidIn(t, out, "agent")
}

// TestLocalProcessPoolScales checks a local pool in mode process with min
// 0: a queued job makes the manager start a `hodei agent` process, which
// runs it; once idle for idle_timeout the worker is drained and terminated,
// its process and directory gone, and the pool is back to 0.
func TestLocalProcessPoolScales(t *testing.T) {
	bin := hodeiBinary(t)
	workDir := t.TempDir()
	s := processServer(t, `
pools:
  procs:
    provider: local
    min: 0
    max: 2
    idle_timeout: 1s
    shape: {cpu: 1, memory: 256Mi, labels: [procs]}
    local: {mode: process, binary: "`+bin+`"}
`, workDir)
	if st := workerstest.PoolStatus(s, "procs"); st.Size != 0 {
		t.Fatalf("pool with min 0 has %d workers before any job", st.Size)
	}
	start := time.Now()
	worker, out, pid := runProbe(t, s, "procs")
	firstJob := time.Since(start)
	if pid == os.Getpid() {
		t.Fatalf("the job ran in the test's own process (pid %d)", pid)
	}
	for _, want := range []string{bin + " agent ", "--id " + worker + " ", "--pool procs ", "--heartbeat 100ms", "worker=" + worker} {
		if !strings.Contains(out, want) {
			t.Errorf("the agent's command line lacks %q:\n%s", want, out)
		}
	}
	dir := filepath.Join(workDir, "pools", "procs", worker)
	if _, err := os.Stat(filepath.Join(dir, "agent.log")); err != nil {
		t.Errorf("worker log: %v", err)
	}
	t.Logf("submit to run succeeded on a new agent process: %s", firstJob.Round(time.Millisecond))

	idleFrom := time.Now()
	workerstest.WaitFor(t, 60*time.Second, "the pool to shrink back to 0", func() bool {
		return workerstest.PoolStatus(s, "procs").Size == 0
	})
	workerstest.WaitFor(t, 5*time.Second, "the agent process to be gone", func() bool { return !proctest.Alive(pid) })
	t.Logf("run end to pool at 0 and process %d gone (idle_timeout 1s): %s", pid, time.Since(idleFrom).Round(time.Millisecond))
	waitGone(t, dir, "the worker's directory")
}

// TestLocalProcessEphemeralPool checks an ephemeral pool in mode process:
// the agent process takes its one job and exits by itself (idle_timeout is
// a minute, so nothing else removes it), and the worker is removed.
func TestLocalProcessEphemeralPool(t *testing.T) {
	bin := hodeiBinary(t)
	workDir := t.TempDir()
	s := processServer(t, `
pools:
  once:
    provider: local
    min: 0
    max: 2
    ephemeral: true
    idle_timeout: 1m
    shape: {cpu: 1, memory: 256Mi, labels: [once]}
    local: {mode: process, binary: "`+bin+`"}
`, workDir)
	worker, out, pid := runProbe(t, s, "once")
	if !strings.Contains(out, " --once") {
		t.Errorf("the ephemeral agent runs without --once:\n%s", out)
	}
	done := time.Now()
	workerstest.WaitFor(t, 40*time.Second, "the ephemeral agent process to exit", func() bool { return !proctest.Alive(pid) })
	workerstest.WaitFor(t, 40*time.Second, "the ephemeral worker to be removed", func() bool {
		return workerstest.PoolStatus(s, "once").Size == 0
	})
	t.Logf("run end to ephemeral worker removed: %s", time.Since(done).Round(time.Millisecond))
	waitGone(t, filepath.Join(workDir, "pools", "once", worker), "the worker's directory")
}

// TestLocalProcessTerminate drives the provider directly: Create (twice:
// one process), Status, Logs, and Terminate of a worker running a step
// that left a child sleeping: the agent, the step and its child are gone,
// with the events created, started, exited (exit code 0: the agent stopped
// on SIGTERM) and gone. Terminate again, and of an unknown worker, succeed.
func TestLocalProcessTerminate(t *testing.T) {
	s := processServer(t, "", t.TempDir())
	workDir := t.TempDir()
	p, spec := directProcess(t, s, "direct", workDir) // unisolated: the step reports its agent's pid
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	created := time.Now()
	ref, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Terminate(context.Background(), spec.ID) })
	ref2, err := p.Create(ctx, spec)
	if err != nil || ref2 != ref {
		t.Fatalf("second Create: %+v, %v; want %+v", ref2, err, ref)
	}
	agentPID, _ := strconv.Atoi(ref.Handle)
	if agentPID <= 0 || !proctest.Alive(agentPID) {
		t.Fatalf("handle %q is no live process", ref.Handle)
	}
	if pgid, err := syscall.Getpgid(agentPID); err != nil || pgid != agentPID {
		t.Errorf("agent process group %d (%v), want its own (%d)", pgid, err, agentPID)
	}
	workerstest.WaitFor(t, 40*time.Second, "the agent process to join", func() bool {
		return workerstest.PoolWorkers(s, "direct")["idle"] == 1
	})
	t.Logf("Create to the agent process idle in the server's view: %s", time.Since(created).Round(time.Millisecond))
	if st, err := p.Status(ctx, "direct-1"); err != nil || st.Phase != workers.PhaseRunning {
		t.Errorf("status %+v, %v; want running", st, err)
	}

	runID, child, out := stepStarts(t, s, "direct", `sleep 300 & echo "child=$! agent=$PPID"; wait`, "child")
	if got := pidIn(t, out, "agent"); got != agentPID {
		t.Fatalf("the step ran under process %d, want the agent %d", got, agentPID)
	}
	if !proctest.Alive(child) {
		t.Fatalf("the step's child %d is not running", child)
	}
	var logs bytes.Buffer
	if err := p.Logs(ctx, "direct-1", &logs); err != nil || !strings.Contains(logs.String(), "hodei agent started") {
		t.Errorf("Logs: %v\n%s", err, logs.String())
	}

	stopping := time.Now()
	if err := p.Terminate(ctx, "direct-1"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	t.Logf("Terminate of a busy agent process: %s", time.Since(stopping).Round(time.Millisecond))
	if proctest.Alive(agentPID) {
		t.Errorf("agent process %d still runs after Terminate", agentPID)
	}
	workerstest.WaitFor(t, 5*time.Second, "the step's child to be gone", func() bool { return !proctest.Alive(child) })
	if _, err := os.Stat(filepath.Join(workDir, "direct", "direct-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the worker's directory is still there: %v", err)
	}
	if _, err := p.Status(ctx, "direct-1"); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("Status after Terminate: %v, want ErrNotFound", err)
	}
	if err := p.Logs(ctx, "direct-1", &logs); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("Logs after Terminate: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"direct-1", "never-made"} {
		if err := p.Terminate(ctx, id); err != nil {
			t.Errorf("Terminate %s again: %v", id, err)
		}
	}

	var kinds []string
	for len(kinds) < 4 {
		select {
		case e := <-p.Events():
			kinds = append(kinds, string(e.Kind))
			if e.Kind == workers.EventExited && (e.ExitCode != 0 || e.Err != "") {
				t.Errorf("exit event %+v, want exit code 0 (the agent stops on SIGTERM)", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %v, want 4", kinds)
		}
	}
	if got := strings.Join(kinds, ","); got != "created,started,exited,gone" {
		t.Errorf("events %s, want created,started,exited,gone", got)
	}
	// The job was handed back: an infrastructure loss, not a failure. Its
	// attempt is recorded lost, and it waits for another worker.
	workerstest.WaitFor(t, 60*time.Second, "the job to be handed back", func() bool {
		j := workerstest.JobByKey(t, s, runID, "j")
		t.Logf("job %s attempt %d worker %s", j.State, j.Attempt, j.WorkerID)
		return j.State == state.JobQueued
	})
	atts, err := s.Store.ListAttempts(ctx, workerstest.JobByKey(t, s, runID, "j").ID)
	if err != nil || len(atts) != 1 || atts[0].State != state.AttemptLost || atts[0].Reason != orchestrator.LostHandedBack {
		t.Errorf("attempts of the terminated worker's job: %+v, %v; want one lost: handed back", atts, err)
	}
}

// TestLocalProcessDiesWithServer runs `hodei server` with a local pool that
// names no mode: the server makes it process, so its worker is a `hodei
// agent` child process; killing the server with SIGKILL ends the agent too
// (Pdeathsig).
func TestLocalProcessDiesWithServer(t *testing.T) {
	bin := hodeiBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	pools := filepath.Join(dir, "pools.yaml")
	if err := os.WriteFile(pools, []byte("pools:\n  keep:\n    provider: local\n    min: 1\n    max: 1\n    shape: {cpu: 1, memory: 256Mi}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "server", "--data-dir", dataDir, "--http=", "--nats-listen", "127.0.0.1:0",
		"--workers", "0", "--auth", "off", "--pools", pools)
	srv.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var serverOut bytes.Buffer
	srv.Stdout, srv.Stderr = &serverOut, &serverOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		<-exited
	})

	// The agent: a process whose command line names the server's data dir.
	var agentPID int
	workerstest.WaitFor(t, 80*time.Second, "the pool's agent process", func() bool {
		agentPID = findProcess(" agent ", dataDir)
		return agentPID > 0
	})
	t.Cleanup(func() {
		if proctest.Alive(agentPID) { // the test failed: leave nothing behind
			_ = syscall.Kill(-agentPID, syscall.SIGKILL)
		}
	})
	if ppid := parentOf(agentPID); ppid != srv.Process.Pid {
		t.Errorf("agent %d has parent %d, want the server %d", agentPID, ppid, srv.Process.Pid)
	}
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	workerstest.WaitFor(t, 40*time.Second, "the agent to die with the server", func() bool { return !proctest.Alive(agentPID) })
	t.Logf("server SIGKILLed to its agent process gone: %s", time.Since(killed).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("server output:\n%s", serverOut.String())
	}
}

// findProcess returns a live process whose command line holds every part.
func findProcess(parts ...string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, p := range parts {
			all = all && strings.Contains(cmd, p)
		}
		if all && proctest.Alive(pid) {
			return pid
		}
	}
	return 0
}

// parentOf is the parent pid of a process (0 if unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestLocalProcessAgentsOverMutualTLS: with a NATS that requires client
// certificates, the server issues each agent process a certificate of its
// own (its worker id as identity), and the agent joins and runs a job with
// it; the files are private to the worker and go with it.
func TestLocalProcessAgentsOverMutualTLS(t *testing.T) {
	bin := hodeiBinary(t)
	ca, natsTLS := workerstest.MutualTLS(t)
	workDir := t.TempDir()
	s := startServer(t, `
pools:
  secure:
    provider: local
    min: 0
    max: 1
    idle_timeout: 1s
    shape: {cpu: 1, memory: 256Mi, labels: [secure]}
    local: {mode: process, binary: "`+bin+`"}
`, 0, func(o *server.Options) {
		o.NATSListen, o.NATSTLS, o.AgentCA = "", natsTLS, ca
		o.Docker = "off"
		o.WorkDir = workDir
		o.UnsafeSharedUser = true // the probe job reads its agent's command line
	})
	worker, out, _ := runProbe(t, s, "secure")
	tlsDir := filepath.Join(workDir, "pools", "secure", worker, "tls")
	for _, want := range []string{"--tls-cert " + filepath.Join(tlsDir, "agent.crt"), "--tls-key " + filepath.Join(tlsDir, "agent.key"), "--ca " + filepath.Join(tlsDir, "ca.crt")} {
		if !strings.Contains(out, want) {
			t.Errorf("the agent's command line lacks %q:\n%s", want, out)
		}
	}
	cert, err := pki.ReadCert(filepath.Join(tlsDir, "agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if kind, name, ok := pki.Identity(cert); !ok || kind != pki.KindAgent || name != worker {
		t.Errorf("certificate identity %s %s %v, want agent %s", kind, name, ok, worker)
	}
	if fi, err := os.Stat(filepath.Join(tlsDir, "agent.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v, want mode 0600", fi.Mode(), err)
	}
	workerstest.WaitFor(t, 60*time.Second, "the pool to shrink back to 0", func() bool { return workerstest.PoolStatus(s, "secure").Size == 0 })
	waitGone(t, tlsDir, "the worker's certificate")
}

// waitGone waits until path no longer exists. The pool's size drops to 0
// once the orchestrator has dropped the worker, and the agent process may
// be gone already, while the provider's Terminate, which removes the
// worker's directory after the process has exited, is still running in the
// manager: the test waits for it (an outside process's exit), with a
// deadline.
func waitGone(t *testing.T, path, what string) {
	t.Helper()
	workerstest.WaitFor(t, 40*time.Second, what+" to be removed", func() bool {
		_, err := os.Stat(path)
		return errors.Is(err, os.ErrNotExist)
	})
}
