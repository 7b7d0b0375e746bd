package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/logtest"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/proctest"
)

var cgAgentSeq atomic.Int64

// cgAgent is an agent, without NATS, that runs attempts in cgroups; the
// test fails where the machine has none (these tests run as root). Its
// steps run unisolated: a sandbox's PID namespace would kill their daemons
// by itself (and hide their host pids), and these tests check what the
// cgroup alone does. cgSandboxedAgent's steps run in sandboxes, whose
// processes are born in the cgroup.
func cgAgent(t *testing.T, id, workDir string) *Agent {
	t.Helper()
	return newCgAgent(t, id, workDir, true)
}

func cgSandboxedAgent(t *testing.T) *Agent {
	t.Helper()
	return newCgAgent(t, "", "", false)
}

func newCgAgent(t *testing.T, id, workDir string, unisolated bool) *Agent {
	t.Helper()
	if id == "" {
		id = fmt.Sprintf("cgtest-%d-%d", os.Getpid(), cgAgentSeq.Add(1))
	}
	if workDir == "" {
		workDir = t.TempDir()
	}
	cfg := Config{ID: id, WorkDir: workDir, BaseEnv: testEnv, Unisolated: unisolated, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.Defaults()
	a := &Agent{cfg: cfg, log: cfg.Logger, uids: map[int]bool{}}
	a.initCgroups()
	if a.cg == nil {
		_, err := cgroup.New(cgroup.Options{})
		t.Fatalf("no cgroups on this machine: %v", err)
	}
	t.Cleanup(a.removeWorkerCgroup)
	return a
}

// attemptOut collects an attempt's output and reports the pid printed on a
// line "bg <pid>".
type attemptOut struct{ w *watchWriter }

func (o attemptOut) emit(_ int, data []byte) { _, _ = o.w.Write(data) }

// runAttempt runs spec as attempt 1 of a fresh job, the way execute does.
func runAttempt(ctx context.Context, a *Agent, spec pipeline.JobSpec, out attemptOut) (string, int, string, cgroup.Stats) {
	if spec.CPUMilli == 0 {
		spec.CPUMilli = 1000
	}
	if spec.Memory == 0 {
		spec.Memory = pipeline.DefaultMemory
	}
	d := bus.Dispatch{RunID: "run-1", JobID: fmt.Sprintf("job-%d", cgAgentSeq.Add(1)), Attempt: 1}
	b := newBatcher(64<<10, 5*time.Millisecond, out.emit)
	defer b.Flush(-1)
	return a.attempt(ctx, d, spec, b, mask.New(), a.log, nil)
}

func steps(scripts ...string) []pipeline.StepSpec {
	out := make([]pipeline.StepSpec, len(scripts))
	for i, s := range scripts {
		out[i] = pipeline.StepSpec{Run: s}
	}
	return out
}

// daemonStep leaves a setsid daemon behind and prints its pid, as the
// daemon itself tells it through a fifo: `$!` may be the pid of a setsid
// that forked (its child is the daemon) and is already a zombie, which
// would pass for a killed daemon.
const daemonStep = `mkfifo daemon.pid
setsid sh -c 'echo $$ > daemon.pid; while :; do sleep 1; done' >/dev/null 2>&1 </dev/null &
read -r p < daemon.pid
echo "bg $p"`

// daemonPid returns the pid of the daemon daemonStep started, which the
// test kills when it ends if the agent did not.
func daemonPid(t *testing.T, out attemptOut) int {
	pid := <-out.w.pid
	t.Cleanup(func() { _ = killPid(pid) })
	return pid
}

func TestAttemptEndKillsSetsidDaemon(t *testing.T) {
	t.Parallel()
	a := cgAgent(t, "", "")
	out := attemptOut{newWatchWriter()}
	st, _, msg, _ := runAttempt(context.Background(), a, pipeline.JobSpec{Steps: steps(daemonStep)}, out)
	if st != bus.StatusSucceeded {
		t.Fatalf("attempt %s: %s", st, msg)
	}
	proctest.RequireDead(t, daemonPid(t, out), 2*time.Second)
}

func TestCancelKillsSetsidDaemon(t *testing.T) {
	t.Parallel()
	a := cgAgent(t, "", "")
	out := attemptOut{newWatchWriter()}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan string, 1)
	go func() {
		st, _, _, _ := runAttempt(ctx, a, pipeline.JobSpec{Steps: steps(daemonStep + "; sleep 600")}, out)
		done <- st
	}()
	pid := daemonPid(t, out)
	cancel(errCanceled)
	if st := <-done; st != bus.StatusCanceled {
		t.Fatalf("state %s", st)
	}
	proctest.RequireDead(t, pid, 2*time.Second)
}

