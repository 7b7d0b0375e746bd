package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cluster is the addresses and arguments of a server on a data directory,
// restarted by the tests with the same arguments, and of its agents.
type cluster struct {
	args     []string // hodei server ...
	natsAddr string
	api      api
}

// newCluster chooses a data directory and ports for a server with the
// given extra flags (--workers, --worker-ttl...); no authentication. Its
// workers (local and agents) run steps unisolated: the steps of these tests
// append to marker files of the test's directory, which a sandbox hides
// (and a marker a sandboxed step failed to write would prove nothing).
// Attempts still run in their cgroups. Isolation is tested in
// hostile_test.go.
func newCluster(t *testing.T, extra ...string) cluster {
	dataDir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	args := append([]string{"server", "--data-dir", dataDir, "--http", httpAddr, "--nats-listen", natsAddr, "--auth", "off", "--unsafe-shared-user"}, extra...)
	return cluster{args: args, natsAddr: natsAddr, api: api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}}
}

// server starts the server (with more flags, if any, after the cluster's)
// and waits until it is ready.
func (c cluster) server(t *testing.T, logName string, more ...string) *proc {
	t.Helper()
	p := start(t, logName, append(append([]string(nil), c.args...), more...)...)
	waitReady(t, c.api, p)
	return p
}

// agentArgs are the arguments of an agent of the cluster.
func (c cluster) agentArgs(t *testing.T, id string, more ...string) []string {
	return append([]string{"agent", "--nats", "nats://" + c.natsAddr, "--id", id,
		"--work-dir", filepath.Join(t.TempDir(), id), "--heartbeat", "250ms", "--unsafe-shared-user"}, more...)
}

type workerJSON struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (a api) workers(ctx context.Context) ([]workerJSON, error) {
	var ws struct {
		Workers []workerJSON `json:"workers"`
	}
	code, err := a.do(ctx, "GET", "/api/v1/workers", "", nil, &ws)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("workers: HTTP %d", code)
	}
	return ws.Workers, err
}

// waitFinal waits until every run of ids has reached a final state (runs
// are the server process's work: polled). A run once final stays so: each
// poll asks only about the runs that were not yet.
func (a api) waitFinal(t *testing.T, ctx context.Context, timeout time.Duration, ids ...string) {
	t.Helper()
	pending := append([]string(nil), ids...)
	eventually(t, timeout, "every run final", func() (bool, error) {
		var left []string
		var last string
		for _, id := range pending {
			r, err := a.run(ctx, id)
			if err != nil {
				return false, err
			}
			if !final(r.State) {
				left = append(left, id)
				last = r.State
			}
		}
		pending = left
		if len(left) > 0 {
			return false, fmt.Errorf("%d runs not final, e.g. %s (%s)", len(left), left[len(left)-1], last)
		}
		return true, nil
	})
}

// waitStarted waits until a step has touched a file started-* in marks
// (the steps run in an agent process: polled).
func waitStarted(t *testing.T, marks string) {
	t.Helper()
	eventually(t, 30*time.Second, "a job started", func() (bool, error) {
		m, _ := filepath.Glob(filepath.Join(marks, "started-*"))
		return len(m) > 0, nil
	})
}

// jobs returns the jobs of a run with their attempts.
func (a api) jobs(ctx context.Context, runID string) ([]jobJSON, error) {
	var l struct {
		Jobs []jobJSON `json:"jobs"`
	}
	code, err := a.do(ctx, "GET", "/api/v1/runs/"+runID+"/jobs", "", nil, &l)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("jobs of %s: HTTP %d", runID, code)
	}
	return l.Jobs, err
}

