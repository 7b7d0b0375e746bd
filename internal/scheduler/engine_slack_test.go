package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// smallWorkers is an engine with n workers of one CPU and 1 GiB, w0 to
// w(n-1).
func smallWorkers(cfg Config, n int) *Engine {
	e := NewEngine(cfg)
	for i := range n {
		e.UpsertWorker(WorkerSpec{ID: fmt.Sprintf("w%d", i), Capacity: Resources{CPUMilli: 1000, Memory: 1 << 30}})
	}
	return e
}

// slackViolations drives an engine on a fleet of identical one-core workers
// with a random stream of one-core jobs (random tenants, priorities from -2
// to 3, prediction keys whose durations differ a lot) and keeps, beside
// it, the order FIFO would place the jobs of priority 0 or above in (the
// order they became ready) and a pointer that moves one job down that order
// for each of them the engine places. A job the pointer passed while it
// was queued is late; it counts as a violation if, more than slack after
// that, a plan places a job of priority 0 that is not late while it stays
// queued. It returns the violations and the number of late jobs.
func slackViolations(t *testing.T, seed uint64, cfg Config, slack time.Duration) (violations, late int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	e := smallWorkers(cfg, 8)
	prio := map[string]int{}
	queued := map[string]bool{}
	lateSince := map[string]time.Time{} // late job -> when the pointer passed it
	var fifo []string                   // jobs of priority >= 0 from the pointer on
	running := map[string]time.Time{}   // job -> finish
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
			p := rng.IntN(6) - 2
			e.AddPipeline(PipelineSpec{ID: "p" + id, Tenant: fmt.Sprintf("t%d", rng.IntN(3)), Priority: p,
				Jobs: []JobSpec{{ID: id, Key: key, Request: Resources{CPUMilli: 1000, Memory: 1 << 20}}}})
			// key k0 is long, the others short: the ranking prefers short work.
			dur[id] = time.Duration(10+rng.IntN(30)) * time.Second
			if key == "k0" {
				dur[id] = time.Duration(200+rng.IntN(200)) * time.Second
			}
			e.Enqueue(id, now)
			prio[id], queued[id] = p, true
			if p >= 0 {
				fifo = append(fifo, id)
			}
		}
		as := e.Plan(now)
		placedPunctual := false
		for _, a := range as {
			if _, ok := lateSince[a.JobID]; !ok && prio[a.JobID] == 0 {
				placedPunctual = true
			}
			delete(queued, a.JobID)
			delete(lateSince, a.JobID)
			running[a.JobID] = now.Add(dur[a.JobID])
		}
		for _, a := range as {
			if prio[a.JobID] < 0 || len(fifo) == 0 {
				continue
			}
			if head := fifo[0]; queued[head] {
				lateSince[head] = now
				late++
			}
			fifo = fifo[1:]
		}
		if !placedPunctual {
			continue
		}
		for _, since := range lateSince {
			if now.Sub(since) > slack {
				violations++
				break
			}
		}
	}
	return violations, late
}

