package orchestrator

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/state"
)

const tooLarge = `name: big
jobs:
  huge:
    runs-on: {cpu: 64}
    steps: [{run: "true"}]
  docker:
    runs-on: {labels: [docker]}
    steps: [{run: "true"}]
`

func (h *harness) outlook(id string) Outlook {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := h.o.Outlook(ctx, []string{id})
	if err != nil {
		h.t.Fatal(err)
	}
	return out[id]
}

// TestQueuedJobSaysWhyItWaits: a job larger than every worker, or asking
// for a label none has, stays queued (a worker may join) and says why as
// soon as the pass that could not place it is committed.
func TestQueuedJobSaysWhyItWaits(t *testing.T) {
	h := newHarness(t, Config{})
	h.workerWith("w1", 2000)
	run := h.submit(tooLarge)
	// Submit answers after the batch that queued the jobs and ran the
	// scheduling pass was committed.
	for key, want := range map[string]scheduler.Reason{
		"huge":   {Code: scheduler.ReasonTooLarge, Detail: "asks 64 cpu, the largest worker has 2"},
		"docker": {Code: scheduler.ReasonLabels, Detail: "no worker has the label docker"},
	} {
		j := h.job(run.ID, key)
		if j.State != state.JobQueued {
			t.Fatalf("%s: %s, want queued", key, j.State)
		}
		if got := h.outlook(j.ID).Waiting; got != want {
			t.Errorf("%s waits: %+v, want %+v", key, got, want)
		}
	}
	// hodei_jobs_waiting counts them by reason from the next view on (the
	// view is published at most every 100 ms: each Outlook is a batch).
	waiting := func(reason scheduler.ReasonCode) int {
		var m dto.Metric
		if err := h.o.cfg.Metrics.Waiting.WithLabelValues(string(reason)).Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetGauge().GetValue())
	}
	h.waitFor(func() bool {
		h.outlook(run.ID)
		return waiting(scheduler.ReasonTooLarge) == 1 && waiting(scheduler.ReasonLabels) == 1
	}, "hodei_jobs_waiting to count one job too large and one with labels no worker has")
	if n := waiting(scheduler.ReasonBusy); n != 0 {
		t.Errorf("hodei_jobs_waiting{reason=workers_busy} = %d, want 0", n)
	}
}

// TestFixedFleetFailsWhatNoWorkerCanRun: with a fixed fleet (no pools, no
// agents that may join), such jobs fail at once, with why, but only once
// every worker of the fleet has joined.
func TestFixedFleetFailsWhatNoWorkerCanRun(t *testing.T) {
	h := newHarness(t, Config{FailUnrunnable: true, InProcess: []string{"w1"}})
	run := h.submit(tooLarge)
	huge := h.job(run.ID, "huge")
	if huge.State != state.JobQueued {
		t.Fatalf("before the fleet joined: %s, want queued", huge.State)
	}
	if got := h.outlook(huge.ID).Waiting.Code; got != scheduler.ReasonNoWorkers {
		t.Fatalf("before the fleet joined: waits for %q, want %q", got, scheduler.ReasonNoWorkers)
	}
	h.workerWith("w1", 2000)
	h.waitFor(func() bool { return h.job(run.ID, "docker").State.Final() && h.job(run.ID, "huge").State.Final() }, "both jobs to end")
	for key, want := range map[string]string{
		"huge":   "no worker can run it: asks 64 cpu, the largest worker has 2",
		"docker": "no worker can run it: no worker has the label docker",
	} {
		j := h.job(run.ID, key)
		if j.State != state.JobFailed || j.Error != want {
			t.Errorf("%s: %s %q, want failed %q", key, j.State, j.Error, want)
		}
	}
	// Once the fleet has joined, a job is failed in the pass that queued it.
	run2 := h.submit(tooLarge)
	if j := h.job(run2.ID, "huge"); j.State != state.JobFailed || !strings.HasPrefix(j.Error, "no worker can run it") {
		t.Errorf("second run: %s %q, want failed at once", j.State, j.Error)
	}
}

