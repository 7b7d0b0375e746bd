package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/steplog"
	"github.com/hodei-ci/hodei/internal/store"
)

// startServer starts a server with local agents on a temporary data dir.
func startServer(t *testing.T, workers int) *Server {
	t.Helper()
	return startServerWith(t, workers, false)
}

// startUnisolatedServer is startServer whose steps run as the test's user,
// outside any sandbox: for tests whose steps report through files of the
// test's temporary directory (a sandboxed step cannot reach them).
func startUnisolatedServer(t *testing.T, workers int) *Server {
	t.Helper()
	return startServerWith(t, workers, true)
}

func startServerWith(t *testing.T, workers int, unisolated bool) *Server {
	t.Helper()
	return startServerTTL(t, workers, unisolated, 2*time.Second)
}

// startServerTTL is startServerWith with the workers' lease: tests that
// move hundreds of MB through an in-process agent's one NATS connection,
// under the race detector on a busy machine, can hold its heartbeats back
// for more than the 2 s the other tests give them.
func startServerTTL(t *testing.T, workers int, unisolated bool, ttl time.Duration) *Server {
	t.Helper()
	return startTestServer(t, Options{
		NATSListen:       "none",
		LocalWorkers:     workers,
		WorkerTTL:        ttl,
		UnsafeSharedUser: unisolated,
	})
}

// startTestServer starts a server on o, closed when the test ends, and
// waits for its o.LocalWorkers local agents. Where o leaves them empty it
// has a temporary data dir, a logger that discards and 200 ms heartbeats.
func startTestServer(t *testing.T, o Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 200 * time.Millisecond
	}
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.WaitForWorkers(ctx, o.LocalWorkers); err != nil {
		t.Fatal(err)
	}
	return s
}

// runPipeline submits yaml and waits for the run to end.
func runPipeline(t *testing.T, s *Server, yaml string, timeout time.Duration) (store.Run, map[string]store.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run, sub := submitWatched(ctx, t, s, "test.yaml", yaml)
	defer sub.Close()
	waitRun(ctx, t, s, sub, run.ID)
	return loadRun(t, s, run.ID)
}

// submitWatched subscribes to all the hub's notifications, then submits
// yaml as file: the subscription misses none of the run's. The caller
// closes it.
func submitWatched(ctx context.Context, t *testing.T, s *Server, file, yaml string) (store.Run, *hub.Sub) {
	t.Helper()
	sub := s.Hub.Subscribe("", 1<<16)
	run, err := s.Submit(ctx, file, []byte(yaml), "")
	if err != nil {
		sub.Close()
		t.Fatalf("submit %s: %v", file, err)
	}
	return run, sub
}

func waitRun(ctx context.Context, t *testing.T, s *Server, sub *hub.Sub, runID string) {
	t.Helper()
	if !waitNote(ctx, t, sub, func(n hub.Note) bool {
		return n.Kind == hub.KindRun && n.RunID == runID && n.RunState.Final()
	}) {
		r, _ := s.Store.GetRun(context.Background(), runID)
		jobs, _ := s.Store.ListJobs(context.Background(), runID)
		t.Fatalf("run %s did not end: run state %s, jobs %+v", runID, r.State, jobStates(jobs))
	}
}