func TestTimeoutKillsSetsidDaemon(t *testing.T) {
	t.Parallel()
	a := cgAgent(t, "", "")
	out := attemptOut{newWatchWriter()}
	spec := pipeline.JobSpec{Steps: steps(daemonStep + "; sleep 600"), Timeout: time.Second}
	st, _, msg, _ := runAttempt(context.Background(), a, spec, out)
	if st != bus.StatusFailed || !strings.Contains(msg, "timed out") {
		t.Fatalf("attempt %s: %s", st, msg)
	}
	proctest.RequireDead(t, daemonPid(t, out), 2*time.Second)
}

func TestAgentStartKillsLeftoverGroups(t *testing.T) {
	t.Parallel()
	id := fmt.Sprintf("cgtest-left-%d", os.Getpid())
	workDir := t.TempDir()
	a := cgAgent(t, id, workDir)
	// What an agent killed by SIGKILL leaves: an attempt's group with a
	// daemon in it (the daemon is held until it is in the group).
	g := a.newAttemptCgroup(bus.Dispatch{JobID: "job-x", Attempt: 3}, pipeline.JobSpec{CPUMilli: 100, Memory: 64 << 20}, a.log)
	if g == nil {
		t.Fatal("no group")
	}
	cmd := exec.Command("/bin/sh", "-c", `read -r _; setsid sh -c 'while :; do sleep 1; done' >/dev/null 2>&1 </dev/null & echo $!`)
	stdin, _ := cmd.StdinPipe()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "go\n")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = killPid(pid) })
	if !proctest.Alive(pid) {
		t.Fatal("daemon not running")
	}
	// An agent of the same id with another work dir (another server's
	// local worker on this machine) leaves it alone.
	other := cgAgent(t, id, "")
	other.cleanLeftovers()
	if !proctest.Alive(pid) {
		t.Fatal("an agent with another work dir killed the daemon")
	}
	// The agent starts again with the same id and work dir.
	b := cgAgent(t, id, workDir)
	b.cleanLeftovers()
	proctest.RequireDead(t, pid, 2*time.Second)
	if kids, _ := b.cg.Children(b.cgName); len(kids) != 0 {
		t.Fatalf("groups left: %v", kids)
	}
}

func TestMemoryLimitOOMKillsStep(t *testing.T) {
	t.Parallel()
	a := cgSandboxedAgent(t)
	out := attemptOut{newWatchWriter()}
	spec := pipeline.JobSpec{Memory: 32 << 20, LimitMemory: true, Steps: steps(`x=$(head -c 200000000 /dev/zero | tr '\0' a); echo ${#x}`)}
	spec.Steps[0].Name = "hog"
	st, code, msg, usage := runAttempt(context.Background(), a, spec, out)
	if st != bus.StatusFailed || !strings.Contains(msg, "hog: out of memory: killed at the job's memory limit of 32 MiB") {
		t.Fatalf("attempt %s (%d): %q", st, code, msg)
	}
	if usage.OOMKills < 1 || usage.PeakMemory > 32<<20 || usage.PeakMemory < 16<<20 {
		t.Fatalf("usage %+v", usage)
	}
}

