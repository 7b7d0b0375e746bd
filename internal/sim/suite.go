package sim

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
)

// Scenario is one workload of the scenario suite: a generated workload (Gen)
// or a sample of the Alibaba GPU trace (AlibabaPods, a file name in the
// trace directory), with the run options that go with it.
type Scenario struct {
	Name, About string
	Gen         GenOptions
	Churn       float64 // worker losses per hour

	AlibabaPods  string
	TimeScale    float64
	NodeFraction float64
}

// SuiteOptions configures RunSuite.
type SuiteOptions struct {
	// Scale multiplies the jobs of every generated scenario (default 1:
	// 12,000 to 30,000 jobs each).
	Scale float64
	// AlibabaDir is the directory of the Alibaba GPU trace 2023
	// (openb_node_list_all_node.csv and openb_pod_list_*.csv); empty: the
	// trace scenarios are left out.
	AlibabaDir string
	// Policies to run (default fifo, least-loaded, hodei).
	Policies []scheduler.Policy
	// Only, when set, runs only the scenarios of these names.
	Only map[string]bool
	// Progress, when set, gets a line as each scenario starts.
	Progress io.Writer
	// Engine holds the hodei policy's knobs (zero: the defaults).
	Engine scheduler.Config
	// Scorer, when set, is every worker's scorer.
	Scorer scheduler.Scorer
}

// Scenarios returns the suite's scenarios, the Alibaba ones only when dir
// is set.
func Scenarios(scale float64, aliDir string) []Scenario {
	if scale <= 0 {
		scale = 1
	}
	n := func(jobs int) int { return max(500, int(float64(jobs)*scale)) }
	base := func(jobs, workers int, seed uint64) GenOptions {
		return GenOptions{Jobs: n(jobs), Workers: workers, Seed: seed}
	}
	hetero := Variant{Hetero: true, ArmTenant: true, Nightly: 3, LargeShare: 0.05}
	with := func(g GenOptions, f func(*GenOptions)) GenOptions { f(&g); return g }
	ss := []Scenario{
		{Name: "ci", About: "the generator's CI workload at its default load (0.85 at the weekday peak)", Gen: base(30000, 100, 1)},
		{Name: "ci-load1.1", About: "the same, the fleet overloaded at the peak (load 1.1)",
			Gen: with(base(30000, 100, 2), func(g *GenOptions) { g.Load = 1.1 })},
		{Name: "hetero", About: "small/large amd64, GPU and arm64 machines; an arm64 tenant; a nightly GPU tenant (3 chains of 2-4 GPU jobs of 20 min-2 h each night); 5% large builds (16 cores)",
			Gen: with(base(30000, 100, 3), func(g *GenOptions) { g.Variant = hetero })},
		{Name: "hetero-cpu-contended", About: "hetero with 20% fewer x86 cores: the CPU contended at the peak",
			Gen: with(base(30000, 100, 3), func(g *GenOptions) { g.Variant = hetero; g.Variant.X86Factor = 0.8 })},
		{Name: "scarce-pools", About: "hetero with the GPU and arm64 pools at 60% of their demand's share, 10 nightly GPU pipelines a night",
			Gen: with(base(30000, 100, 4), func(g *GenOptions) {
				g.Variant = hetero
				g.Variant.ScarceFactor, g.Variant.Nightly = 0.6, 10
			})},
		{Name: "nightly-low-priority", About: "hetero, the nightly pipelines at priority -5 (after everything else of their tenant)",
			Gen: with(base(30000, 100, 5), func(g *GenOptions) {
				g.Variant = hetero
				g.Variant.Nightly, g.Variant.NightlyPriority = 6, -5
			})},
		{Name: "large-jobs", About: "hetero with 30% of the builds large (16 cores, 48 GiB): a scarce shape on a shared pool",
			Gen: with(base(30000, 100, 6), func(g *GenOptions) { g.Variant = hetero; g.Variant.LargeShare = 0.3 })},
		{Name: "flood-bursts", About: "the flooding tenant brings 60% of the x86 work at the peak, in bursts 3 times larger",
			Gen: with(base(30000, 100, 7), func(g *GenOptions) { g.FloodShare, g.Burst = 0.6, 24; g.Load = 1.0 })},
		{Name: "heavy-tail", About: "durations times a Pareto factor of shape 1.3 (mean 1, capped at 50)",
			Gen: with(base(20000, 100, 8), func(g *GenOptions) { g.Variant.HeavyTail = 1.3 })},
		{Name: "noisy-predictions", About: "durations times exp(N(0,1)): a key's history predicts its next run badly",
			Gen: with(base(30000, 100, 9), func(g *GenOptions) { g.Variant.Noise = 1; g.Load = 1.0 })},
		{Name: "unseen-keys", About: "half of the jobs have a key never seen before",
			Gen: with(base(30000, 100, 10), func(g *GenOptions) { g.Variant.UnseenKeys = 0.5; g.Load = 1.0 })},
		{Name: "drift", About: "half of the keys grow 3 times longer over the workload",
			Gen: with(base(30000, 100, 11), func(g *GenOptions) { g.Variant.Drift = 3 })},
		{Name: "churn", About: "30 worker losses an hour (their jobs start over), back after 10 minutes; load 1.0",
			Gen: with(base(30000, 100, 12), func(g *GenOptions) { g.Load = 1.0 }), Churn: 30},
		{Name: "hetero-churn-noisy", About: "hetero, contended, noisy durations, 10 losses an hour",
			Gen: with(base(30000, 100, 13), func(g *GenOptions) {
				g.Variant = hetero
				g.Variant.X86Factor, g.Variant.Noise = 0.85, 0.7
			}), Churn: 10},
	}
	if aliDir != "" {
		for _, a := range []struct {
			pods     string
			ts, frac float64
		}{
			{"default", 1000, 0.2}, {"default", 500, 0.15}, {"cpu100", 500, 0.15},
			{"gpushare40", 500, 0.15}, {"gpuspec10", 500, 0.15}, {"gpuspec10", 1000, 0.2},
		} {
			ss = append(ss, Scenario{Name: fmt.Sprintf("alibaba-%s-x%.0f-n%.2f", a.pods, a.ts, a.frac),
				About:       fmt.Sprintf("Alibaba GPU 2023, openb_pod_list_%s.csv, arrivals %.0f× faster, %.0f%% of the nodes", a.pods, a.ts, 100*a.frac),
				AlibabaPods: filepath.Join(aliDir, "openb_pod_list_"+a.pods+".csv"), TimeScale: a.ts, NodeFraction: a.frac})
		}
	}
	return ss
}

