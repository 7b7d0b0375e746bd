package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServerKilledMidRunLosesNoRun kills the server with SIGKILL while jobs
// are running, restarts it on the same data directory, and checks that every
// accepted run is still there and reaches a final state.
func TestServerKilledMidRunLosesNoRun(t *testing.T) {
	dataDir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	args := []string{"server", "--data-dir", dataDir, "--http", httpAddr, "--nats-listen", natsAddr,
		"--workers", "2", "--worker-ttl", "2s", "--auth", "off",
		"--unsafe-shared-user"} // the steps touch files of the test's temporary directory
	srv := start(t, "server-1.log", args...)
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)

	marks := t.TempDir()
	const runs = 12
	var ids []string
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < runs; i++ {
		// Each run: a slow first job (so that some are mid-flight at the
		// kill), a dependent, and a retry budget for attempts lost with the
		// server's in-process workers.
		yaml := fmt.Sprintf(`name: crash-%[1]d
jobs:
  slow:
    retry: 3
    steps: [{run: "echo start; touch %[2]s/started-%[1]d; sleep 1; echo end"}]
  after:
    needs: slow
    retry: 3
    steps: [{run: "echo after"}]
`, i, marks)
		id, err := a.submit(ctx, yaml)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Kill once at least one job is running.
	waitStarted(t, marks)
	srv.kill()

	srv2 := start(t, "server-2.log", args...)
	waitReady(t, a, srv2)
	a.waitFinal(t, ctx, 90*time.Second, ids...)
	retried := 0
	for _, id := range ids {
		r := a.mustRun(ctx, t, id)
		if r.State != "succeeded" {
			t.Errorf("run %s ended %s, want succeeded (retries cover lost attempts): %+v", id, r.State, r.Jobs)
		}
		for _, j := range r.Jobs {
			if j.Attempt > 1 {
				retried++
			}
		}
	}
	// The kill interrupted running jobs: they ran again after the restart.
	if retried == 0 {
		t.Error("no job needed a second attempt: the server was not killed mid-run")
	}
}

// TestWorkerKilledMidJobRequeues kills the agent process running a job; the
// job comes back as a new attempt on the other agent.
func TestWorkerKilledMidJobRequeues(t *testing.T) {
	dataDir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	srv := start(t, "server.log", "server", "--data-dir", dataDir, "--http", httpAddr, "--nats-listen", natsAddr,
		"--workers", "0", "--worker-ttl", "1500ms", "--auth", "off")
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)
	agents := map[string]*proc{}
	for _, id := range []string{"agent-a", "agent-b"} {
		agents[id] = start(t, id+".log", "agent", "--nats", "nats://"+natsAddr, "--id", id,
			"--work-dir", filepath.Join(t.TempDir(), id), "--heartbeat", "250ms",
			"--unsafe-shared-user") // the step writes its pid to a file of the test
	}
	eventually(t, 30*time.Second, "two workers joined", func() (bool, error) {
		var ws struct {
			Workers []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"workers"`
		}
		if _, err := a.do(context.Background(), "GET", "/api/v1/workers", "", nil, &ws); err != nil {
			return false, err
		}
		n := 0
		for _, w := range ws.Workers {
			if w.State == "idle" {
				n++
			}
		}
		return n == 2, nil
	})

	pids := filepath.Join(t.TempDir(), "pids")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := a.submit(ctx, fmt.Sprintf(`name: lost-worker
jobs:
  long:
    retry: 1
    steps:
      - run: |
          echo "$HODEI_ATTEMPT $$" >> %s
          if [ "$HODEI_ATTEMPT" = 1 ]; then sleep 60; fi
          echo done
`, pids))
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	eventually(t, 30*time.Second, "job running", func() (bool, error) {
		r, err := a.run(ctx, id)
		if err != nil || len(r.Jobs) == 0 {
			return false, err
		}
		victim = r.Jobs[0].Worker
		return r.Jobs[0].State == "running" && len(lines(pids)) == 1, nil
	})
	stepPID, _ := strconv.Atoi(strings.Fields(lines(pids)[0])[1])
	if agents[victim] == nil {
		t.Fatalf("job runs on %q, not on one of our agents", victim)
	}
	agents[victim].kill()

	eventually(t, 30*time.Second, "run final", func() (bool, error) {
		r, err := a.run(ctx, id)
		return err == nil && final(r.State), err
	})
	r := a.mustRun(ctx, t, id)
	j := r.Jobs[0]
	if r.State != "succeeded" || j.Attempt != 2 || j.Worker == victim {
		t.Fatalf("run %s, job attempt %d on %s (victim %s)", r.State, j.Attempt, j.Worker, victim)
	}
	// The step of the dead agent died with it.
	eventually(t, 5*time.Second, "orphaned step gone", func() (bool, error) {
		return syscall.Kill(stepPID, 0) != nil, nil
	})
}
