package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/predict"
)

var e0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const gib = int64(1) << 30

func res(cpu, memGiB int64, gpu int) Resources {
	return Resources{CPUMilli: cpu, Memory: memGiB * gib, GPU: gpu}
}

// single adds a one-job pipeline and enqueues its job.
func single(e *Engine, tenant, id string, r Resources, prio int, now time.Time, labels ...string) {
	e.AddPipeline(PipelineSpec{ID: "p-" + id, Tenant: tenant, Jobs: []JobSpec{{ID: id, Key: "k-" + id, Request: r, Priority: prio, Labels: labels}}})
	e.Enqueue(id, now)
}

func placedOn(as []Assignment) map[string]string {
	m := map[string]string{}
	for _, a := range as {
		m[a.JobID] = a.WorkerID
	}
	return m
}

func order(as []Assignment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.JobID)
	}
	return out
}

func mustCheck(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestEngineFilters checks each filter: labels, cpu, memory, gpu,
// schedulability.
func TestEngineFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		worker WorkerSpec
		drain  bool
		req    Resources
		labels []string
		fits   bool
	}{
		{"fits", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)}, false, res(4000, 8, 0), nil, true},
		{"cpu short", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)}, false, res(4001, 8, 0), nil, false},
		{"memory short", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)}, false, res(1000, 9, 0), nil, false},
		{"gpu short", WorkerSpec{ID: "w", Capacity: res(4000, 8, 1)}, false, res(1000, 1, 2), nil, false},
		{"gpu", WorkerSpec{ID: "w", Capacity: res(4000, 8, 2)}, false, res(1000, 1, 2), nil, true},
		{"labels", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"linux", "arm64"}}, false, res(1000, 1, 0), []string{"arm64", "linux"}, true},
		{"label missing", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"linux"}}, false, res(1000, 1, 0), []string{"arm64"}, false},
		{"draining", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)}, true, res(1000, 1, 0), nil, false},
		// A container label is exclusive: a worker made for a container
		// takes only its jobs; a job's is not asked of a worker with none.
		{"container job on docker worker", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"docker"}}, false, res(1000, 1, 0), []string{"docker", "container:a"}, true},
		{"container job on its worker", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"docker", "container:a"}}, false, res(1000, 1, 0), []string{"container:a", "docker"}, true},
		{"container job on another's worker", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"docker", "container:b"}}, false, res(1000, 1, 0), []string{"docker", "container:a"}, false},
		{"plain job on a container worker", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"docker", "container:b"}}, false, res(1000, 1, 0), []string{"docker"}, false},
		{"unlabelled job on a container worker", WorkerSpec{ID: "w", Capacity: res(4000, 8, 0), Labels: []string{"container:b"}}, false, res(1000, 1, 0), nil, false},
	}
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO, PolicyLeastLoaded} {
		for _, tt := range tests {
			t.Run(string(policy)+"/"+tt.name, func(t *testing.T) {
				e := NewEngine(Config{Policy: policy})
				e.UpsertWorker(tt.worker)
				if tt.drain {
					e.SetSchedulable("w", false)
				}
				single(e, "t", "j", tt.req, 0, e0, tt.labels...)
				got := len(e.Plan(e0)) == 1
				if got != tt.fits {
					t.Fatalf("placed = %v, want %v", got, tt.fits)
				}
				mustCheck(t, e)
			})
		}
	}
}

