package scheduler_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/sim"
)

// TestSimHodeiBeatsFIFO runs the simulator on three generated CI workloads
// (seeds 1, 4 and 5: the one the defaults were tuned on and the two least
// favourable to hodei of seeds 1-5) at high load (1.5 at the daily peak, a flooding tenant,
// priority pipelines) and checks hodei against fifo on the same fleet, on
// each workload:
//
//   - mean pipeline completion at least 10 % below fifo's;
//   - priority jobs placed within a minute (p95);
//   - no tenant slowed down by more than 7 % beyond its fifo slowdown, and
//     the flood by no more than 10 % beyond: the fair-share delay holds the
//     flood back on purpose; since tenants compete with the job they would
//     run (not a parked one), the flood is at or below fifo on these seeds
//     and team-05 is 6 % above it on seed 5, so "no tenant slower than
//     under fifo" is not what the policy achieves at this load;
//   - p95 completion at most 20 % above fifo's: it is lower on seed 1 (and
//     on 2 and 3) and higher on 4 and 5 (+17 %, +5 %), so it is not a
//     promise either.
//
// The simulator is deterministic: the same workload gives the same figures
// on any machine.
func TestSimHodeiBeatsFIFO(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 4, 5} {
		w, err := sim.Generate(sim.GenOptions{Jobs: 30000, Workers: 100, Load: 1.5, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		fifo, err := sim.Run(w, sim.Options{Policy: scheduler.PolicyFIFO, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		hodei, err := sim.Run(w, sim.Options{Policy: scheduler.PolicyHodei, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: mean %.0fs -> %.0fs, p95 %.0fs -> %.0fs, priority p95 wait %.0fs -> %.0fs", seed,
			fifo.MeanPipelineS, hodei.MeanPipelineS, fifo.P95PipelineS, hodei.P95PipelineS, fifo.PriorityP95WaitS, hodei.PriorityP95WaitS)
		if hodei.MeanPipelineS > 0.9*fifo.MeanPipelineS {
			t.Errorf("seed %d: mean completion %.0fs, want at least 10%% below fifo's %.0fs", seed, hodei.MeanPipelineS, fifo.MeanPipelineS)
		}
		if hodei.P95PipelineS > 1.2*fifo.P95PipelineS {
			t.Errorf("seed %d: p95 completion %.0fs, want at most 20%% above fifo's %.0fs", seed, hodei.P95PipelineS, fifo.P95PipelineS)
		}
		if hodei.PriorityP95WaitS >= 60 {
			t.Errorf("seed %d: priority p95 wait %.0fs, want under 60s", seed, hodei.PriorityP95WaitS)
		}
		base := map[string]float64{}
		for _, tr := range fifo.Detail.Tenants {
			base[tr.Tenant] = tr.Slowdown
		}
		if len(base) < 2 {
			t.Fatalf("seed %d: %d tenants", seed, len(base))
		}
		for _, tr := range hodei.Detail.Tenants {
			limit := 1.07
			if tr.Tenant == "flood" {
				limit = 1.10
			}
			if tr.Slowdown > base[tr.Tenant]*limit {
				t.Errorf("seed %d: tenant %s: slowdown %.2f, fifo %.2f (want at most %.0f %% more)", seed, tr.Tenant, tr.Slowdown, base[tr.Tenant], 100*(limit-1))
			}
		}
	}
}
