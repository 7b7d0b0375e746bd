package sim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/predict"
	"github.com/hodei-ci/hodei/internal/scheduler"
)

var policies = []scheduler.Policy{scheduler.PolicyFIFO, scheduler.PolicyLeastLoaded, scheduler.PolicyHodei}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// one returns a single-job pipeline.
func one(id, tenant string, prio int, submit, dur float64, cpu int64) PipelineIn {
	return PipelineIn{ID: id, Tenant: tenant, Priority: prio, Submit: sec(submit),
		Jobs: []JobIn{{ID: "job", CPUMilli: cpu, MemMiB: 512, Duration: sec(dur), Key: id + "/job"}}}
}

func workload(t *testing.T, workers []Worker, ps ...PipelineIn) *Workload {
	t.Helper()
	w := NewWorkload()
	w.Workers = workers
	for _, p := range ps {
		if err := w.AddPipeline(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, bad := w.Unplaceable(); bad {
		t.Fatal("a job fits no worker")
	}
	return w
}

func worker(id string, cpu int64, labels ...string) Worker {
	return Worker{ID: id, CPUMilli: cpu, MemoryMiB: 4096, Labels: labels, CostPerHour: 1}
}

// run simulates w with checks on and returns the result and the sim.
func run(t *testing.T, w *Workload, p scheduler.Policy) (*Result, *Sim) {
	t.Helper()
	return runOpts(t, w, Options{Policy: p})
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-3 }

// jobTimes returns start and end of job j in seconds.
func jobTimes(s *Sim, j int) (start, end float64) {
	return float64(s.start[j]) / 1e9, float64(s.end[j]) / 1e9
}

// Two 1-core workers, three 1-core jobs arriving at 0, 1 and 2 s that run
// 10, 20 and 30 s: the third waits for the first to end. Every policy has
// one choice.
func TestTinyQueue(t *testing.T) {
	for _, p := range policies {
		w := workload(t, []Worker{worker("a", 1000), worker("b", 1000)},
			one("p1", "t", 0, 0, 10, 1000), one("p2", "t", 0, 1, 20, 1000), one("p3", "t", 0, 2, 30, 1000))
		r, s := run(t, w, p)
		for j, want := range [][2]float64{{0, 10}, {1, 21}, {10, 40}} {
			if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
				t.Errorf("%s: job %d ran %v-%v, want %v-%v", p, j, st, en, want[0], want[1])
			}
		}
		// Completions 10, 20, 38; waits 0, 0, 8; critical paths 10, 20, 30.
		want := Result{Policy: string(p), Pipelines: 3, Jobs: 3, MeanPipelineS: 22.667, P50PipelineS: 20, P95PipelineS: 38,
			MeanWaitS: 2.667, P95WaitS: 8, P99WaitS: 8, MaxTenantSlowdown: 1.133, PriorityP95WaitS: 0, MakespanS: 40,
			Utilization: 0.75, WorkerHours: 2 * 40.0 / 3600, Decisions: 3}
		checkResult(t, r, want)
	}
}

func checkResult(t *testing.T, got *Result, want Result) {
	t.Helper()
	g := *got
	g.Detail = Detail{}
	g.DecisionsPerSec, g.WallS, g.PeakRSSMB = 0, 0, 0
	want.WorkerHours = round3(want.WorkerHours)
	// Every tiny workload has one tenant, "t", and jobs without labels:
	// the breakdowns repeat the totals.
	want.Tenants = map[string]TenantJSON{"t": {Pipelines: want.Pipelines, MeanPipelineS: want.MeanPipelineS,
		Slowdown: want.MaxTenantSlowdown, P95WaitS: want.P95WaitS}}
	want.LabelPools = map[string]PoolJSON{"": {Jobs: want.Jobs, MeanWaitS: want.MeanWaitS, P95WaitS: want.P95WaitS, P99WaitS: want.P99WaitS}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", want.Policy, g, want)
	}
}

// A diamond on one 2-core worker: build (10 s) -> test1 (5 s), test2 (7 s)
// -> report (1 s). Tests run side by side; the pipeline takes its critical
// path, 18 s, and no job waits.
func TestTinyDiamond(t *testing.T) {
	for _, p := range policies {
		job := func(id string, d float64, needs ...string) JobIn {
			return JobIn{ID: id, Needs: needs, CPUMilli: 1000, MemMiB: 512, Duration: sec(d), Key: id}
		}
		w := workload(t, []Worker{worker("a", 2000)}, PipelineIn{ID: "d", Tenant: "t", Jobs: []JobIn{
			job("report", 1, "test1", "test2"), job("test1", 5, "build"), job("build", 10), job("test2", 7, "build"),
		}})
		r, s := run(t, w, p)
		for j, want := range [][2]float64{{17, 18}, {10, 15}, {0, 10}, {10, 17}} {
			if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
				t.Errorf("%s: job %d ran %v-%v, want %v-%v", p, j, st, en, want[0], want[1])
			}
		}
		checkResult(t, r, Result{Policy: string(p), Pipelines: 1, Jobs: 4, MeanPipelineS: 18, P50PipelineS: 18, P95PipelineS: 18,
			MaxTenantSlowdown: 1, MakespanS: 18, Utilization: round3(23.0 / 36), WorkerHours: 18.0 / 3600, Decisions: 4})
	}
}