// TestEngineScorers checks where each policy and scorer puts a job.
func TestEngineScorers(t *testing.T) {
	t.Parallel()
	fleet := func(scorer Scorer) []WorkerSpec {
		return []WorkerSpec{
			{ID: "big", Capacity: res(32000, 64, 0), Scorer: scorer},
			{ID: "small", Capacity: res(4000, 8, 0), Scorer: scorer},
			{ID: "medium", Capacity: res(8000, 16, 0), Scorer: scorer},
			{ID: "gpu", Capacity: res(16000, 64, 4), Scorer: scorer},
		}
	}
	tests := []struct {
		name   string
		policy Policy
		scorer Scorer
		req    Resources
		want   string
	}{
		{"binpack best fit", PolicyHodei, BinPack, res(3000, 4, 0), "small"},
		{"binpack default scorer", PolicyHodei, "", res(6000, 4, 0), "medium"},
		{"binpack by memory", PolicyHodei, BinPack, res(1000, 12, 0), "medium"},
		{"spread most free", PolicyHodei, Spread, res(1000, 1, 0), "big"},
		{"gpu job on gpu worker", PolicyHodei, BinPack, res(1000, 1, 1), "gpu"},
		{"cpu job avoids gpu worker", PolicyHodei, BinPack, res(20000, 40, 0), "big"},
		{"fifo first joined", PolicyFIFO, "", res(1000, 1, 0), "big"},
		{"fifo first that fits", PolicyFIFO, "", res(1000, 1, 1), "gpu"},
		{"least-loaded", PolicyLeastLoaded, "", res(1000, 1, 0), "big"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(Config{Policy: tt.policy})
			for _, w := range fleet(tt.scorer) {
				e.UpsertWorker(w)
			}
			single(e, "t", "j", tt.req, 0, e0)
			if got := placedOn(e.Plan(e0))["j"]; got != tt.want {
				t.Fatalf("placed on %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("cpu job spills to gpu worker when nothing else fits", func(t *testing.T) {
		e := NewEngine(Config{})
		e.UpsertWorker(WorkerSpec{ID: "cpu", Capacity: res(2000, 4, 0)})
		e.UpsertWorker(WorkerSpec{ID: "gpu", Capacity: res(16000, 64, 4)})
		single(e, "t", "j", res(4000, 8, 0), 0, e0)
		if got := placedOn(e.Plan(e0))["j"]; got != "gpu" {
			t.Fatalf("placed on %q, want gpu", got)
		}
	})
	t.Run("gpu workers spread by default", func(t *testing.T) {
		// Two GPU jobs on two GPU workers: the default scorer (spread for
		// workers with GPUs) puts them on different workers, leaving each
		// worker's CPU and memory beside a free GPU; best fit would stack
		// them. An explicit binpack still stacks.
		for _, tc := range []struct {
			scorer   Scorer
			together bool
		}{{"", false}, {Spread, false}, {BinPack, true}} {
			e := NewEngine(Config{})
			e.UpsertWorker(WorkerSpec{ID: "g1", Capacity: res(16000, 64, 4), Scorer: tc.scorer})
			e.UpsertWorker(WorkerSpec{ID: "g2", Capacity: res(16000, 64, 4), Scorer: tc.scorer})
			single(e, "t", "a", res(2000, 8, 1), 0, e0)
			got := placedOn(e.Plan(e0))
			single(e, "t", "b", res(2000, 8, 1), 0, e0)
			for k, v := range placedOn(e.Plan(e0)) {
				got[k] = v
			}
			if got["a"] == "" || got["b"] == "" || (got["a"] == got["b"]) != tc.together {
				t.Fatalf("scorer %q: placed %v, want together=%v", tc.scorer, got, tc.together)
			}
			mustCheck(t, e)
		}
	})
	t.Run("least-loaded by dominant share", func(t *testing.T) {
		e := NewEngine(Config{Policy: PolicyLeastLoaded})
		e.UpsertWorker(WorkerSpec{ID: "a", Capacity: res(8000, 8, 0)})
		e.UpsertWorker(WorkerSpec{ID: "b", Capacity: res(8000, 8, 0)})
		e.Bind("x", "a", e0) // unknown job: ignored
		single(e, "t", "first", res(1000, 6, 0), 0, e0)
		single(e, "t", "second", res(1000, 1, 0), 0, e0)
		got := placedOn(e.Plan(e0))
		if got["first"] != "a" || got["second"] != "b" {
			t.Fatalf("got %v, want first on a and second on b (a is 75%% loaded by memory)", got)
		}
	})
}

// TestEngineNoBlocking checks that a job that fits nowhere does not block
// those behind it, and is placed once a worker can take it.
func TestEngineNoBlocking(t *testing.T) {
	t.Parallel()
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO, PolicyLeastLoaded} {
		e := NewEngine(Config{Policy: policy})
		e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)})
		single(e, "t", "huge", res(64000, 8, 0), 0, e0)
		single(e, "t", "small", res(1000, 1, 0), 0, e0.Add(time.Second))
		if got := order(e.Plan(e0.Add(time.Second))); !slices.Equal(got, []string{"small"}) {
			t.Fatalf("%s: got %v, want [small]", policy, got)
		}
		e.UpsertWorker(WorkerSpec{ID: "huge-worker", Capacity: res(64000, 128, 0)})
		if got := placedOn(e.Plan(e0.Add(2 * time.Second))); got["huge"] != "huge-worker" {
			t.Fatalf("%s: got %v, want huge on huge-worker", policy, got)
		}
		mustCheck(t, e)
	}
}