// waitNote reads sub until a notification matches, and says whether one
// did before ctx ended.
func waitNote(ctx context.Context, t *testing.T, sub *hub.Sub, match func(hub.Note) bool) bool {
	t.Helper()
	for {
		select {
		case n, ok := <-sub.C:
			if !ok {
				t.Fatal("hub subscription lagged")
			}
			if match(n) {
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
}

func jobStates(jobs []store.Job) map[string]state.JobState {
	m := map[string]state.JobState{}
	for _, j := range jobs {
		m[j.Key] = j.State
	}
	return m
}

func loadRun(t *testing.T, s *Server, id string) (store.Run, map[string]store.Job) {
	t.Helper()
	ctx := context.Background()
	r, err := s.Store.GetRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Store.ListJobs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.Job{}
	for _, j := range jobs {
		m[j.Key] = j
	}
	return r, m
}

// oneStep is the log of the only step of a job, titled title, that printed
// out and ended as how says, as steplog.ZeroDurations writes it.
func oneStep(title, out, how string) string {
	return steplog.Header(0, 1, title) + out + steplog.Footer(0, 1, how, 0)
}

func logsOf(t *testing.T, s *Server, jobID string) string {
	t.Helper()
	var buf bytes.Buffer
	att, seq := 0, int64(0)
	for {
		cs, err := s.Store.ReadLogs(context.Background(), jobID, att, seq, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return buf.String()
		}
		for _, c := range cs {
			buf.Write(c.Data)
			att, seq = c.Attempt, c.Seq
		}
	}
}

func TestDAGRunsInDependencyOrder(t *testing.T) {
	s := startUnisolatedServer(t, 2)
	dir := t.TempDir()
	log := filepath.Join(dir, "order")
	yaml := fmt.Sprintf(`name: dag
jobs:
  a:
    steps: [{run: "echo a >> %[1]s"}]
  b:
    needs: [a]
    steps: [{run: "echo b >> %[1]s"}]
  c:
    needs: [a]
    steps: [{run: "echo c >> %[1]s"}]
  d:
    needs: [b, c]
    steps: [{run: "echo d >> %[1]s"}]
`, log)
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if jobs[k].State != state.JobSucceeded {
			t.Errorf("job %s: %s", k, jobs[k].State)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(data))
	if len(lines) != 4 || lines[0] != "a" || lines[3] != "d" {
		t.Fatalf("order %v: want a first and d last", lines)
	}
}

func TestFailurePropagationAndConditions(t *testing.T) {
	s := startServer(t, 2)
	yaml := `name: fail
jobs:
  build:
    steps: [{run: "echo building; exit 3"}]
  test:
    needs: build
    steps: [{run: "echo never"}]
  deploy:
    needs: test
    steps: [{run: "echo never"}]
  notify:
    needs: build
    if: failure()
    steps: [{run: "echo notifying"}]
  cleanup:
    needs: [test, notify]
    if: always()
    steps: [{run: "echo cleanup"}]
  lint:
    steps: [{run: "true"}]
`
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if r.State != state.RunFailed {
		t.Fatalf("run state %s, want failed", r.State)
	}
	want := map[string]state.JobState{
		"build": state.JobFailed, "test": state.JobSkipped, "deploy": state.JobSkipped,
		"notify": state.JobSucceeded, "cleanup": state.JobSucceeded, "lint": state.JobSucceeded,
	}
	for k, st := range want {
		if jobs[k].State != st {
			t.Errorf("job %s: %s, want %s", k, jobs[k].State, st)
		}
	}
	if jobs["build"].ExitCode != 3 {
		t.Errorf("build exit code %d, want 3", jobs["build"].ExitCode)
	}
	if got, want := steplog.ZeroDurations(logsOf(t, s, jobs["build"].ID)), oneStep("echo building; exit 3", "building\n", steplog.Exited(3)); got != want {
		t.Errorf("build logs %q", got)
	}
}

func TestSkippedJobsDoNotFailRun(t *testing.T) {
	s := startServer(t, 1)
	yaml := `name: skip
jobs:
  ok:
    steps: [{run: "true"}]
  only-on-failure:
    needs: ok
    if: failure()
    steps: [{run: "exit 1"}]
`
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if r.State != state.RunSucceeded || jobs["only-on-failure"].State != state.JobSkipped {
		t.Fatalf("run %s, job %s", r.State, jobs["only-on-failure"].State)
	}
}

func TestRetryRunsANewAttempt(t *testing.T) {
	s := startUnisolatedServer(t, 1)
	dir := t.TempDir()
	counter := filepath.Join(dir, "n")
	// Fails on the first two attempts, succeeds on the third.
	yaml := fmt.Sprintf(`name: retry
jobs:
  flaky:
    retry: 2
    steps:
      - run: |
          echo x >> %[1]s
          test "$(wc -l < %[1]s)" -ge 3
          test "$HODEI_ATTEMPT" = 3
  out-of-retries:
    retry: 1
    steps: [{run: "exit 1"}]
`, counter)
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if jobs["flaky"].State != state.JobSucceeded || jobs["flaky"].Attempt != 3 {
		t.Fatalf("flaky: %s after %d attempts", jobs["flaky"].State, jobs["flaky"].Attempt)
	}
	if jobs["out-of-retries"].State != state.JobFailed || jobs["out-of-retries"].Attempt != 2 {
		t.Fatalf("out-of-retries: %s after %d attempts", jobs["out-of-retries"].State, jobs["out-of-retries"].Attempt)
	}
	if r.State != state.RunFailed {
		t.Fatalf("run %s", r.State)
	}
	atts, err := s.Store.ListAttempts(context.Background(), jobs["flaky"].ID)
	if err != nil || len(atts) != 3 || atts[0].State != state.AttemptFailed || atts[2].State != state.AttemptSucceeded {
		t.Fatalf("attempts %+v, %v", atts, err)
	}
}

func TestTimeouts(t *testing.T) {
	s := startServer(t, 1)
	yaml := `name: timeouts
jobs:
  step-timeout:
    steps:
      - run: sleep 30
        timeout: 300ms
  job-timeout:
    timeout: 500ms
    steps:
      - run: "true"
      - run: sleep 30
  in-time:
    timeout: 10s
    steps: [{run: "sleep 0.1"}]
`
	// runPipeline gives up after 20 s, before the steps' sleeps of 30 s
	// would end by themselves: the run ends only if the timeouts work.
	_, jobs := runPipeline(t, s, yaml, 20*time.Second)
	for _, k := range []string{"step-timeout", "job-timeout"} {
		if jobs[k].State != state.JobFailed || !strings.Contains(jobs[k].Error, "timed out") {
			t.Errorf("%s: %s %q", k, jobs[k].State, jobs[k].Error)
		}
	}
	if jobs["in-time"].State != state.JobSucceeded {
		t.Errorf("in-time: %s", jobs["in-time"].State)
	}
}

func TestMatrixExpandsAndSubstitutes(t *testing.T) {
	s := startServer(t, 2)
	yaml := `name: matrix
jobs:
  test:
    matrix:
      go: ["1.25", "1.26"]
      os: [linux, arm]
    env: {TARGET: "${{ matrix.os }}"}
    steps: [{run: "echo go=${{ matrix.go }} os=$TARGET"}]
  report:
    needs: test
    steps: [{run: "echo done"}]
`
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	if len(jobs) != 5 {
		t.Fatalf("%d jobs, want 5: %v", len(jobs), jobStates(mapValues(jobs)))
	}
	seen := map[string]bool{}
	for k, j := range jobs {
		if k == "report" {
			continue
		}
		lines := strings.Split(strings.TrimSpace(logsOf(t, s, j.ID)), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "==> step 1/1: ") || !strings.HasPrefix(lines[2], "<== step 1/1 exited 0 in ") {
			t.Errorf("log of %s: %q", k, lines)
			continue
		}
		seen[lines[1]] = true
	}
	for _, want := range []string{"go=1.25 os=linux", "go=1.25 os=arm", "go=1.26 os=linux", "go=1.26 os=arm"} {
		if !seen[want] {
			t.Errorf("no job printed %q; got %v", want, seen)
		}
	}
}

func mapValues(m map[string]store.Job) []store.Job {
	out := make([]store.Job, 0, len(m))
	for _, j := range m {
		out = append(out, j)
	}
	return out
}

func TestHundredThousandLinesArriveInOrder(t *testing.T) {
	s := startServer(t, 1)
	yaml := `name: loud
jobs:
  loud:
    steps: [{run: "seq 1 100000"}]
`
	r, jobs := runPipeline(t, s, yaml, 60*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s", r.State)
	}
	out := logsOf(t, s, jobs["loud"].ID)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 100002 {
		t.Fatalf("%d lines, want 100000 and the step's header and footer", len(lines))
	}
	if lines[0] != "==> step 1/1: seq 1 100000" || !strings.HasPrefix(lines[100001], "<== step 1/1 exited 0 in ") {
		t.Errorf("header %q, footer %q", lines[0], lines[100001])
	}
	lines = lines[1:100001]
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	// Batched: far fewer chunks than lines.
	cs, err := s.Store.ReadLogs(context.Background(), jobs["loud"].ID, 0, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) > 200 {
		t.Errorf("%d chunks for 100000 lines: output is not batched", len(cs))
	}
}

func TestCancelStopsProcessGroup(t *testing.T) {
	s := startUnisolatedServer(t, 1)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	yaml := fmt.Sprintf(`name: cancel
jobs:
  long:
    steps:
      - run: |
          sleep 60 &
          echo $! > %[1]s.tmp && mv %[1]s.tmp %[1]s
          wait
  after:
    needs: long
    steps: [{run: "true"}]
`, pidFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, sub := submitWatched(ctx, t, s, "cancel.yaml", yaml)
	defer sub.Close()
	// Wait for the job to be running and its child to exist.
	var pid int
	for pid == 0 {
		select {
		case _, ok := <-sub.C:
			if !ok {
				t.Fatal("lagged")
			}
		case <-ctx.Done():
			t.Fatal("job never started")
		case <-time.After(20 * time.Millisecond):
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	start := time.Now()
	if err := s.Orch.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	waitRun(ctx, t, s, sub, run.ID)
	// The backgrounded child of the step is gone within 2 seconds.
	for syscall.Kill(pid, 0) == nil {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("process %d still alive %s after cancel", pid, time.Since(start))
		}
		select {
		case <-ctx.Done():
			t.Fatal("timeout")
		case <-time.After(10 * time.Millisecond):
		}
	}
	r, jobs := loadRun(t, s, run.ID)
	if r.State != state.RunCanceled || jobs["long"].State != state.JobCanceled || jobs["after"].State != state.JobCanceled {
		t.Fatalf("run %s, jobs %v", r.State, jobStates(mapValues(jobs)))
	}
	if err := s.Orch.Cancel(ctx, run.ID); err == nil {
		t.Fatal("cancel of a final run should fail")
	}
}

func TestEnvPrecedenceAndWorkspace(t *testing.T) {
	s := startServer(t, 1)
	yaml := `name: env
env: {A: pipeline, B: pipeline, C: pipeline}
jobs:
  j:
    env: {B: job, C: job}
    steps:
      - env: {C: step}
        run: |
          echo "$A $B $C"
          test "$PWD" = "$HODEI_WORKSPACE"
          test "$CI" = true
          touch marker
          echo "$PWD" > /dev/null
`
	r, jobs := runPipeline(t, s, yaml, 30*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %s / %s", r.State, r.Error, jobs["j"].Error)
	}
	if got := steplog.ZeroDurations(logsOf(t, s, jobs["j"].ID)); got != oneStep(`echo "$A $B $C" …`, "pipeline job step\n", steplog.Exited(0)) {
		t.Fatalf("env output %q", got)
	}
	// Workspaces are removed after the job.
	entries, _ := filepath.Glob(filepath.Join(s.opts.DataDir, "work", "*", "*"))
	if len(entries) != 0 {
		t.Fatalf("workspaces left behind: %v", entries)
	}
}