// With Slack set, a job that FIFO would have started (by the virtual FIFO
// clock) and that has stayed queued Slack longer goes before every job of
// priority 0 that is not late. Without it, the ranking (shortest predicted
// work first) does pass such jobs over, which is what the bound is for.
func TestEngineBoundedSlack(t *testing.T) {
	const slack = 2 * time.Minute
	var without int
	for seed := uint64(1); seed <= 5; seed++ {
		v, late := slackViolations(t, seed, Config{Slack: slack}, slack)
		if v != 0 {
			t.Errorf("seed %d: %d plans placed a punctual job while a late one waited more than the slack", seed, v)
		}
		if late == 0 {
			t.Errorf("seed %d: no job was ever late; the workload does not load the fleet", seed)
		}
		w, _ := slackViolations(t, seed, Config{}, slack)
		without += w
	}
	if without == 0 {
		t.Error("without the bound no plan passed over a late job: the test does not exercise the mechanism")
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

// windowViolations drives an engine on identical one-core workers with a
// random stream of one-core jobs of priority 0 (random tenants; pipelines
// of one job or a chain of three; keys whose durations differ a lot, so
// the ranking prefers some) and counts, for every plan, the placed jobs
// that became ready more than bound after a job that stays queued.
func windowViolations(t *testing.T, seed uint64, cfg Config, bound time.Duration) (violations, passed int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	e := smallWorkers(cfg, 6)
	ready := map[string]time.Time{}
	running := map[string]time.Time{} // job -> finish
	dur := map[string]time.Duration{}
	next := map[string]string{} // job -> the job that needs it
	pipeOf := map[string]string{}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	for step := 0; step < 4000; step++ {
		now = now.Add(time.Duration(1+rng.IntN(20)) * time.Second)
		for id, end := range running {
			if end.After(now) {
				continue
			}
			e.Finish(id, now, dur[id], true)
			delete(running, id)
			if nx, ok := next[id]; ok {
				e.Enqueue(nx, now)
				ready[nx] = now
			} else {
				e.RemovePipeline(pipeOf[id])
			}
		}
		for range rng.IntN(3) {
			n++
			p := fmt.Sprintf("p%06d", n)
			key := fmt.Sprintf("k%d", rng.IntN(6))
			d := time.Duration(10+rng.IntN(30)) * time.Second
			if key == "k0" { // long: the ranking puts it back
				d = time.Duration(300+rng.IntN(300)) * time.Second
			}
			stages := 1 + 2*rng.IntN(2)
			spec := PipelineSpec{ID: p, Tenant: fmt.Sprintf("t%d", rng.IntN(3))}
			for s := range stages {
				id := fmt.Sprintf("%s-%d", p, s)
				js := JobSpec{ID: id, Key: key, Request: Resources{CPUMilli: 1000, Memory: 1 << 20}}
				if s > 0 {
					prev := fmt.Sprintf("%s-%d", p, s-1)
					js.Needs = []string{prev}
					next[prev] = id
				}
				spec.Jobs = append(spec.Jobs, js)
				dur[id], pipeOf[id] = d, p
			}
			e.AddPipeline(spec)
			first := spec.Jobs[0].ID
			e.Enqueue(first, now)
			ready[first] = now
		}
		as := e.Plan(now)
		var latest time.Time
		for _, a := range as {
			if r := ready[a.JobID]; r.After(latest) {
				latest = r
			}
			delete(ready, a.JobID)
			running[a.JobID] = now.Add(dur[a.JobID])
		}
		for _, r := range ready {
			if latest.Sub(r) > 0 {
				passed++
			}
			if latest.Sub(r) > bound {
				violations++
			}
		}
	}
	return violations, passed
}

// With a Window, a plan never places a job that became ready more than 3 ×
// Window after one of the same priority that stays queued (its key is
// within Window of its ready time, and so is the fair-share delay), however
// the ranking prefers short work; without it, the ranking does.
func TestEngineWindowBoundsOvertaking(t *testing.T) {
	const window = time.Minute
	var without int
	for seed := uint64(1); seed <= 4; seed++ {
		v, passed := windowViolations(t, seed, Config{Window: window}, 3*window)
		if v != 0 {
			t.Errorf("seed %d: %d queued jobs were passed by one ready more than %v later", seed, v, 3*window)
		}
		if passed == 0 {
			t.Errorf("seed %d: no job was ever passed over; the workload does not load the fleet", seed)
		}
		w, _ := windowViolations(t, seed, Config{}, 3*window)
		without += w
	}
	if without == 0 {
		t.Error("without the window no job was passed by a much younger one: the test does not exercise the bound")
	}
}

// bigJobStart drives one 4-core worker: at 00:00 it runs four 1-core jobs
// and a 4-core job is queued; from then on a 1-core job (60 s) arrives every
// 15 s. Each end frees one core, which the next small job fills, so the
// large job fits only if the worker is kept for it. It returns when the
// large job started (zero if it did not within an hour) and when a small
// job first passed it (the virtual FIFO pointer's step that makes it late).
func bigJobStart(t *testing.T, cfg Config) (started, late time.Time) {
	t.Helper()
	e := NewEngine(cfg)
	for range 5 {
		e.Predictor().Observe("small", time.Minute)
		e.Predictor().Observe("big", time.Minute)
	}
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: Resources{CPUMilli: 4000, Memory: 4 << 30}})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	add := func(key string, cpu int64, at time.Time) string {
		n++
		id := fmt.Sprintf("%04d", n)
		e.AddPipeline(PipelineSpec{ID: "p" + id, Tenant: "t", Jobs: []JobSpec{{ID: id, Key: key, Request: Resources{CPUMilli: cpu, Memory: 1 << 20}}}})
		e.Enqueue(id, at)
		return id
	}
	ends := map[string]time.Time{}
	for i := range 4 {
		id := add("small", 1000, t0)
		e.Plan(t0)
		ends[id] = t0.Add(time.Duration(15*(i+1)) * time.Second)
	}
	big := add("big", 4000, t0)
	for now := t0; now.Before(t0.Add(time.Hour)); now = now.Add(5 * time.Second) {
		for id, end := range ends {
			if !end.After(now) {
				e.Finish(id, now, time.Minute, true)
				e.RemovePipeline("p" + id)
				delete(ends, id)
			}
		}
		if now.Sub(t0)%(15*time.Second) == 0 && now.After(t0) {
			add("small", 1000, now)
		}
		for _, a := range e.Plan(now) {
			if a.JobID == big {
				return now, late
			}
			if late.IsZero() {
				// The first small job placed after the large one was
				// queued passes it: FIFO would have started the large
				// job by now if it had fit.
				late = now
			}
			ends[a.JobID] = now.Add(time.Minute)
		}
	}
	return time.Time{}, late
}

// A late job that needs a large hole starts within Slack plus the time
// the worker kept for it takes to drain (the predicted ends of the jobs it
// runs, here one minute), although a stream of small jobs would fill every
// hole as it opens; without Slack it waits as long as the stream lasts.
func TestEngineSlackKeepsWorkerForLargeJob(t *testing.T) {
	const slack = 2 * time.Minute
	started, late := bigJobStart(t, Config{Slack: slack})
	if started.IsZero() {
		t.Fatal("with Slack the 4-core job never started under a stream of 1-core jobs")
	}
	if late.IsZero() {
		t.Fatal("no small job passed the large one: the test does not exercise the bound")
	}
	// The pointer passes the large job at the first small placement after
	// it; it is overdue slack later, and the kept worker drains within a
	// minute (its jobs' predicted ends) plus one 5 s step of the loop.
	if bound := late.Add(slack + time.Minute + 10*time.Second); started.After(bound) {
		t.Errorf("the 4-core job became late at %v and started at %v, after %v", late.Format(time.TimeOnly), started.Format(time.TimeOnly), bound.Format(time.TimeOnly))
	}
	if s, _ := bigJobStart(t, Config{}); !s.IsZero() {
		t.Errorf("without Slack the 4-core job started at %v: the stream does not starve it, the test proves nothing", s.Format(time.TimeOnly))
	}
}