// TestEnginePriority checks that a high-priority job overtakes a queue of
// low-priority ones.
func TestEnginePriority(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(1000, 1, 0)})
	for i := 0; i < 50; i++ {
		single(e, "t", fmt.Sprintf("low%02d", i), res(1000, 1, 0), 0, e0)
	}
	e.Plan(e0) // low00 runs
	single(e, "t", "urgent", res(1000, 1, 0), 90, e0.Add(time.Second))
	e.Finish("low00", e0.Add(2*time.Second), time.Second, true)
	if got := order(e.Plan(e0.Add(2 * time.Second))); !slices.Equal(got, []string{"urgent"}) {
		t.Fatalf("got %v, want [urgent]", got)
	}
	// FIFO ignores priority: the order jobs became ready.
	f := NewEngine(Config{Policy: PolicyFIFO})
	f.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(1000, 1, 0)})
	single(f, "t", "a", res(1000, 1, 0), 0, e0)
	single(f, "t", "b", res(1000, 1, 0), 90, e0.Add(time.Second))
	if got := order(f.Plan(e0.Add(time.Second))); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("fifo: got %v, want [a]", got)
	}
}

// TestEngineAging checks that a low-priority job runs under a constant
// stream of high-priority ones that alone would keep the worker busy.
func TestEngineAging(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{Aging: 10 * time.Second})
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(1000, 1, 0)})
	now := e0
	single(e, "t", "low", res(1000, 1, 0), 0, now)
	single(e, "t", "high0", res(1000, 1, 0), 5, now)
	ranLow := time.Duration(-1)
	running := ""
	for i := 1; i <= 200; i++ {
		// Two high-priority jobs arrive per job the worker can run.
		single(e, "t", fmt.Sprintf("high%d", 2*i), res(1000, 1, 0), 5, now)
		single(e, "t", fmt.Sprintf("high%d", 2*i+1), res(1000, 1, 0), 5, now)
		if running != "" {
			e.Finish(running, now, time.Second, true)
		}
		as := e.Plan(now)
		if len(as) != 1 {
			t.Fatalf("step %d: %d assignments, want 1", i, len(as))
		}
		running = as[0].JobID
		if running == "low" {
			ranLow = now.Sub(e0)
			break
		}
		now = now.Add(time.Second)
	}
	if ranLow < 0 {
		t.Fatal("the low-priority job never ran")
	}
	// Priority 0 against 5: it needs 6 levels of 10s to win.
	if ranLow < 50*time.Second || ranLow > 70*time.Second {
		t.Fatalf("low ran after %v, want about 60s", ranLow)
	}
}

// TestEngineFairness checks that a tenant flooding the queue does not keep
// another from starting: A queues 1000 jobs on a fleet of 40 slots, B queues
// 10 one or five minutes later; B's all start long before A's backlog
// drains.
func TestEngineFairness(t *testing.T) {
	t.Parallel()
	for _, later := range []time.Duration{time.Minute, 5 * time.Minute} {
		e := NewEngine(Config{})
		for i := 0; i < 10; i++ {
			e.UpsertWorker(WorkerSpec{ID: fmt.Sprintf("w%d", i), Capacity: res(4000, 16, 0)})
		}
		now := e0
		for p := 0; p < 100; p++ {
			ps := PipelineSpec{ID: fmt.Sprintf("a%d", p), Tenant: "A"}
			for j := 0; j < 10; j++ {
				ps.Jobs = append(ps.Jobs, JobSpec{ID: fmt.Sprintf("a%d.%d", p, j), Key: "a/test", Request: res(1000, 1, 0)})
			}
			e.AddPipeline(ps)
			for _, j := range ps.Jobs {
				e.Enqueue(j.ID, now)
			}
		}
		var running []string
		for _, a := range e.Plan(now) {
			running = append(running, a.JobID)
		}
		// One of A's jobs ends every 5s: the fleet stays full of A until B
		// comes, and A has 600 or more jobs queued then.
		for now.Before(e0.Add(later)) {
			now = now.Add(5 * time.Second)
			e.Finish(running[0], now, time.Second, true)
			running = running[1:]
			for _, a := range e.Plan(now) {
				running = append(running, a.JobID)
			}
		}
		ps := PipelineSpec{ID: "b", Tenant: "B"}
		for j := 0; j < 10; j++ {
			ps.Jobs = append(ps.Jobs, JobSpec{ID: fmt.Sprintf("b.%d", j), Key: "b/test", Request: res(1000, 1, 0)})
		}
		e.AddPipeline(ps)
		for _, j := range ps.Jobs {
			e.Enqueue(j.ID, now)
		}
		backlog := e.Stats().Queued - 10
		startedA, startedB := 0, 0
		for step := 0; startedB < 10 && step < 1000; step++ {
			now = now.Add(time.Second)
			e.Finish(running[0], now, time.Second, true)
			running = running[1:]
			for _, a := range e.Plan(now) {
				running = append(running, a.JobID)
				if a.JobID[0] == 'b' {
					startedB++
				} else {
					startedA++
				}
			}
		}
		// B must not wait for A's backlog: all its jobs start before a tenth
		// of it does.
		if startedB < 10 || startedA > backlog/10 {
			t.Fatalf("B %v later: A started %d of its %d queued jobs while B started %d of 10", later, startedA, backlog, startedB)
		}
		mustCheck(t, e)
	}
}