// mustJobs is jobs for a test that cannot go on without them.
func (a api) mustJobs(ctx context.Context, t *testing.T, runID string) []jobJSON {
	t.Helper()
	jobs, err := a.jobs(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

const quickJob = `name: quick
jobs:
  a:
    steps: [{run: "echo hi"}]
`

// Finding 4: start a server with local workers and stop it; start it with
// --workers 0 (the old local workers become lost), stop; start it again with
// --workers 0 and an agent: new jobs run on the agent, none waits forever on
// a lost local worker.
func TestJobsRunAfterLocalWorkersAreLost(t *testing.T) {
	c := newCluster(t, "--worker-ttl", "1s")
	a := c.api
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	srv := c.server(t, "server-1.log", "--workers", "1")
	id, err := a.submit(ctx, quickJob)
	if err != nil {
		t.Fatal(err)
	}
	a.waitFinal(t, ctx, 30*time.Second, id)
	if !srv.term(30 * time.Second) {
		t.Fatal("server did not stop on SIGTERM")
	}

	srv = c.server(t, "server-2.log", "--workers", "0")
	eventually(t, 30*time.Second, "the old local worker lost", func() (bool, error) {
		ws, err := a.workers(ctx)
		for _, w := range ws {
			if strings.Contains(w.ID, "-local-") && w.State == "lost" {
				return true, nil
			}
		}
		return false, err
	})
	if !srv.term(30 * time.Second) {
		t.Fatal("server did not stop on SIGTERM")
	}

	c.server(t, "server-3.log", "--workers", "0")
	start(t, "agent.log", c.agentArgs(t, "agent-1")...)
	var ids []string
	for i := 0; i < 4; i++ {
		id, err := a.submit(ctx, quickJob)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	a.waitFinal(t, ctx, 60*time.Second, ids...)
	for _, id := range ids {
		r := a.mustRun(ctx, t, id)
		if r.State != "succeeded" || r.Jobs[0].Worker != "agent-1" {
			t.Errorf("run %s %s on %q, want succeeded on agent-1", id, r.State, r.Jobs[0].Worker)
		}
	}
}

// Finding 5: kill -9 of a server with in-process workers while jobs without
// retry run: each gets a new attempt and succeeds; the lost attempt says why.
func TestServerKillRequeuesJobsWithoutRetry(t *testing.T) {
	c := newCluster(t, "--workers", "2", "--worker-ttl", "2s")
	a := c.api
	srv := c.server(t, "server-1.log")
	marks := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var ids []string
	for i := 0; i < 6; i++ {
		id, err := a.submit(ctx, fmt.Sprintf(`name: noretry-%[1]d
jobs:
  slow:
    steps: [{run: "touch %[2]s/started-%[1]d-$HODEI_ATTEMPT; sleep 2"}]
`, i, marks))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitStarted(t, marks)
	srv.kill()
	c.server(t, "server-2.log")
	a.waitFinal(t, ctx, 90*time.Second, ids...)
	lost := 0
	for _, id := range ids {
		r := a.mustRun(ctx, t, id)
		if r.State != "succeeded" {
			t.Errorf("run %s ended %s, want succeeded: %+v", id, r.State, r.Jobs)
		}
		jobs := a.mustJobs(ctx, t, id)
		for _, at := range jobs[0].Attempts {
			if at.State == "lost" {
				lost++
				if at.Reason != "lost: server restarted" {
					t.Errorf("run %s attempt %d lost with reason %q", id, at.N, at.Reason)
				}
			}
		}
	}
	if lost == 0 {
		t.Error("no attempt was lost: the kill did not interrupt a job")
	}
}

// An out-of-process agent keeps running its job while the server is down
// (kill -9) and reports when the server is back: the job succeeds in its
// first attempt.
func TestAgentJobSurvivesServerRestart(t *testing.T) {
	c := newCluster(t, "--workers", "0", "--worker-ttl", "3s")
	a := c.api
	srv := c.server(t, "server-1.log")
	start(t, "agent.log", c.agentArgs(t, "agent-1")...)
	marks := t.TempDir()
	gate := filepath.Join(marks, "gate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id, err := a.submit(ctx, fmt.Sprintf(`name: survive
jobs:
  long:
    steps: [{run: "echo $HODEI_ATTEMPT >> %[1]s/attempts; while [ ! -e %[2]s ]; do sleep 0.1; done; echo done"}]
`, marks, gate))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "job running", func() (bool, error) {
		return len(lines(filepath.Join(marks, "attempts"))) == 1, nil
	})
	srv.kill()
	// The job ends while the server is down.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.server(t, "server-2.log")
	a.waitFinal(t, ctx, 60*time.Second, id)
	r := a.mustRun(ctx, t, id)
	if r.State != "succeeded" || r.Jobs[0].Attempt != 1 {
		t.Fatalf("run %s, job at attempt %d (%+v); want succeeded in attempt 1", r.State, r.Jobs[0].Attempt, r.Jobs[0].Attempts)
	}
	if got := lines(filepath.Join(marks, "attempts")); len(got) != 1 {
		t.Fatalf("the job ran %d times: %v", len(got), got)
	}
}

// SIGTERM drains: the server stops taking work, lets the running step of
// its local worker finish within --drain-timeout, and exits; the job is
// recorded as succeeded in its first attempt. An agent does the same.
func TestSIGTERMDrains(t *testing.T) {
	c := newCluster(t, "--worker-ttl", "3s", "--drain-timeout", "60s")
	a := c.api
	srv := c.server(t, "server-1.log", "--workers", "1")
	marks := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job := func(name string) string {
		id, err := a.submit(ctx, fmt.Sprintf(`name: %[1]s
jobs:
  long:
    steps: [{run: "echo $HODEI_ATTEMPT >> %[2]s/%[1]s; sleep 2; echo end >> %[2]s/%[1]s"}]
`, name, marks))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, name+" running", func() (bool, error) {
			return len(lines(filepath.Join(marks, name))) == 1, nil
		})
		return id
	}
	id := job("server-drain")
	if !srv.term(60 * time.Second) {
		t.Fatal("server did not stop on SIGTERM")
	}
	if got := lines(filepath.Join(marks, "server-drain")); len(got) != 2 || got[1] != "end" {
		t.Fatalf("the step did not finish before the server stopped: %v", got)
	}
	c.server(t, "server-2.log", "--workers", "0")
	ag := start(t, "agent.log", c.agentArgs(t, "agent-1", "--drain-timeout", "60s")...)
	a.waitFinal(t, ctx, 30*time.Second, id)
	r := a.mustRun(ctx, t, id)
	if r.State != "succeeded" || r.Jobs[0].Attempt != 1 {
		t.Fatalf("after the drain: run %s, attempt %d %+v; want succeeded in attempt 1", r.State, r.Jobs[0].Attempt, r.Jobs[0].Attempts)
	}

	id = job("agent-drain")
	if !ag.term(60 * time.Second) {
		t.Fatal("agent did not stop on SIGTERM")
	}
	if got := lines(filepath.Join(marks, "agent-drain")); len(got) != 2 || got[1] != "end" {
		t.Fatalf("the step did not finish before the agent stopped: %v", got)
	}
	a.waitFinal(t, ctx, 30*time.Second, id)
	if r = a.mustRun(ctx, t, id); r.State != "succeeded" || r.Jobs[0].Attempt != 1 {
		t.Fatalf("after the agent's drain: %+v", r)
	}
}

// Finding 3: the server and an agent are both killed; the server comes back
// first and a job is submitted before the agent is back with a new boot id.
// The job must not be sent to the agent's previous incarnation and then run
// twice (the first attempt recorded as failed, exit -1, though it ran to its
// end): it runs once, when the agent has heartbeated.
func TestRestartedAgentRunsNothingSentToItsPreviousBoot(t *testing.T) {
	c := newCluster(t, "--workers", "0", "--worker-ttl", "30s")
	a := c.api
	srv := c.server(t, "server-1.log")
	agentArgs := c.agentArgs(t, "agent-1")
	ag := start(t, "agent-1.log", agentArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	eventually(t, 30*time.Second, "agent joined", func() (bool, error) {
		ws, err := a.workers(ctx)
		for _, w := range ws {
			if w.ID == "agent-1" && w.State == "idle" {
				return true, nil
			}
		}
		return false, err
	})
	ag.kill()
	srv.kill()

	c.server(t, "server-2.log")
	marks := filepath.Join(t.TempDir(), "marks")
	id, err := a.submit(ctx, fmt.Sprintf(`name: once
jobs:
  a:
    retry: 1
    steps: [{run: "echo start $HODEI_ATTEMPT >> %[1]s; sleep 1; echo end $HODEI_ATTEMPT >> %[1]s"}]
`, marks))
	if err != nil {
		t.Fatal(err)
	}
	start(t, "agent-2.log", agentArgs...)
	a.waitFinal(t, ctx, 60*time.Second, id)
	jobs := a.mustJobs(ctx, t, id)
	j := jobs[0]
	got := lines(marks)
	if j.State != "succeeded" || len(got) != 2 || got[0] != "start 1" || got[1] != "end 1" {
		t.Fatalf("job %s, attempts %+v, steps ran: %q; want one attempt, run once", j.State, j.Attempts, got)
	}
	if len(j.Attempts) != 1 || j.Attempts[0].State != "succeeded" {
		t.Fatalf("attempts %+v, want one, succeeded", j.Attempts)
	}
}