// TestUnrunnableWithPoolsFailsAfterTheJoinGrace: with pools and agents that
// may connect, a job that no worker and no pool could run waits out the join
// grace (agents of before a restart may come back), then fails with why; from
// then on such a job fails in the pass that queues it. A job a pool fits waits
// for the pool, and says when the pool is at its max.
func TestUnrunnableWithPoolsFailsAfterTheJoinGrace(t *testing.T) {
	var mu sync.Mutex
	pool := scheduler.Pool{Name: "dock", Labels: []string{"docker", "linux"}, Capacity: scheduler.Resources{CPUMilli: 2000, Memory: 4 << 30}, Max: 1}
	pools := func() ([]scheduler.Pool, bool) {
		mu.Lock()
		defer mu.Unlock()
		return []scheduler.Pool{pool}, true
	}
	const grace = 5 * time.Second
	h := newHarness(t, Config{FailUnrunnable: true, JoinGrace: grace, Pools: pools})
	// The grace is long enough for the harness to submit within it on a
	// busy machine.
	run := h.submit(tooLarge)
	huge, docker := h.job(run.ID, "huge"), h.job(run.ID, "docker")
	if huge.State != state.JobQueued {
		t.Fatalf("within the join grace: %s, want queued", huge.State)
	}
	if got := h.outlook(huge.ID).Waiting; got.Code != scheduler.ReasonTooLarge || !got.Never() {
		t.Errorf("huge waits for %+v, want %s", got, scheduler.ReasonTooLarge)
	}
	if got := h.outlook(docker.ID).Waiting; got.Code != scheduler.ReasonPoolScaling {
		t.Errorf("docker waits for %+v, want %s", got, scheduler.ReasonPoolScaling)
	}
	mu.Lock()
	pool.Size = 1
	mu.Unlock()
	if got := h.outlook(docker.ID).Waiting; got.Code != scheduler.ReasonPoolAtMax || !strings.HasPrefix(got.Detail, "pool dock is at its max of 1 workers") {
		t.Errorf("docker waits for %+v, want %s", got, scheduler.ReasonPoolAtMax)
	}
	h.waitFor(func() bool { return h.job(run.ID, "huge").State.Final() }, "the huge job to fail once the grace is over")
	want := "no worker can run it: no worker has joined, and no pool's shape is large enough: asks 64 cpu, the largest pool's workers have 2"
	if j := h.job(run.ID, "huge"); j.State != state.JobFailed || j.Error != want {
		t.Errorf("huge: %s %q, want failed %q", j.State, j.Error, want)
	}
	if j := h.job(run.ID, "docker"); j.State != state.JobQueued {
		t.Errorf("docker: %s, want still queued for its pool", j.State)
	}
	run2 := h.submit(tooLarge)
	if j := h.job(run2.ID, "huge"); j.State != state.JobFailed || j.Error != want {
		t.Errorf("second run's huge: %s %q, want failed at once", j.State, j.Error)
	}
}

// TestPendingJobSaysWhyItWaits: a job whose needs have not ended waits on
// them, and every job of a run held back by its concurrency group says
// which run holds the group.
func TestPendingJobSaysWhyItWaits(t *testing.T) {
	h := newHarness(t, Config{})
	const held = `name: deploy
concurrency: {group: prod, limit: 1}
jobs:
  build:
    runs-on: {cpu: 64}
    steps: [{run: "true"}]
  test:
    needs: [build]
    steps: [{run: "true"}]
`
	first := h.submit(held)
	test := h.job(first.ID, "test")
	if test.State != state.JobPending {
		t.Fatalf("test: %s, want pending", test.State)
	}
	want := scheduler.Reason{Code: scheduler.ReasonNeeds, Detail: "waiting on build"}
	if got := h.outlook(test.ID).Waiting; got != want {
		t.Errorf("test waits: %+v, want %+v", got, want)
	}
	second := h.submit(held)
	for _, key := range []string{"build", "test"} {
		j := h.job(second.ID, key)
		if j.State != state.JobPending {
			t.Fatalf("second run's %s: %s, want pending", key, j.State)
		}
		want := scheduler.Reason{Code: scheduler.ReasonConcurrency,
			Detail: "concurrency group prod allows 1 run(s) at once; held by " + first.ID}
		if got := h.outlook(j.ID).Waiting; got != want {
			t.Errorf("second run's %s waits: %+v, want %+v", key, got, want)
		}
	}
}
