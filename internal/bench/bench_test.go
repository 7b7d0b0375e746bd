package bench

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"
)

func TestBenchRunsEveryPipeline(t *testing.T) {
	// A bound for a hang only: 440 jobs take 2-3 s on a quiet machine, and
	// went past a minute once on a machine loaded 30 times over its cores.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, dag := range []bool{false, true} {
		res, err := Run(ctx, Options{Pipelines: 40, Concurrency: 4, DAG: dag, DataDir: t.TempDir(), SpawnSamples: 20})
		if err != nil {
			t.Fatal(err)
		}
		want := 40
		if dag {
			want = 400
		}
		if res.Jobs != want || res.Failed != 0 {
			t.Fatalf("dag=%v: %d jobs, %d failed runs", dag, res.Jobs, res.Failed)
		}
		if res.JobsPerSec <= 0 || res.SpawnPerSec <= 0 {
			t.Fatalf("dag=%v: no rates measured: %+v", dag, res)
		}
		if !(res.SubmitToStartMS.P50 <= res.SubmitToStartMS.P99 && res.SubmitToStartMS.P99 <= res.SubmitToFinishMS.P99) {
			t.Fatalf("dag=%v: inconsistent percentiles %+v", dag, res)
		}
	}
}

// runFleet runs the benchmark o on simulated agents (bounded by 5 minutes,
// for a hang) and returns its result with how many times the agents ran
// each job.
func runFleet(t *testing.T, o Options) (Result, map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex // OnExec is called from the agents' goroutines
	ran := map[string]int{}
	o.OnExec = func(_, jobID string, _ int) {
		mu.Lock()
		ran[jobID]++
		mu.Unlock()
	}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return res, maps.Clone(ran)
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i)
	}
	p := percentiles(v)
	if p.P50 != 50 || p.P95 != 95 || p.P99 != 99 {
		t.Fatalf("%+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("empty input")
	}
}

// TestBenchFleetRunsOnSimulatedAgents: with Agents set, the jobs run on the
// simulated agents (their executor is called once per job) and no local
// agent exists to take them.
func TestBenchFleetRunsOnSimulatedAgents(t *testing.T) {
	res, ran := runFleet(t, Options{
		Pipelines: 100, Concurrency: 8, Agents: 12, StartParallel: 4, AgentDelay: time.Millisecond, DataDir: t.TempDir(),
		HeartbeatInterval: 2 * time.Second,
	})
	if res.Agents != 12 || res.Jobs != 100 || res.Failed != 0 {
		t.Fatalf("%d agents, %d jobs, %d failed runs", res.Agents, res.Jobs, res.Failed)
	}
	if len(ran) != 100 {
		t.Fatalf("the simulated agents ran %d jobs, want 100", len(ran))
	}
	if res.ServerRSSMiB <= 0 {
		t.Errorf("no resident memory measured: %+v", res)
	}
}
