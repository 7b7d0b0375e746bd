package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// slackViolations drives an engine on a fleet of identical one-core workers
// with a random stream of one-core jobs (random tenants, priorities from -2
// to 3, prediction keys whose durations differ a lot) and counts the plans
// that break the bounded-slack guarantee: after Plan(now), a job of
// priority 0 or above that has waited longer than slack is still queued
// while a job that had not waited that long was placed by the same plan.
func slackViolations(t *testing.T, seed uint64, cfg Config, slack time.Duration) (violations, overdue int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	e := NewEngine(cfg)
	for i := range 8 {
		e.UpsertWorker(WorkerSpec{ID: fmt.Sprintf("w%d", i), Capacity: Resources{CPUMilli: 1000, Memory: 1 << 30}})
	}
	type qj struct {
		ready time.Time
		prio  int
	}
	queued := map[string]qj{}
	running := map[string]time.Time{} // job -> finish
	dur := map[string]time.Duration{}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	next := 0
	for step := 0; step < 3000; step++ {
		now = now.Add(time.Duration(1+rng.IntN(20)) * time.Second)
		for id, end := range running {
			if !end.After(now) {
				e.Finish(id, now, dur[id], true)
				e.RemovePipeline("p" + id)
				delete(running, id)
			}
		}
		for range rng.IntN(3) {
			next++
			id := fmt.Sprintf("%06d", next)
			key := fmt.Sprintf("k%d", rng.IntN(6))
			prio := rng.IntN(6) - 2
			e.AddPipeline(PipelineSpec{ID: "p" + id, Tenant: fmt.Sprintf("t%d", rng.IntN(3)), Priority: prio,
				Jobs: []JobSpec{{ID: id, Key: key, Request: Resources{CPUMilli: 1000, Memory: 1 << 20}}}})
			// key k0 is long, the others short: the ranking prefers short work.
			dur[id] = time.Duration(10+rng.IntN(30)) * time.Second
			if key == "k0" {
				dur[id] = time.Duration(200+rng.IntN(200)) * time.Second
			}
			e.Enqueue(id, now)
			queued[id] = qj{now, prio}
		}
		as := e.Plan(now)
		placedYoung := false
		for _, a := range as {
			q := queued[a.JobID]
			if now.Sub(q.ready) <= slack {
				placedYoung = true
			}
			delete(queued, a.JobID)
			running[a.JobID] = now.Add(dur[a.JobID])
		}
		for _, q := range queued {
			if q.prio >= 0 && now.Sub(q.ready) > slack {
				overdue++
				if placedYoung {
					violations++
				}
				break
			}
		}
	}
	return violations, overdue
}

// With Slack set, no plan places a job that has waited less than the slack
// while one of priority 0 or above that has waited longer stays queued:
// overdue jobs go first, oldest first. Without it, the ranking (shortest
// predicted work first) does pass them over, which is what the bound is for.
func TestEngineBoundedSlack(t *testing.T) {
	const slack = 2 * time.Minute
	var without int
	for seed := uint64(1); seed <= 5; seed++ {
		v, overdue := slackViolations(t, seed, Config{Slack: slack, SlackFactor: -1}, slack)
		if v != 0 {
			t.Errorf("seed %d: %d plans placed a young job while an overdue one waited", seed, v)
		}
		if overdue == 0 {
			t.Errorf("seed %d: no job was ever overdue; the workload does not load the fleet", seed)
		}
		w, _ := slackViolations(t, seed, Config{}, slack)
		without += w
	}
	if without == 0 {
		t.Error("without the bound no plan passed over an overdue job: the test does not exercise the mechanism")
	}
}

// A job below priority 0 runs after the jobs at 0 that are queued with it,
// and, under a constant stream of them, still runs thanks to aging.
func TestEngineNegativePriorityAges(t *testing.T) {
	e := NewEngine(Config{Aging: time.Minute})
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: Resources{CPUMilli: 1000, Memory: 1 << 30}})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e.AddPipeline(PipelineSpec{ID: "low", Tenant: "t", Priority: -10, Jobs: []JobSpec{{ID: "low", Request: Resources{CPUMilli: 1000}}}})
	e.Enqueue("low", now)
	started := time.Time{}
	for i := 0; i < 200 && started.IsZero(); i++ {
		id := fmt.Sprintf("n%03d", i)
		e.AddPipeline(PipelineSpec{ID: id, Tenant: "t", Jobs: []JobSpec{{ID: id, Request: Resources{CPUMilli: 1000}}}})
		e.Enqueue(id, now)
		for _, a := range e.Plan(now) {
			if a.JobID == "low" {
				started = now
			}
			if i == 0 && a.JobID == "low" {
				t.Fatal("the priority -10 job went before a priority 0 job queued with it")
			}
			now = now.Add(30 * time.Second)
			e.Finish(a.JobID, now, 30*time.Second, true)
		}
	}
	if started.IsZero() {
		t.Fatal("the priority -10 job never ran under a stream of priority 0 jobs")
	}
	// 10 levels of one minute each, and one more to win the tie-break.
	if waited := started.Sub(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)); waited < 10*time.Minute || waited > 12*time.Minute {
		t.Errorf("the priority -10 job started after %v, want 10-12 minutes of aging", waited)
	}
}

func TestEffectivePriority(t *testing.T) {
	for _, c := range []struct{ pipe, job, want int }{
		{0, 0, 0}, {50, 0, 50}, {0, 10, 10}, {10, 50, 50}, {-5, 0, -5}, {0, -5, -5}, {-5, -10, -10}, {-5, 10, 10}, {20, -10, 20},
	} {
		if got := EffectivePriority(c.pipe, c.job); got != c.want {
			t.Errorf("EffectivePriority(%d, %d) = %d, want %d", c.pipe, c.job, got, c.want)
		}
	}
}