// TestEngineCriticalPath checks that, in one pipeline, the job at the head
// of the longest predicted chain starts first.
func TestEngineCriticalPath(t *testing.T) {
	t.Parallel()
	pred := predict.New(predict.Config{})
	for i := 0; i < 5; i++ {
		pred.Observe("tqi/lint", 30*time.Second)
		pred.Observe("tqi/build", 5*time.Minute)
		pred.Observe("tqi/e2e", 20*time.Minute)
		pred.Observe("tqi/docs", time.Minute)
	}
	e := NewEngine(Config{Predictor: pred})
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(1000, 1, 0)})
	e.AddPipeline(PipelineSpec{ID: "tqi", Tenant: "t", Jobs: []JobSpec{
		{ID: "lint", Key: "tqi/lint", Request: res(1000, 1, 0)},
		{ID: "docs", Key: "tqi/docs", Request: res(1000, 1, 0)},
		{ID: "build", Key: "tqi/build", Request: res(1000, 1, 0)},
		{ID: "e2e", Key: "tqi/e2e", Request: res(1000, 1, 0), Needs: []string{"build"}},
	}})
	for _, id := range []string{"lint", "docs", "build"} {
		e.Enqueue(id, e0)
	}
	if got := order(e.Plan(e0)); !slices.Equal(got, []string{"build"}) {
		t.Fatalf("got %v, want [build] (25 minutes of path ahead)", got)
	}
	if d := e.PredictJob("e2e"); d < 19*time.Minute || d > 21*time.Minute {
		t.Fatalf("PredictJob(e2e) = %v, want about 20m", d)
	}
}

// blockedBigPipeline gives e one 1-cpu worker "w", busy with job "blocker"
// of tenant t from e0, and queues at e0 the 10 jobs big0..big9 (key
// big/test) of pipeline "big" of the same tenant.
func blockedBigPipeline(e *Engine) {
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(1000, 1, 0)})
	e.AddPipeline(PipelineSpec{ID: "blocker", Tenant: "t", Jobs: []JobSpec{{ID: "blocker", Request: res(1000, 1, 0)}}})
	e.Enqueue("blocker", e0)
	e.Plan(e0)
	big := PipelineSpec{ID: "big", Tenant: "t"}
	for i := 0; i < 10; i++ {
		big.Jobs = append(big.Jobs, JobSpec{ID: fmt.Sprintf("big%d", i), Key: "big/test", Request: res(1000, 1, 0)})
	}
	e.AddPipeline(big)
	for _, j := range big.Jobs {
		e.Enqueue(j.ID, e0)
	}
}

// TestEngineShortestWorkFirst checks that, within a tenant, the pipeline
// with less predicted work left goes first even if it arrived later.
func TestEngineShortestWorkFirst(t *testing.T) {
	t.Parallel()
	pred := predict.New(predict.Config{})
	pred.Observe("big/test", 30*time.Minute)
	pred.Observe("small/test", time.Minute)
	e := NewEngine(Config{Predictor: pred})
	blockedBigPipeline(e)
	e.AddPipeline(PipelineSpec{ID: "p-small2", Tenant: "t", Jobs: []JobSpec{{ID: "small2", Key: "small/test", Request: res(1000, 1, 0)}}})
	e.Enqueue("small2", e0.Add(time.Minute))
	e.Finish("blocker", e0.Add(2*time.Minute), time.Minute, true)
	if got := order(e.Plan(e0.Add(2 * time.Minute))); !slices.Equal(got, []string{"small2"}) {
		t.Fatalf("got %v, want [small2]", got)
	}
}

