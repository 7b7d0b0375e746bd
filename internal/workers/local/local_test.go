package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// TestLocalPoolScales checks the manager with the local provider: it starts
// min workers, adds one for a queued job that fits no running worker, and
// drains and removes the idle one after idle_timeout, never going below
// min.
func TestLocalPoolScales(t *testing.T) {
	s := startServer(t, `
pools:
  small:
    provider: local
    min: 1
    max: 2
    idle_timeout: 300ms
    shape: {cpu: 1, memory: 256Mi, labels: [small]}
`, 0, func(o *server.Options) {
		// The steps wait for a file of the test's temporary directory.
		o.UnsafeSharedUser = true
	})
	workerstest.WaitFor(t, 40*time.Second, "min workers to join", func() bool {
		return workerstest.PoolWorkers(s, "small")["idle"] == 1 && workerstest.PoolStatus(s, "small").Idle == 1
	})

	gate := filepath.Join(t.TempDir(), "gate")
	job := `
    runs-on: {labels: [small], cpu: 1}
    steps: [{run: 'while [ ! -f "` + gate + `" ]; do sleep 0.02; done; echo done $HODEI_WORKER'}]`
	run := workerstest.Submit(t, s, "name: two\njobs:\n  a:"+job+"\n  b:"+job+"\n")
	// Each job takes a whole worker: the second one waits for a new one.
	workerstest.WaitFor(t, 60*time.Second, "a second worker for the queued job", func() bool {
		return workerstest.PoolWorkers(s, "small")["busy"] == 2
	})
	workerstest.WaitFor(t, 5*time.Second, "the pool status to show two busy workers", func() bool {
		st := workerstest.PoolStatus(s, "small")
		return st.Size == 2 && st.Busy == 2
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, jobs := workerstest.WaitRun(t, s, run.ID, 90*time.Second)
	if r.State != state.RunSucceeded || jobs["a"].WorkerID == jobs["b"].WorkerID {
		t.Fatalf("run %s; jobs on %s and %s", r.State, jobs["a"].WorkerID, jobs["b"].WorkerID)
	}

	// Idle for 300ms: one is drained and removed; min keeps the other.
	workerstest.WaitFor(t, 60*time.Second, "the pool to shrink back to min", func() bool {
		st := workerstest.PoolStatus(s, "small")
		return st.Size == 1 && st.Idle == 1
	})
	alive := 0
	for _, w := range s.Orch.View().Workers {
		if w.Pool == "small" && (w.State == "idle" || w.State == "busy") {
			alive++
		}
	}
	if alive != 1 {
		t.Errorf("%d workers of the pool alive, want 1 (min)", alive)
	}
}

// TestLocalEphemeralPool checks ephemeral workers: created for a queued
// job, they run it and are gone after it. The jobs ask for the whole shape:
// the scheduler packs jobs by capacity, and an ephemeral worker runs the
// jobs it was given in the pass that gave it its first (docs/workers.md).
func TestLocalEphemeralPool(t *testing.T) {
	s := startServer(t, `
pools:
  once:
    provider: local
    min: 0
    max: 3
    ephemeral: true
    idle_timeout: 1m
    shape: {cpu: 1, memory: 256Mi, labels: [once]}
`, 0, nil)
	if st := workerstest.PoolStatus(s, "once"); st.Size != 0 {
		t.Fatalf("pool with min 0 has %d workers before any job", st.Size)
	}
	run := workerstest.Submit(t, s, `name: eph
jobs:
  a:
    runs-on: {labels: [once], cpu: 1}
    steps: [{run: echo one $HODEI_WORKER}]
  b:
    runs-on: {labels: [once], cpu: 1}
    steps: [{run: echo two $HODEI_WORKER}]
`)
	r, jobs := workerstest.WaitRun(t, s, run.ID, 90*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v", r.State, jobs)
	}
	if jobs["a"].WorkerID == jobs["b"].WorkerID {
		t.Errorf("both jobs ran on ephemeral worker %s", jobs["a"].WorkerID)
	}
	workerstest.WaitFor(t, 60*time.Second, "ephemeral workers to be gone", func() bool {
		return workerstest.PoolStatus(s, "once").Size == 0
	})
}

// TestImageJobWithoutDocker checks that a job with an image that reaches a
// worker without a container engine fails with a message that says why.
// (Agents without an engine lack the "docker" label the job asks for; this
// one was given the label by hand.)
func TestImageJobWithoutDocker(t *testing.T) {
	s := startServer(t, "", 1, func(o *server.Options) {
		o.Docker = "off"
		o.WorkerLabels = []string{"docker"}
	})
	run := workerstest.Submit(t, s, "name: img\njobs:\n  j:\n    image: alpine:3.20\n    steps: [{run: echo hi}]\n")
	r, jobs := workerstest.WaitRun(t, s, run.ID, 90*time.Second)
	if r.State != state.RunFailed || !strings.Contains(jobs["j"].Error, "the job runs in image alpine:3.20, but worker") ||
		!strings.Contains(jobs["j"].Error, "has no container engine") {
		t.Errorf("run %s, job error %q", r.State, jobs["j"].Error)
	}
}

// TestPoolStatusWithAutoscaler: a server given the predictive autoscaler
// reports each pool's cost account and saves the scaler's history in its
// data directory from the first decision on.
func TestPoolStatusWithAutoscaler(t *testing.T) {
	var dataDir string
	s := startServer(t, `
pools:
  acct:
    provider: local
    min: 1
    max: 1
    cost_per_hour: 2
    shape: {cpu: 1, memory: 256Mi}
`, 0, func(o *server.Options) {
		o.Scaler = autoscale.New(autoscale.Options{Predictive: true})
		dataDir = o.DataDir
	})
	var st workers.PoolStatus
	workerstest.WaitFor(t, 40*time.Second, "the pool's account to count worker-hours", func() bool {
		st = workerstest.PoolStatus(s, "acct")
		return st.Account != nil && st.Account.WorkerHours > 0
	})
	if st.Account.Cost != 2*st.Account.WorkerHours || st.Account.IdleWorkerHours > st.Account.WorkerHours {
		t.Errorf("account %+v: want cost = 2 x worker-hours, idle <= worker-hours", *st.Account)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "autoscale.json")); err != nil {
		t.Errorf("autoscaler history not saved: %v", err)
	}
}

// TestJobThatFitsNoPool: a job bigger than every pool's shape creates no
// worker and is reported as unplaceable (the API's `unplaceable`, a warning
// in the log) until it is canceled.
func TestJobThatFitsNoPool(t *testing.T) {
	s := startServer(t, `
pools:
  small:
    provider: local
    min: 0
    max: 2
    shape: {cpu: 1, memory: 256Mi}
`, 0, nil)
	run := workerstest.Submit(t, s, `name: too-big
jobs:
  huge:
    runs-on: {cpu: 64, memory: 1Gi}
    steps: [{run: "true"}]
`)
	var stuck []workers.Demand
	workerstest.WaitFor(t, 40*time.Second, "the job to be reported as fitting no pool", func() bool {
		stuck = s.Workers.Unplaceable()
		return len(stuck) == 1
	})
	if d := stuck[0]; d.Jobs != 1 || d.CPUMilli != 64000 || d.Memory != 1<<30 {
		t.Errorf("unplaceable %+v, want the 64-cpu job", d)
	}
	if st := workerstest.PoolStatus(s, "small"); st.Size != 0 || st.Demand != 0 {
		t.Errorf("pool %+v: want no worker and no demand for a job that does not fit it", st)
	}
	if err := s.Orch.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	workerstest.WaitFor(t, 40*time.Second, "the canceled job to leave the report", func() bool { return len(s.Workers.Unplaceable()) == 0 })
}