// One 1-core worker busy until 10 s; a normal job arrives at 1 s and an
// urgent one (priority 50) at 2 s. FIFO and least-loaded ignore priorities
// and run the normal one first; hodei runs the urgent one first.
func TestTinyPriority(t *testing.T) {
	for _, p := range policies {
		w := workload(t, []Worker{worker("a", 1000)},
			one("busy", "t", 0, 0, 10, 1000), one("normal", "t", 0, 1, 5, 1000), one("urgent", "t", 50, 2, 5, 1000))
		r, s := run(t, w, p)
		// FIFO: completions 10, 14, 18; waits 0, 9, 13; slowdown 14 / (20/3).
		normal, urgent := [2]float64{10, 15}, [2]float64{15, 20}
		want := Result{Policy: string(p), Pipelines: 3, Jobs: 3, MeanPipelineS: 14, P50PipelineS: 14, P95PipelineS: 18,
			MeanWaitS: 7.333, P50WaitS: 9, P95WaitS: 13, P99WaitS: 13, MaxTenantSlowdown: 2.1, PriorityP95WaitS: 13, MakespanS: 20, Utilization: 1,
			WorkerHours: 20.0 / 3600, Decisions: 3}
		if p == scheduler.PolicyHodei {
			normal, urgent = urgent, normal
			// Completions 10, 19, 13; waits 0, 14, 8.
			want.P50PipelineS, want.P95PipelineS = 13, 19
			want.P95WaitS, want.PriorityP95WaitS = 14, 8
			want.P50WaitS, want.P99WaitS = 8, 14
		}
		for j, want := range [][2]float64{{0, 10}, normal, urgent} {
			if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
				t.Errorf("%s: job %d ran %v-%v, want %v-%v", p, j, st, en, want[0], want[1])
			}
		}
		checkResult(t, r, want)
	}
}

// A pipeline below the default priority runs after those at 0 under hodei,
// even when it came first; fifo runs it first.
func TestTinyNegativePriority(t *testing.T) {
	for _, p := range policies {
		w := workload(t, []Worker{worker("a", 1000)},
			one("busy", "t", 0, 0, 10, 1000), one("nightly", "t", -10, 1, 5, 1000), one("normal", "t", 0, 2, 5, 1000))
		_, s := run(t, w, p)
		nightly, normal := [2]float64{10, 15}, [2]float64{15, 20}
		if p == scheduler.PolicyHodei {
			nightly, normal = normal, nightly
		}
		for j, want := range [][2]float64{{0, 10}, nightly, normal} {
			if st, en := jobTimes(s, j); st != want[0] || en != want[1] {
				t.Errorf("%s: job %d ran %v-%v, want %v-%v", p, j, st, en, want[0], want[1])
			}
		}
	}
}

