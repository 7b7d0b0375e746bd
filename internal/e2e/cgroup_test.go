package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attemptsJSON is the part of a run's jobs JSON these tests read.
type attemptsJSON struct {
	Jobs []struct {
		Key      string `json:"key"`
		State    string `json:"state"`
		Attempts []struct {
			N          int      `json:"n"`
			State      string   `json:"state"`
			Error      string   `json:"error"`
			PeakMemory *int64   `json:"peak_memory_bytes"`
			CPUSeconds *float64 `json:"cpu_seconds"`
		} `json:"attempts"`
	} `json:"jobs"`
}

// pidIn waits for a step to have written a pid to path: the pid a daemon
// wrote of itself ($$ in the daemon: the $! of a setsid that forked would be
// a short-lived parent, not the daemon).
func pidIn(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 30*time.Second, "pid in "+path, func() (bool, error) {
		l := lines(path)
		if len(l) == 0 {
			return false, nil
		}
		var err error
		pid, err = strconv.Atoi(strings.TrimSpace(l[0]))
		return err == nil, err
	})
	// A failed test leaves no daemon behind.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// goneWithin fails unless pid is gone (or a zombie) within d.
func goneWithin(t *testing.T, pid int, d time.Duration, what string) {
	t.Helper()
	eventually(t, d, what, func() (bool, error) {
		if syscall.Kill(pid, 0) != nil {
			return true, nil
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && i+2 < len(b) && b[i+2] == 'Z', nil
	})
}

// TestAttemptsInCgroups runs a server and a `hodei agent` as real
// processes: a job's setsid daemon dies with its attempt, a job over its
// memory request is OOM-killed and says so, peak memory and CPU time reach
// the API and `hodei runs`, and a daemon left by an agent killed with
// SIGKILL dies when the agent starts again.
func TestAttemptsInCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	dataDir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	srv := start(t, "server.log", "server", "--data-dir", dataDir, "--http", httpAddr, "--nats-listen", natsAddr,
		"--workers", "0", "--worker-ttl", "1500ms", "--auth", "off")
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)
	agentID := fmt.Sprintf("cg-e2e-%d", os.Getpid())
	workDir := filepath.Join(t.TempDir(), "work")
	// Unisolated: the steps write pids to files of the test's directory,
	// and a daemon must be left for the cgroup alone to kill (a sandbox
	// kills it by itself); the attempts still run in their cgroups.
	agentArgs := []string{"agent", "--nats", "nats://" + natsAddr, "--id", agentID, "--work-dir", workDir, "--heartbeat", "250ms", "--unsafe-shared-user"}
	agent := start(t, "agent.log", agentArgs...)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := a.submit(ctx, fmt.Sprintf(`name: cgroups
jobs:
  busy:
    runs-on: {cpu: 1, memory: 256Mi}
    steps:
      - run: |
          setsid sh -c 'echo $$ > %[1]s/daemon; while :; do sleep 1; done' >/dev/null 2>&1 &
          i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done
          x=$(head -c 40000000 /dev/zero | tr '\0' a)
  hog:
    runs-on: {cpu: 1, memory: 32Mi}
    steps:
      - name: allocate
        run: x=$(head -c 200000000 /dev/zero | tr '\0' a)
`, dir))
	if err != nil {
		t.Fatal(err)
	}
	daemon := pidIn(t, filepath.Join(dir, "daemon"))
	eventually(t, time.Minute, "run final", func() (bool, error) {
		r, err := a.run(ctx, id)
		return err == nil && final(r.State), err
	})
	// The attempt reported its end after killing its group.
	goneWithin(t, daemon, 2*time.Second, "daemon of a finished attempt gone")

	var r attemptsJSON
	if _, err := a.do(ctx, "GET", "/api/v1/runs/"+id+"/jobs", "", nil, &r); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int{}
	for i, j := range r.Jobs {
		byKey[j.Key] = i
	}
	busy := r.Jobs[byKey["busy"]]
	if busy.State != "succeeded" || len(busy.Attempts) != 1 {
		t.Fatalf("busy: %+v", busy)
	}
	ba := busy.Attempts[0]
	if ba.PeakMemory == nil || *ba.PeakMemory < 40_000_000 || ba.CPUSeconds == nil || *ba.CPUSeconds <= 0.01 {
		t.Fatalf("busy attempt usage: peak %v, cpu %v", ba.PeakMemory, ba.CPUSeconds)
	}
	hog := r.Jobs[byKey["hog"]]
	if hog.State != "failed" || len(hog.Attempts) != 1 || !strings.Contains(hog.Attempts[0].Error, "allocate: out of memory: killed at the job's memory limit of 32 MiB") {
		t.Fatalf("hog: %+v", hog)
	}

	// `hodei runs RUN` shows them per attempt.
	out, err := exec.Command(hodeiBin, "runs", id, "--server", a.base).CombinedOutput()
	if err != nil {
		t.Fatalf("hodei runs: %v\n%s", err, out)
	}
	var busyRow string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "busy ") && strings.Contains(l, agentID) {
			busyRow = l
		}
	}
	f := strings.Fields(busyRow)
	if !strings.Contains(string(out), "PEAK MEMORY") || len(f) != 9 || !strings.HasSuffix(f[6], "Mi") || f[7] == "-" {
		t.Fatalf("hodei runs shows no usage for the busy attempt (row %q):\n%s", busyRow, out)
	}

	// An agent killed by SIGKILL mid-job: its step's daemon outlives it
	// until the agent starts again.
	id2, err := a.submit(ctx, fmt.Sprintf(`name: killed-agent
jobs:
  long:
    steps:
      - run: |
          setsid sh -c 'echo $$ > %[1]s/daemon2; while :; do sleep 1; done' >/dev/null 2>&1 &
          sleep 600
`, dir))
	if err != nil {
		t.Fatal(err)
	}
	daemon2 := pidIn(t, filepath.Join(dir, "daemon2"))
	agent.kill()
	if syscall.Kill(daemon2, 0) != nil {
		t.Fatal("the daemon died with the agent: nothing left to clean up, the test proves nothing")
	}
	agent = start(t, "agent2.log", agentArgs...)
	eventually(t, 30*time.Second, "agent started again", func() (bool, error) {
		b, err := os.ReadFile(agent.log)
		return strings.Contains(string(b), "agent started"), err
	})
	// Leftovers are cleaned before the agent says it started.
	goneWithin(t, daemon2, 2*time.Second, "daemon left by the killed agent gone")
	_, _ = a.do(ctx, "POST", "/api/v1/runs/"+id2+"/cancel", "", nil, nil)
	// An agent that stops removes its directory of cgroups.
	_ = agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent still running 30 s after SIGTERM")
	}
}
