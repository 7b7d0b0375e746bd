package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
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

// TestJobThatFitsNoPool: with --wait-for-agents and an open NATS port, a
// job bigger than every pool's shape creates no worker and is reported as
// unplaceable (the API's `unplaceable`, a warning in the log) until it is
// canceled.
func TestJobThatFitsNoPool(t *testing.T) {
	s := startServer(t, `
pools:
  small:
    provider: local
    min: 0
    max: 2
    shape: {cpu: 1, memory: 256Mi}
`, 0, func(o *server.Options) {
		o.NATSListen, o.WaitForAgents = "", true
	})
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

// TestJobThatNothingCanRunFailsAtOnce: on a server with a pool and an open
// NATS port (agents may join), a job that no worker and no pool could run
// fails once agents have had the join grace (WorkerTTL) to come back, and
// from then on in the scheduling pass that queues it, with why.
func TestJobThatNothingCanRunFailsAtOnce(t *testing.T) {
	s := startServer(t, `
pools:
  small:
    provider: local
    min: 0
    max: 2
    shape: {cpu: 1, memory: 256Mi, labels: [small]}
`, 0, func(o *server.Options) { o.NATSListen = "" })
	const huge = "name: huge\njobs:\n  huge:\n    runs-on: {cpu: 10000}\n    steps: [{run: \"true\"}]\n"
	const gpu = "name: gpu\njobs:\n  gpu:\n    runs-on: {labels: [gpu]}\n    steps: [{run: \"true\"}]\n"
	first := workerstest.Submit(t, s, huge)
	r, jobs := workerstest.WaitRun(t, s, first.ID, 30*time.Second)
	if r.State != state.RunFailed || !strings.HasPrefix(jobs["huge"].Error, "no worker can run it: no worker has joined, and no pool's shape is large enough: asks 10000 cpu, the largest pool's workers have 1") {
		t.Fatalf("first run %s, job error %q", r.State, jobs["huge"].Error)
	}
	// The grace is over: each fails in the pass that queued it, which
	// Submit waits for.
	for _, yaml := range []string{huge, gpu} {
		run := workerstest.Submit(t, s, yaml)
		for _, key := range []string{"huge", "gpu"} {
			if !strings.Contains(yaml, key+":") {
				continue
			}
			j := workerstest.JobByKey(t, s, run.ID, key)
			if j.State != state.JobFailed || !strings.HasPrefix(j.Error, "no worker can run it: ") {
				t.Errorf("%s: %s %q, want failed at once", key, j.State, j.Error)
			}
			if key == "gpu" && j.Error != "no worker can run it: no worker has joined, and no pool's workers have the labels gpu" {
				t.Errorf("gpu: %q", j.Error)
			}
		}
	}
	if st := workerstest.PoolStatus(s, "small"); st.Size != 0 {
		t.Errorf("pool %+v: want no worker for jobs it cannot run", st)
	}
}

// TestQueuedJobSaysPoolAtMax: a job that fits a pool whose workers are all
// busy and that is at its max says so (pool_at_max, with the pool and its
// max), in the job's outlook and in hodei_jobs_waiting.
func TestQueuedJobSaysPoolAtMax(t *testing.T) {
	s := startServer(t, `
pools:
  one:
    provider: local
    min: 0
    max: 1
    shape: {cpu: 1, memory: 256Mi, labels: [one]}
`, 0, func(o *server.Options) {
		o.UnsafeSharedUser = true // the steps wait for a file of the test's temporary directory
		o.HTTPAddr = "127.0.0.1:0"
	})
	gate := filepath.Join(t.TempDir(), "gate")
	job := `
    runs-on: {labels: [one], cpu: 1}
    steps: [{run: 'while [ ! -f "` + gate + `" ]; do sleep 0.02; done'}]`
	run := workerstest.Submit(t, s, "name: two\njobs:\n  a:"+job+"\n  b:"+job+"\n")
	var waiting store.Job
	workerstest.WaitFor(t, 60*time.Second, "one job running on the pool's only worker", func() bool {
		a, b := workerstest.JobByKey(t, s, run.ID, "a"), workerstest.JobByKey(t, s, run.ID, "b")
		switch {
		case a.State == state.JobRunning && b.State == state.JobQueued:
			waiting = b
		case b.State == state.JobRunning && a.State == state.JobQueued:
			waiting = a
		default:
			return false
		}
		return true
	})
	var why scheduler.Reason
	workerstest.WaitFor(t, 10*time.Second, "the queued job to say the pool is at its max", func() bool {
		out, err := s.Orch.Outlook(context.Background(), []string{waiting.ID})
		if err != nil {
			t.Fatal(err)
		}
		why = out[waiting.ID].Waiting
		return why.Code == scheduler.ReasonPoolAtMax
	})
	const want = "pool one is at its max of 1 workers; 1 worker(s) can run it, all busy"
	if why.Detail != want {
		t.Errorf("detail %q, want %q", why.Detail, want)
	}
	// The API says it as `hodei runs RUN` and the UI's queue page show it.
	c, err := client.New("http://"+s.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetRun(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range got.Jobs {
		if j.ID == waiting.ID && (j.Reason != "pool_at_max" || j.ReasonDetail != want) {
			t.Errorf("API: job %s reason %q %q, want pool_at_max %q", j.Key, j.Reason, j.ReasonDetail, want)
		}
	}
	workerstest.WaitFor(t, 10*time.Second, "hodei_jobs_waiting{reason=pool_at_max} to count it", func() bool {
		mfs, err := s.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "hodei_jobs_waiting" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "pool_at_max" && m.GetGauge().GetValue() == 1 {
						return true
					}
				}
			}
		}
		return false
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, _ := workerstest.WaitRun(t, s, run.ID, 90*time.Second); r.State != state.RunSucceeded {
		t.Errorf("run %s, want succeeded once the pool's worker is free", r.State)
	}
}