// TestEngineWorkKnee checks that WorkKnee bounds how far the remaining-work
// term pushes a large pipeline behind newer work: a pipeline with 100 hours
// of predicted work ranks behind a 1-minute one that arrived 5 hours later
// without the knee, and before it with the default knee of 10 minutes (its
// term is then sqrt(360,000 s × 600 s), about 4.1 hours) or one of an hour
// (sqrt(360,000 s × 3,600 s) = 10 hours: behind again).
func TestEngineWorkKnee(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		knee time.Duration
		want string
	}{{-1, "small"}, {0, "big0"}, {10 * time.Minute, "big0"}, {time.Hour, "small"}} {
		pred := predict.New(predict.Config{})
		pred.Observe("big/test", 10*time.Hour)
		pred.Observe("small/test", time.Minute)
		e := NewEngine(Config{Predictor: pred, WorkKnee: tc.knee})
		blockedBigPipeline(e)
		e.AddPipeline(PipelineSpec{ID: "p-small", Tenant: "t", Jobs: []JobSpec{{ID: "small", Key: "small/test", Request: res(1000, 1, 0)}}})
		now := e0.Add(5 * time.Hour)
		e.Enqueue("small", now)
		e.Finish("blocker", now.Add(time.Minute), time.Minute, true)
		if got := order(e.Plan(now.Add(time.Minute))); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("knee %v: got %v, want [%s]", tc.knee, got, tc.want)
		}
		mustCheck(t, e)
	}
}

// TestEngineAffinity checks that a job goes to a fitting worker that ran
// its key recently, and never waits for one that does not fit.
func TestEngineAffinity(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "a", Capacity: res(4000, 8, 0)})
	e.UpsertWorker(WorkerSpec{ID: "b", Capacity: res(8000, 16, 0)})
	e.AddPipeline(PipelineSpec{ID: "p1", Tenant: "t", Jobs: []JobSpec{{ID: "j1", Key: "repo/build", Request: res(2000, 2, 0)}}})
	e.Enqueue("j1", e0)
	first := placedOn(e.Plan(e0))["j1"]
	if first != "a" {
		t.Fatalf("j1 on %q, want a (best fit)", first)
	}
	e.Finish("j1", e0.Add(time.Minute), time.Minute, true)
	// Fill a partly so that b is the tighter fit; the warm cache wins.
	single(e, "t", "filler", res(1000, 1, 0), 0, e0.Add(time.Minute))
	single(e, "t", "filler2", res(3000, 8, 0), 0, e0.Add(time.Minute))
	e.Plan(e0.Add(time.Minute))
	e.Release("filler2")
	e.Dequeue("filler2") // not queued: no-op
	e.AddPipeline(PipelineSpec{ID: "p2", Tenant: "t", Jobs: []JobSpec{{ID: "j2", Key: "repo/build", Request: res(2000, 2, 0)}}})
	e.Enqueue("j2", e0.Add(2*time.Minute))
	if got := placedOn(e.Plan(e0.Add(2 * time.Minute)))["j2"]; got != "a" {
		t.Fatalf("j2 on %q, want a (warm)", got)
	}
	// a is now full for a third run: it goes elsewhere at once.
	single(e, "t", "filler3", res(1000, 1, 0), 0, e0.Add(2*time.Minute))
	e.Plan(e0.Add(2 * time.Minute))
	e.AddPipeline(PipelineSpec{ID: "p3", Tenant: "t", Jobs: []JobSpec{{ID: "j3", Key: "repo/build", Request: res(2000, 2, 0)}}})
	e.Enqueue("j3", e0.Add(3*time.Minute))
	if got := placedOn(e.Plan(e0.Add(3 * time.Minute)))["j3"]; got != "b" {
		t.Fatalf("j3 on %q, want b (a is full)", got)
	}
	mustCheck(t, e)
}