// Load makes the scenario's workload.
func (sc Scenario) Load() (*Workload, error) {
	if sc.AlibabaPods != "" {
		nodes := filepath.Join(filepath.Dir(sc.AlibabaPods), "openb_node_list_all_node.csv")
		return ImportAlibaba(nodes, sc.AlibabaPods, AlibabaOptions{TimeScale: sc.TimeScale, NodeFraction: sc.NodeFraction, GPUShare: GPUShareMilli})
	}
	return Generate(sc.Gen)
}

// SuiteRow is one scenario's results, one per policy.
type SuiteRow struct {
	Scenario Scenario
	Results  []*Result
}

// RunSuite runs every scenario under every policy.
func RunSuite(o SuiteOptions) ([]SuiteRow, error) {
	pols := o.Policies
	if len(pols) == 0 {
		pols = []scheduler.Policy{scheduler.PolicyFIFO, scheduler.PolicyLeastLoaded, scheduler.PolicyHodei}
	}
	var rows []SuiteRow
	for _, sc := range Scenarios(o.Scale, o.AlibabaDir) {
		if o.Only != nil && !o.Only[sc.Name] {
			continue
		}
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "scenario %s\n", sc.Name)
		}
		w, err := sc.Load()
		if err != nil {
			return rows, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		row := SuiteRow{Scenario: sc}
		for _, p := range pols {
			runtime.GC()
			r, err := Run(w, Options{Policy: p, Engine: o.Engine, Scorer: o.Scorer, Churn: sc.Churn, Seed: sc.Gen.Seed, ChurnDown: 10 * time.Minute})
			if err != nil {
				return rows, fmt.Errorf("scenario %s, policy %s: %w", sc.Name, p, err)
			}
			row.Results = append(row.Results, r)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// WriteSuite writes the suite's table: for each scenario and policy, mean,
// p50, p95 and p99 job wait, mean and p95 pipeline completion, the worst
// tenant's slowdown and the priority p95 wait, with the change against fifo;
// then a line per scenario saying whether hodei is worse than fifo on any of
// mean, p95, p99 wait and worst slowdown (beyond 1%).
func WriteSuite(out io.Writer, rows []SuiteRow, markdown bool) {
	sep, end := "\t", "\t\n"
	if markdown {
		sep, end = " | ", " |\n"
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	var w io.Writer = tw
	if markdown {
		w = out
	}
	head := []string{"scenario", "policy", "mean wait", "p50 wait", "p95 wait", "p99 wait", "mean pipeline", "p95 pipeline", "worst slowdown", "priority p95 wait"}
	line := func(cells []string) {
		if markdown {
			fmt.Fprint(w, "| ")
		}
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(w, sep)
			}
			fmt.Fprint(w, c)
		}
		fmt.Fprint(w, end)
	}
	line(head)
	if markdown {
		d := make([]string, len(head))
		for i := range d {
			d[i] = "---"
		}
		line(d)
	}
	vs := func(v, b float64) string {
		if b == 0 {
			return ""
		}
		return fmt.Sprintf(" (%+.0f%%)", 100*(v-b)/b)
	}
	for _, row := range rows {
		var base *Result
		for _, r := range row.Results {
			if r.Policy == string(scheduler.PolicyFIFO) {
				base = r
			}
		}
		for _, r := range row.Results {
			b := r
			if base != nil {
				b = base
			}
			c := func(v, bv float64) string {
				s := fmt.Sprintf("%.0f", v)
				if r != b {
					s += vs(v, bv)
				}
				return s
			}
			line([]string{row.Scenario.Name, r.Policy, c(r.MeanWaitS, b.MeanWaitS), c(r.P50WaitS, b.P50WaitS),
				c(r.P95WaitS, b.P95WaitS), c(r.P99WaitS, b.P99WaitS), c(r.MeanPipelineS, b.MeanPipelineS),
				c(r.P95PipelineS, b.P95PipelineS), fmt.Sprintf("%.2f", r.MaxTenantSlowdown), fmt.Sprintf("%.0f", r.PriorityP95WaitS)})
		}
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, row := range rows {
		fmt.Fprintf(out, "%s: %s\n", row.Scenario.Name, Verdict(row.Results))
	}
}

// Verdict says how hodei compares with fifo in one scenario: where it is
// worse by more than 1% (mean, p95 and p99 job wait, worst tenant
// slowdown; a wait within one second of fifo's counts as a tie), and the
// change of the mean wait.
func Verdict(rs []*Result) string {
	var f, h *Result
	for _, r := range rs {
		switch r.Policy {
		case string(scheduler.PolicyFIFO):
			f = r
		case string(scheduler.PolicyHodei):
			h = r
		}
	}
	if f == nil || h == nil {
		return "no fifo/hodei pair"
	}
	var worse []string
	check := func(name string, hv, fv, abs float64) {
		if hv > fv*1.01 && hv-fv > abs {
			worse = append(worse, fmt.Sprintf("%s %+.0f%%", name, 100*(hv-fv)/max(fv, 1e-9)))
		}
	}
	check("mean wait", h.MeanWaitS, f.MeanWaitS, 1)
	check("p95 wait", h.P95WaitS, f.P95WaitS, 1)
	check("p99 wait", h.P99WaitS, f.P99WaitS, 1)
	check("worst slowdown", h.MaxTenantSlowdown, f.MaxTenantSlowdown, 0)
	s := "hodei no worse than fifo"
	if len(worse) > 0 {
		s = fmt.Sprintf("hodei WORSE than fifo on %v", worse)
	}
	if f.MeanWaitS > 0 {
		s += fmt.Sprintf("; mean wait %+.0f%%, mean pipeline %+.0f%%", 100*(h.MeanWaitS-f.MeanWaitS)/f.MeanWaitS,
			100*(h.MeanPipelineS-f.MeanPipelineS)/f.MeanPipelineS)
	}
	return s
}