func TestAFailedStepAfterASurvivedOOMIsNotBlamedOnMemory(t *testing.T) {
	t.Parallel()
	a := cgAgent(t, "", "")
	spec := pipeline.JobSpec{Memory: 32 << 20, LimitMemory: true, Steps: steps(`dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null || true`, "exit 3")}
	st, code, msg, usage := runAttempt(context.Background(), a, spec, attemptOut{newWatchWriter()})
	if st != bus.StatusFailed || code != 3 || strings.Contains(msg, "memory") {
		t.Fatalf("attempt %s (%d): %q", st, code, msg)
	}
	if usage.OOMKills < 1 {
		t.Fatalf("no OOM kill in the first step (usage %+v): the test proves nothing", usage)
	}
}

func TestAttemptReportsCPUTimeAndPeakMemory(t *testing.T) {
	t.Parallel()
	a := cgSandboxedAgent(t)
	spec := pipeline.JobSpec{Memory: 256 << 20, LimitMemory: true, Steps: steps(
		`i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`,
		`x=$(head -c 40000000 /dev/zero | tr '\0' a); echo ${#x}`,
	)}
	start := time.Now()
	st, _, msg, usage := runAttempt(context.Background(), a, spec, attemptOut{newWatchWriter()})
	wall := time.Since(start)
	if st != bus.StatusSucceeded {
		t.Fatalf("attempt %s: %s", st, msg)
	}
	// 100,000 shell iterations take tens of milliseconds of CPU at least,
	// and no attempt uses more CPU than all cores for its whole time.
	if usage.CPUTime < 10*time.Millisecond || usage.CPUTime > wall*time.Duration(runtime.NumCPU()) {
		t.Fatalf("CPU time %v for a busy step, wall %v", usage.CPUTime, wall)
	}
	if usage.PeakMemory < 40_000_000 || usage.PeakMemory > 256<<20 {
		t.Fatalf("peak memory %d for a step holding 40 MB", usage.PeakMemory)
	}
}

func TestNoCgroupsRunsAsBefore(t *testing.T) {
	t.Parallel()
	cfg := Config{ID: "cgtest-off", WorkDir: t.TempDir(), BaseEnv: testEnv, NoCgroups: true}
	var logs logtest.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Defaults()
	a := &Agent{cfg: cfg, log: cfg.Logger, uids: map[int]bool{}}
	a.initCgroups()
	if a.cg != nil || !strings.Contains(logs.String(), "cgroups off") {
		t.Fatalf("cgroups on with NoCgroups; log %q", logs.String())
	}
	st, _, msg, usage := runAttempt(context.Background(), a, pipeline.JobSpec{Steps: steps("echo ok")}, attemptOut{newWatchWriter()})
	if st != bus.StatusSucceeded || usage != (cgroup.Stats{}) {
		t.Fatalf("attempt %s %q, usage %+v", st, msg, usage)
	}
}

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// BenchmarkAttempt runs a one-step attempt ("true") with and without its
// cgroup: the difference is the per-attempt cost of the group (create,
// limits, the step born in it, kill, stats, remove).
func BenchmarkAttempt(b *testing.B) {
	for _, off := range []bool{true, false} {
		name := "cgroup"
		if off {
			name = "no-cgroup"
		}
		b.Run(name, func(b *testing.B) {
			cfg := Config{ID: fmt.Sprintf("cgbench-%d", os.Getpid()), WorkDir: b.TempDir(), BaseEnv: testEnv, NoCgroups: off,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			cfg.Defaults()
			a := &Agent{cfg: cfg, log: cfg.Logger, uids: map[int]bool{}}
			a.initCgroups()
			if !off && a.cg == nil {
				b.Fatal("no cgroups on this machine")
			}
			b.Cleanup(a.removeWorkerCgroup)
			spec := pipeline.JobSpec{Steps: steps("true")}
			proctest.BenchCPU(b, func() error {
				if st, _, msg, _ := runAttempt(context.Background(), a, spec, attemptOut{newWatchWriter()}); st != bus.StatusSucceeded {
					return fmt.Errorf("%s %s", st, msg)
				}
				return nil
			})
		})
	}
}