// TestEngineRemoveWorker checks that RemoveWorker returns the jobs placed
// on the worker, which can then be queued again and placed elsewhere.
func TestEngineRemoveWorker(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "a", Capacity: res(4000, 8, 0)})
	single(e, "t", "j1", res(1000, 1, 0), 0, e0)
	single(e, "t", "j2", res(1000, 1, 0), 0, e0)
	e.Plan(e0)
	e.UpsertWorker(WorkerSpec{ID: "b", Capacity: res(4000, 8, 0)})
	got := e.RemoveWorker("a")
	if !slices.Equal(got, []string{"j1", "j2"}) {
		t.Fatalf("RemoveWorker = %v, want [j1 j2]", got)
	}
	if s := e.Stats(); s.Running != 0 || s.Workers != 1 {
		t.Fatalf("stats %+v, want nothing running on one worker", s)
	}
	if e.RemoveWorker("a") != nil {
		t.Fatal("second RemoveWorker returned jobs")
	}
	for _, id := range got {
		e.Enqueue(id, e0.Add(time.Second))
	}
	as := e.Plan(e0.Add(time.Second))
	if len(as) != 2 || as[0].WorkerID != "b" || as[1].WorkerID != "b" {
		t.Fatalf("got %v, want both on b", as)
	}
	mustCheck(t, e)
}

// TestEngineAccounting checks Bind, Release, Finish, Dequeue and
// RemovePipeline against capacity and counters.
func TestEngineAccounting(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "w", Capacity: res(4000, 8, 0)})
	e.AddPipeline(PipelineSpec{ID: "p", Tenant: "t", Jobs: []JobSpec{
		{ID: "running", Key: "p/a", Request: res(3000, 1, 0)},
		{ID: "next", Key: "p/b", Request: res(2000, 1, 0)},
		{ID: "later", Key: "p/c", Request: res(1000, 1, 0), Needs: []string{"next"}},
	}})
	e.Bind("running", "w", e0) // recovery: it already runs there
	e.Enqueue("next", e0)
	if as := e.Plan(e0); len(as) != 0 {
		t.Fatalf("placed %v on a worker with 1000m free", as)
	}
	if s := e.Stats(); s.Running != 1 || s.Queued != 1 {
		t.Fatalf("stats %+v", s)
	}
	e.Release("running")
	if got := order(e.Plan(e0)); !slices.Equal(got, []string{"next"}) {
		t.Fatalf("after Release: got %v, want [next]", got)
	}
	e.Finish("next", e0.Add(time.Minute), 42*time.Second, true)
	if d := e.Predict("p/b"); d != 42*time.Second {
		t.Fatalf("Predict after Finish = %v, want 42s", d)
	}
	e.Finish("running", e0.Add(time.Minute), time.Hour, false) // failed: no learning
	if e.pred.Known("p/a") {
		t.Fatal("a failed job taught the predictor")
	}
	e.Enqueue("later", e0.Add(time.Minute))
	e.Dequeue("later")
	e.Dequeue("later")
	if s := e.Stats(); s.Running != 0 || s.Queued != 0 {
		t.Fatalf("stats %+v, want empty", s)
	}
	e.Enqueue("later", e0.Add(time.Minute))
	e.Plan(e0.Add(time.Minute))
	e.RemovePipeline("p")
	if s := e.Stats(); s.Running != 0 || s.Queued != 0 || s.Decisions != 2 {
		t.Fatalf("stats %+v after RemovePipeline", s)
	}
	mustCheck(t, e)
	// The worker's capacity is whole again.
	single(e, "t", "full", res(4000, 8, 0), 0, e0.Add(2*time.Minute))
	if len(e.Plan(e0.Add(2*time.Minute))) != 1 {
		t.Fatal("capacity not freed")
	}
}

// TestEngineRebalance checks that draining, joining and capacity changes
// only change the indexes: queued jobs are placed at the next Plan.
func TestEngineRebalance(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "a", Capacity: res(2000, 4, 0), Labels: []string{"linux"}})
	e.SetSchedulable("a", false)
	single(e, "t", "j", res(2000, 2, 0), 0, e0, "linux")
	single(e, "t", "host", res(1000, 1, 0), 0, e0, "host=b")
	if len(e.Plan(e0)) != 0 {
		t.Fatal("placed on a draining worker")
	}
	e.SetSchedulable("a", true)
	if got := placedOn(e.Plan(e0)); got["j"] != "a" {
		t.Fatalf("got %v, want j on a", got)
	}
	// A worker joins with a label a queued job asked for.
	e.UpsertWorker(WorkerSpec{ID: "b", Capacity: res(2000, 4, 0), Labels: []string{"linux", "host=b"}})
	if got := placedOn(e.Plan(e0)); got["host"] != "b" {
		t.Fatalf("got %v, want host on b", got)
	}
	// a grows: another 2000m job fits.
	single(e, "t", "k", res(2000, 2, 0), 0, e0, "linux")
	if len(e.Plan(e0)) != 0 {
		t.Fatal("placed k on a full fleet")
	}
	e.UpsertWorker(WorkerSpec{ID: "a", Capacity: res(4000, 8, 0), Labels: []string{"linux"}})
	if got := placedOn(e.Plan(e0)); got["k"] != "a" {
		t.Fatalf("got %v, want k on a", got)
	}
	mustCheck(t, e)
}

