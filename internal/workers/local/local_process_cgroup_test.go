package local_test

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/proctest"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// TestLocalProcessAgentKilledLeavesNoDaemon kills a busy local agent
// process with SIGKILL: its step's shell dies with it (Pdeathsig), and the
// daemon the step started with setsid, out of reach of both, dies when the
// provider sees the agent exit, by its attempt's cgroup.
func TestLocalProcessAgentKilledLeavesNoDaemon(t *testing.T) {
	if syscall.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	s := processServer(t, "", t.TempDir())
	// Unisolated (see directProcess): the test checks what the cgroup
	// alone does (a sandbox's PID namespace would kill the daemon by
	// itself, and the pid the step prints would be one of that namespace).
	p, spec := directProcess(t, s, "cgk", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ref, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Terminate(context.Background(), spec.ID) })
	agentPID, _ := strconv.Atoi(ref.Handle)
	workerstest.WaitFor(t, 40*time.Second, "the agent process to join", func() bool {
		return workerstest.PoolWorkers(s, "cgk")["idle"] == 1
	})
	_, daemon, _ := stepStarts(t, s, "cgk", `setsid sh -c "while :; do sleep 1; done" >/dev/null 2>&1 & echo "daemon=$!"; sleep 300`, "daemon")
	if !proctest.Alive(daemon) {
		t.Fatalf("daemon %d not running", daemon)
	}
	if err := syscall.Kill(agentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case e := <-p.Events():
			if e.Kind != workers.EventExited {
				continue
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no exit event after SIGKILL of the agent")
		}
		break
	}
	workerstest.WaitFor(t, 2*time.Second, "the daemon gone 2 s after the agent's exit", func() bool { return !proctest.Alive(daemon) })
}
