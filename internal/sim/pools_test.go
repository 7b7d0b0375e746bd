package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

const tinyPools = `
pools:
  p:
    provider: local
    min: 0
    max: 2
    idle_timeout: 5m
    startup_delay: 60s
    cost_per_hour: 3
    shape: {cpu: 1, memory: 1Gi}
`

// runPools simulates two 1-core jobs, submitted at 0 s (100 s long) and
// 10 s (50 s long), on a pool of at most two 1-core workers that take a
// minute to start.
func runPools(t *testing.T, mode string) (*Result, *Sim) {
	t.Helper()
	cfg, err := poolsfile.ParseConfig("pools.yaml", []byte(tinyPools))
	if err != nil {
		t.Fatal(err)
	}
	w := workload(t, []Worker{worker("unused", 1000)}, one("p1", "t", 0, 0, 100, 1000), one("p2", "t", 0, 10, 50, 1000))
	return runOpts(t, w, Options{Policy: scheduler.PolicyHodei, Pools: &PoolOptions{Config: cfg, Mode: mode, Period: 30 * time.Second}})
}

func TestPoolsStaticKeepsMax(t *testing.T) {
	t.Parallel()
	r, s := runPools(t, AutoscaleStatic)
	// Both workers from the first submit: no wait.
	for j, want := range [][2]float64{{0, 100}, {10, 60}} {
		if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
			t.Errorf("job %d ran %v-%v, want %v-%v", j, st, en, want[0], want[1])
		}
	}
	// Two workers over the 100 s of the run; busy 100 + 50 s of it.
	if want := 2 * 100.0 / 3600; !near(r.WorkerHours, want) || !near(r.IdleWorkerHours, (200-150)/3600.0) || !near(r.Cost, 3*want) {
		t.Errorf("worker-hours %v idle %v cost %v, want %v, %v, %v", r.WorkerHours, r.IdleWorkerHours, r.Cost, want, 50/3600.0, 3*want)
	}
	// Utilization is over the workers alive: 150 busy core-seconds of 200.
	if r.Utilization != 0.75 {
		t.Errorf("utilization %v, want 0.75", r.Utilization)
	}
	if r.ForecastMAPE != nil || r.Autoscale != "static" {
		t.Errorf("autoscale %q, forecast %v", r.Autoscale, r.ForecastMAPE)
	}
}

func TestPoolsScalersWaitForStartup(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{AutoscaleReactive, AutoscalePredictive} {
		r, s := runPools(t, mode)
		// At 0 s the first job asks for a worker: it joins at 60 s. At 30 s
		// the second job (queued since 10 s) finds the first worker taken
		// and asks for another: it joins at 90 s.
		for j, want := range [][2]float64{{60, 160}, {90, 140}} {
			if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
				t.Errorf("%s: job %d ran %v-%v, want %v-%v", mode, j, st, en, want[0], want[1])
			}
		}
		// Worker 1: 0-160 s, idle while starting (60 s); worker 2: 30-160 s,
		// idle 60 s starting and 20 s after its job.
		hours := (160.0 + 130) / 3600
		if !near(r.WorkerHours, hours) || !near(r.IdleWorkerHours, 140/3600.0) || math.Abs(r.Cost-round3(3*hours)) > 1e-9 {
			t.Errorf("%s: worker-hours %v idle %v cost %v, want %v, %v, %v", mode, r.WorkerHours, r.IdleWorkerHours, r.Cost, hours, 140/3600.0, 3*hours)
		}
		// 150 busy core-seconds of the 290 the two workers were alive.
		if want := math.Round(150.0/290*1e4) / 1e4; r.Utilization != want {
			t.Errorf("%s: utilization %v, want %v", mode, r.Utilization, want)
		}
		if r.P95WaitS != 80 {
			t.Errorf("%s: p95 wait %v, want 80 s", mode, r.P95WaitS)
		}
	}
}

// TestPoolsEphemeralWorkerExits: an ephemeral worker leaves after its job,
// so the second job (queued while the pool was at max) needs a new worker
// and its start-up; a long-lived worker would have taken it at once.
func TestPoolsEphemeralWorkerExits(t *testing.T) {
	t.Parallel()
	run := func(ephemeral bool) (*Result, *Sim) {
		y := strings.Replace(tinyPools, "max: 2", "max: 1", 1)
		if ephemeral {
			y += "    ephemeral: true\n"
		}
		cfg, err := poolsfile.ParseConfig("pools.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		w := workload(t, []Worker{worker("unused", 1000)}, one("p1", "t", 0, 0, 100, 1000), one("p2", "t", 0, 10, 50, 1000))
		return runOpts(t, w, Options{Policy: scheduler.PolicyHodei,
			Pools: &PoolOptions{Config: cfg, Mode: AutoscaleReactive, Period: 30 * time.Second}})
	}
	// Long-lived: one worker (0-210 s) runs p1 60-160 and p2 160-210.
	_, s := run(false)
	if st, _ := jobTimes(s, 1); st != 160 {
		t.Fatalf("long-lived: p2 started at %v, want 160", st)
	}
	// Ephemeral: the worker exits at 160; the decision at 180 starts another,
	// which joins at 240 and runs p2 to 290.
	r, s := run(true)
	if st, en := jobTimes(s, 1); st != 240 || en != 290 {
		t.Errorf("ephemeral: p2 ran %v-%v, want 240-290", st, en)
	}
	if want := (160.0 + 110) / 3600; !near(r.WorkerHours, want) {
		t.Errorf("ephemeral: worker-hours %v, want %v (0-160 s and 180-290 s)", r.WorkerHours, want)
	}
}