// Labels and sizes steer placement: the arm64 job can only go to the arm64
// worker, and the 2-core job only to the big worker.
func TestTinyPlacement(t *testing.T) {
	for _, p := range policies {
		arm := one("arm", "t", 0, 0, 10, 1000)
		arm.Jobs[0].Labels = []string{"arm64"}
		w := workload(t, []Worker{worker("small", 1000, "amd64"), worker("big", 2000, "amd64"), worker("arm", 1000, "arm64")},
			arm, one("wide", "t", 0, 0, 10, 2000), one("narrow", "t", 0, 0, 10, 1000))
		_, s := run(t, w, p)
		for j, want := range []string{"arm", "big", "small"} {
			if got := w.Workers[s.worker[j]].ID; got != want || s.end[j] != int64(10*time.Second) {
				t.Errorf("%s: job %d ran on %s until %v, want %s until 10s", p, j, got, time.Duration(s.end[j]), want)
			}
		}
	}
}

// A concurrency group of limit 1: the second deploy is held until the first
// ends, and its wait counts from its admission.
func TestTinyConcurrencyGroup(t *testing.T) {
	for _, p := range policies {
		d1, d2 := one("d1", "t", 0, 0, 10, 1000), one("d2", "t", 0, 1, 10, 1000)
		d1.Group, d1.Limit, d2.Group, d2.Limit = "deploy", 1, "deploy", 1
		w := workload(t, []Worker{worker("a", 1000), worker("b", 1000)}, d1, d2)
		r, s := run(t, w, p)
		if st, en := jobTimes(s, 1); st != 10 || en != 20 {
			t.Errorf("%s: second deploy ran %v-%v, want 10-20", p, st, en)
		}
		checkResult(t, r, Result{Policy: string(p), Pipelines: 2, Jobs: 2, MeanPipelineS: 14.5, P50PipelineS: 10, P95PipelineS: 19,
			MaxTenantSlowdown: 1.45, MakespanS: 20, Utilization: 0.5, WorkerHours: 40.0 / 3600, Decisions: 2})
	}
}

