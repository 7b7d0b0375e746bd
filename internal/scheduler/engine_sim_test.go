package scheduler_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/sim"
)

// TestSimHodeiBeatsFIFO runs the simulator on a generated CI workload at
// high load (1.5 at the daily peak, a flooding tenant, priority pipelines)
// and checks hodei against fifo on the same fleet: lower mean and p95
// pipeline completion, no tenant slowed down more than under fifo, and
// priority jobs placed within a minute (p95).
func TestSimHodeiBeatsFIFO(t *testing.T) {
	t.Parallel()
	w, err := sim.Generate(sim.GenOptions{Jobs: 30000, Workers: 100, Load: 1.5, Seed: 1})
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
	t.Logf("mean %.0fs -> %.0fs, p95 %.0fs -> %.0fs, priority p95 wait %.0fs -> %.0fs",
		fifo.MeanPipelineS, hodei.MeanPipelineS, fifo.P95PipelineS, hodei.P95PipelineS, fifo.PriorityP95WaitS, hodei.PriorityP95WaitS)
	if hodei.MeanPipelineS > 0.9*fifo.MeanPipelineS {
		t.Errorf("mean completion %.0fs, want at least 10%% below fifo's %.0fs", hodei.MeanPipelineS, fifo.MeanPipelineS)
	}
	if hodei.P95PipelineS > fifo.P95PipelineS {
		t.Errorf("p95 completion %.0fs, want at most fifo's %.0fs", hodei.P95PipelineS, fifo.P95PipelineS)
	}
	if hodei.PriorityP95WaitS >= 60 {
		t.Errorf("priority p95 wait %.0fs, want under 60s", hodei.PriorityP95WaitS)
	}
	base := map[string]float64{}
	for _, tr := range fifo.Detail.Tenants {
		base[tr.Tenant] = tr.Slowdown
	}
	for _, tr := range hodei.Detail.Tenants {
		if tr.Slowdown > base[tr.Tenant]*1.02 {
			t.Errorf("tenant %s: slowdown %.2f, fifo %.2f", tr.Tenant, tr.Slowdown, base[tr.Tenant])
		}
	}
}