// TestEngineMaxJobs: a worker limited to one job at a time (an ephemeral
// one) gets one although it has room for four, in one plan and the next;
// it takes another once the first ends, and the limit can be lifted.
func TestEngineMaxJobs(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "once", Capacity: res(4000, 8, 0), MaxJobs: 1})
	for _, id := range []string{"j1", "j2", "j3"} {
		single(e, "t", id, res(1000, 1, 0), 0, e0)
	}
	if as := e.Plan(e0); len(as) != 1 || as[0].WorkerID != "once" {
		t.Fatalf("plan = %v, want one job on the one-job worker", as)
	}
	mustCheck(t, e)
	if as := e.Plan(e0.Add(time.Second)); len(as) != 0 {
		t.Fatalf("second plan = %v, want nothing while its job runs", as)
	}
	e.UpsertWorker(WorkerSpec{ID: "wide", Capacity: res(4000, 8, 0)})
	if as := e.Plan(e0.Add(2 * time.Second)); len(as) != 2 || as[0].WorkerID != "wide" || as[1].WorkerID != "wide" {
		t.Fatalf("plan with a second worker = %v, want both on it", as)
	}
	mustCheck(t, e)
	// wide has room for one of these: the other needs "once" again.
	single(e, "t", "j4", res(2000, 1, 0), 0, e0.Add(3*time.Second))
	single(e, "t", "j5", res(2000, 1, 0), 0, e0.Add(3*time.Second))
	e.Finish("j1", e0.Add(3*time.Second), time.Second, true)
	as := e.Plan(e0.Add(3 * time.Second))
	if on := placedOn(as); len(as) != 2 || on["j4"] == on["j5"] {
		t.Fatalf("after j1 ended: %v, want one more job on each worker", as)
	}
	mustCheck(t, e)
	// Lifting the limit makes its free room usable again.
	e.UpsertWorker(WorkerSpec{ID: "once", Capacity: res(4000, 8, 0)})
	single(e, "t", "j6", res(1000, 1, 0), 0, e0.Add(4*time.Second))
	single(e, "t", "j7", res(1000, 1, 0), 0, e0.Add(4*time.Second))
	if as := e.Plan(e0.Add(4 * time.Second)); len(as) != 2 {
		t.Fatalf("after lifting the limit: %v, want two more placed", as)
	}
	mustCheck(t, e)
}

// Reserved counts the requests of the jobs placed on a worker, by Plan or
// Bind, until they finish or are released.
func TestEngineReserved(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	e.UpsertWorker(WorkerSpec{ID: "w1", Capacity: res(4000, 8, 1)})
	e.UpsertWorker(WorkerSpec{ID: "w2", Capacity: res(4000, 8, 0)})
	single(e, "t", "a", res(1000, 1, 0), 0, e0)
	single(e, "t", "b", res(2000, 2, 1), 0, e0)
	if got := len(e.Plan(e0)); got != 2 {
		t.Fatalf("%d placed, want 2", got)
	}
	single(e, "t", "c", res(500, 1, 0), 0, e0)
	e.Bind("c", "w2", e0)
	total := e.Reserved("w1")
	total.CPUMilli += e.Reserved("w2").CPUMilli
	if total.CPUMilli != 3500 || e.Reserved("w1").GPU != 1 {
		t.Fatalf("reserved %+v and %+v, want 3500m in all and the gpu on w1", e.Reserved("w1"), e.Reserved("w2"))
	}
	e.Finish("a", e0.Add(time.Minute), time.Minute, true)
	e.Release("b")
	e.Release("c")
	for _, w := range []string{"w1", "w2", "unknown"} {
		if got := e.Reserved(w); got != (Resources{}) {
			t.Errorf("%s: %+v reserved after every job ended, want none", w, got)
		}
	}
	mustCheck(t, e)
}