// The engine learns durations only from finished jobs: before a job of a
// key has finished, its prediction is the default, whatever its true
// duration.
func TestEngineNeverSeesTrueDurations(t *testing.T) {
	for _, p := range policies {
		w := workload(t, []Worker{worker("a", 1000)},
			one("p1", "t", 0, 0, 500, 1000), one("p2", "t", 0, 1, 300, 1000))
		w.JobKey[1] = w.JobKey[0] // both runs of one key
		s, err := NewSim(w, Options{Policy: p, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		key := w.Strings[w.JobKey[0]]
		for range 2 { // both arrivals, p1 started
			s.Step()
			if got := s.Eng.Predict(key); got != predict.DefaultUnseen {
				t.Fatalf("%s: at %v the engine predicts %v for %s, want the default %v", p, s.Now(), got, key, predict.DefaultUnseen)
			}
			if got := s.Eng.PredictJob(s.JobID(1)); got != predict.DefaultUnseen {
				t.Fatalf("%s: at %v PredictJob = %v, want the default", p, s.Now(), got)
			}
		}
		s.Step() // p1 finishes at 500 s
		if got := s.Eng.Predict(key); got.Round(time.Millisecond) != 500*time.Second {
			t.Errorf("%s: after one run of 500s the engine predicts %v", p, got)
		}
		for s.Step() {
		}
		if _, err := s.Result(); err != nil {
			t.Fatal(err)
		}
	}
}

// The stalled run (a job no worker takes) ends with an error rather than
// looping.
func TestStallIsAnError(t *testing.T) {
	w := workload(t, []Worker{worker("a", 1000)}, one("p", "t", 0, 0, 1, 1000))
	w.JobCPU[0] = 2000 // bypass the load-time check
	_, err := Run(w, Options{Policy: scheduler.PolicyHodei})
	if err == nil {
		t.Fatal("no error for a job that fits no worker")
	}
	t.Log(err)
}

// A medium generated workload under every policy, with every assignment
// checked (capacity, labels, needs, nothing placed twice), then every job
// ran exactly once and the numbers add up.
func TestMediumRunInvariants(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 20000, Workers: 100, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	var work float64
	for j := range w.JobDur {
		work += float64(w.JobCPU[j]) * w.JobDur[j].Seconds()
	}
	for _, p := range policies {
		r, s := run(t, w, p)
		if r.Jobs != w.NumJobs() || r.Pipelines != len(w.Pipelines) || r.Decisions != uint64(w.NumJobs()) {
			t.Errorf("%s: %d jobs, %d pipelines, %d decisions; want %d, %d, %d", p, r.Jobs, r.Pipelines, r.Decisions,
				w.NumJobs(), len(w.Pipelines), w.NumJobs())
		}
		if math.Abs(s.busy[0]-work) > 1e-6*work {
			t.Errorf("%s: busy cpu %v, want %v", p, s.busy[0], work)
		}
		for j := range s.state {
			if s.start[j] < s.ready[j] || s.end[j]-s.start[j] != int64(w.JobDur[j]) {
				t.Fatalf("%s: job %d: ready %d start %d end %d duration %v", p, j, s.ready[j], s.start[j], s.end[j], w.JobDur[j])
			}
			for _, n := range w.JobNeeds(int32(j)) {
				if s.end[n] > s.start[j] {
					t.Fatalf("%s: job %d started before its need %d ended", p, j, n)
				}
			}
		}
		for i, pl := range w.Pipelines {
			if got := time.Duration(s.pfinish[i]) - pl.Submit; got < w.CriticalPath(i) {
				t.Fatalf("%s: pipeline %s took %v, less than its critical path %v", p, pl.ID, got, w.CriticalPath(i))
			}
		}
		if r.MaxTenantSlowdown < 1 || r.Utilization <= 0 || r.Utilization > 1 || r.P95PipelineS < r.P50PipelineS {
			t.Errorf("%s: implausible result %+v", p, r)
		}
		t.Logf("%s: mean %.0fs p95 %.0fs wait %.1fs slowdown %.2f prio p95 wait %.1fs util %.3f",
			p, r.MeanPipelineS, r.P95PipelineS, r.MeanWaitS, r.MaxTenantSlowdown, r.PriorityP95WaitS, r.Utilization)
	}
}

// Worker churn: lost workers' jobs are requeued and still run to the end;
// the checks hold throughout.
func TestChurn(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 3000, Workers: 30, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		r, s := runOpts(t, w, Options{Policy: p, Churn: 20, ChurnDown: 5 * time.Minute, Seed: 1})
		if r.Detail.WorkerLosses == 0 || r.Detail.Requeued == 0 {
			t.Errorf("%s: %d losses, %d requeued: want some", p, r.Detail.WorkerLosses, r.Detail.Requeued)
		}
		if r.Decisions != uint64(w.NumJobs()+r.Detail.Requeued) {
			t.Errorf("%s: %d decisions for %d jobs and %d requeues", p, r.Decisions, w.NumJobs(), r.Detail.Requeued)
		}
		for j := range s.state {
			if s.start[j] < s.ready[j] {
				t.Fatalf("%s: job %d started before it was ready", p, j)
			}
		}
		t.Logf("%s: %d losses, %d jobs requeued, mean pipeline %.0fs", p, r.Detail.WorkerLosses, r.Detail.Requeued, r.MeanPipelineS)
	}
}

func TestPercentile(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{0.5, 5}, {0.95, 10}, {0.9, 9}, {0.1, 1}, {1, 10}} {
		if got := percentile(x, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestWriteComparison(t *testing.T) {
	rs := []*Result{
		{Policy: "fifo", MeanPipelineS: 100, P50PipelineS: 80, P95PipelineS: 300, Detail: Detail{Tenants: []TenantResult{{Tenant: "a", Slowdown: 2}}}},
		{Policy: "hodei", MeanPipelineS: 70, P50PipelineS: 60, P95PipelineS: 150, Detail: Detail{Tenants: []TenantResult{{Tenant: "a", Slowdown: 1.5}}}},
	}
	var b strings.Builder
	WriteComparison(&b, rs)
	for _, want := range []string{"70s (-30%)", "150s (-50%)", "tenant slowdown  fifo  hodei", "2.00   1.50"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, b.String())
		}
	}
}
