package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/sim"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

func simCmd(args []string) int {
	fs := flags("sim", "(--generate | --workers FILE --pipelines FILE | --alibaba-nodes FILE --alibaba-pods FILE) [flags]", `
Simulate Hodei's scheduler on a workload under a virtual clock: pipelines
arrive at their submit time, ready jobs are queued, the scheduler engine (the
same code the server runs) places them, and each job finishes after its true
duration, which the scheduler never sees: it only learns how long finished
jobs ran, as in production. Prints completion times, waits, fairness,
utilization and the scheduler's speed. See docs/scheduling.md.

The workload is one of:
  --generate          a synthetic CI-shaped workload: --jobs, --workers N,
                      --seed, --days, --load, --tenants
  --workers FILE --pipelines FILE
                      a fleet (CSV: id,cpu_milli,memory_mib,gpu,labels,
                      cost_per_hour; labels separated by ";") and pipelines
                      (JSON lines: {"id","tenant","priority","submit_s",
                      "concurrency":{"group","limit"},"jobs":[{"id","needs",
                      "cpu_milli","memory_mib","gpu","labels","duration_s",
                      "key"}]})
  --alibaba-nodes FILE --alibaba-pods FILE
                      the Alibaba GPU cluster trace of 2023 (openb_node_list_*
                      and openb_pod_list_*.csv): nodes become workers, pods
                      single-job pipelines; --time-scale compresses arrivals,
                      --node-fraction shrinks the cluster

--generate takes variant knobs for fleets and workloads it does not make by
default: --hetero, --x86-factor, --scarce-factor, --arm-tenant, --nightly,
--nightly-priority, --large-share, --heavy-tail, --noise, --unseen-keys,
--drift (see docs/scheduling.md#variants).

--suite runs the scenario suite instead: about 14 generated workloads (and 6
of the Alibaba trace with --alibaba-dir DIR) under every policy, and prints
a table with hodei's changes against fifo.

With --pools FILE (a pools file, as the server reads it) the fleet is made of
the pools' workers instead, started and stopped by the autoscaler every
--scale-period: --autoscale static keeps every pool at max, reactive starts
workers for queued jobs, predictive also forecasts each pool's demand and
starts workers one startup_delay ahead. A worker joins startup_delay after it
is created. The result adds worker-hours, idle worker-hours, cost and the
forecast error (see docs/scheduling.md#autoscaling).

With --shards N the fleet and the jobs are split among N independent
engines, as N scheduler leaders would each run one: --shard-by pool gives
each shard whole pools (cut when larger than a shard's share), --shard-by
tenant a slice of every pool and whole tenants. A list (--shards 1,2,4,8)
runs each and prints a table of the changes against the first (see
docs/scheduling.md#beyond-one-leader).

Examples:
  hodei sim --generate --jobs 100000 --workers 500 --policy hodei
  hodei sim --generate --jobs 200000 --workers 500 --seed 1 --compare
  hodei sim --generate --jobs 20000 --workers 100 --write-workers w.csv --write-pipelines p.jsonl --dry-run
  hodei sim --workers w.csv --pipelines p.jsonl --policy fifo --json
  hodei sim --alibaba-nodes openb_node_list_all_node.csv --alibaba-pods openb_pod_list_default.csv \
      --time-scale 1000 --node-fraction 0.2 --compare
  hodei sim --generate --jobs 1000000 --workers 10000 --json   # the scale run
  hodei sim --suite --alibaba-dir DIR --markdown   # DIR: the alibaba-gpu-2023 trace
  hodei sim --generate --days 7 --jobs 60000 --workers 100 --pools examples/pools/ci.yaml --autoscale predictive
  hodei sim --generate --jobs 100000 --workers 500 --hetero --shards 1,2,4,8 --shard-by tenant`)
	workers := fs.String("workers", "", "the fleet: a CSV `FILE`, or with --generate a number of workers (default 500)")
	pipelines := fs.String("pipelines", "", "pipelines: a JSON lines `FILE`, one pipeline a line")
	generate := fs.Bool("generate", false, "generate a synthetic CI-shaped workload")
	jobs := fs.Int("jobs", 0, "with --generate: jobs to generate (default 100000 unless --days is set)")
	seed := fs.Uint64("seed", 1, "with --generate: random seed (same seed, same workload); also seeds --churn")
	days := fs.Float64("days", 0, "with --generate: span of arrivals in days; with --jobs, sets the arrival rate instead of --load")
	load := fs.Float64("load", 0.85, "with --generate: offered load at the weekday peak, as a share of the fleet")
	tenants := fs.Int("tenants", 6, "with --generate: tenants, the first of which (\"flood\") floods the fleet in bursts")
	floodShare := fs.Float64("flood-share", 0.35, "with --generate: the flooding tenant's share of the work at the peak")
	burst := fs.Int("burst", 0, "with --generate: mean number of pipelines of a flood burst (0: 10 per repository of the flood, 40 per 500 workers)")
	writeWorkers := fs.String("write-workers", "", "write the workload's fleet to this CSV `FILE`")
	writePipelines := fs.String("write-pipelines", "", "write the workload's pipelines to this JSON lines `FILE`")
	dryRun := fs.Bool("dry-run", false, "describe (and write) the workload, do not simulate")
	aliNodes := fs.String("alibaba-nodes", "", "Alibaba GPU trace 2023: the node list CSV `FILE`")
	aliPods := fs.String("alibaba-pods", "", "Alibaba GPU trace 2023: a pod list CSV `FILE`")
	timeScale := fs.Float64("time-scale", 1, "with --alibaba-*: divide the time between arrivals by this (durations are kept)")
	nodeFraction := fs.Float64("node-fraction", 1, "with --alibaba-*: keep this share of the nodes, evenly spaced (the same pods on a smaller cluster)")
	qosPriority := fs.Bool("alibaba-qos-priority", false, "with --alibaba-*: give each pod the priority of its QoS class (Guaranteed 3, LS 2, Burstable 1, BE 0) instead of 0")
	gpuShare := fs.String("gpu-share", sim.GPUShareMilli, "with --alibaba-*: how shared GPUs are modelled: milli (fractions of a GPU) or whole (a GPU each)")
	policy := fs.String("policy", "hodei", "scheduling policy: fifo, least-loaded or hodei")
	compare := fs.Bool("compare", false, "run every policy on the same workload and compare them")
	asJSON := fs.Bool("json", false, "print one JSON object (with --compare, an array)")
	check := fs.Bool("check", false, "check every assignment (worker capacity and labels, needs done, no job twice) and fail on a violation")
	churn := fs.Float64("churn", 0, "worker losses per hour over the fleet: their jobs are requeued, the worker returns after --churn-down")
	churnDown := fs.Duration("churn-down", 10*time.Minute, "how long a lost worker stays away")
	aging := fs.Duration("aging", 0, "engine: waiting this long raises a job's priority by one level (0: the engine's default)")
	workWeight := fs.Float64("work-weight", 0, "engine (hodei): weight of a pipeline's remaining predicted work in the ranking (0: the engine's default)")
	pathWeight := fs.Float64("path-weight", 0, "engine (hodei): weight of the critical path in the latest start time by which tenants compete (0: the engine's default)")
	workKnee := fs.Duration("work-knee", 0, "engine (hodei): past this much queue position the remaining-work term grows as a square root (0: the engine's default, 10m; negative: no knee)")
	fairDelay := fs.Duration("fair-delay", 0, "engine (hodei): fair-share delay scale for a tenant above its share (0: the engine's default)")
	slack := fs.Duration("slack", 0, "engine (hodei): a job that FIFO would have started (by a virtual FIFO clock) and that waited this much longer is placed first (0: no such bound)")
	window := fs.Duration("window", 0, "engine (hodei): bound of the ranking: a job's queue key is its ready time ± this (0: no bound)")
	suitePolicies := fs.String("suite-policies", "", "with --suite: the policies to run, separated by commas (default fifo, least-loaded, hodei)")
	lookahead := fs.Int("lookahead", 0, "engine: jobs examined per plan past the first that does not fit (0: the engine's default)")
	scorer := fs.String("scorer", "", "engine: worker scorer for every worker, binpack or spread (empty: the engine's default)")
	poolsFile := fs.String("pools", "", "simulate the pools of this pools `FILE` instead of the workload's fleet")
	autoscaleMode := fs.String("autoscale", "reactive", "with --pools: static (every pool at max), reactive or predictive")
	scalePeriod := fs.Duration("scale-period", 30*time.Second, "with --pools: virtual time between two autoscaler decisions")
	asQuantile := fs.Float64("autoscale-quantile", 0.7, "predictive: share of buckets whose peak demand the idle workers kept cover")
	asHeadroom := fs.Float64("autoscale-headroom", 0, "predictive: fraction of the forecast added to the target")
	asCooldown := fs.Duration("autoscale-cooldown", time.Minute, "predictive: idle time after which a worker beyond the forecast is drained")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the simulation to this `FILE`")
	suite := fs.Bool("suite", false, "run the scenario suite (every scenario under every policy) and print its table")
	suiteScale := fs.Float64("suite-scale", 1, "with --suite: multiply the jobs of every generated scenario by this")
	suiteOnly := fs.String("suite-only", "", "with --suite: run only these scenarios (names separated by commas)")
	aliDir := fs.String("alibaba-dir", "", "with --suite: the `DIR` of the Alibaba GPU trace 2023 (openb_node_list_all_node.csv, openb_pod_list_*.csv); adds its scenarios")
	markdown := fs.Bool("markdown", false, "with --suite: print the table in Markdown")
	shardsFlag := fs.String("shards", "1", "split the fleet and the jobs among this many independent engines; a list separated by commas runs each and compares them")
	shardBy := fs.String("shard-by", sim.ShardByPool, "with --shards: pool (each shard owns whole pools) or tenant (each shard owns whole tenants and a slice of every pool)")
	var v sim.Variant
	fs.BoolVar(&v.Hetero, "hetero", false, "with --generate: a fleet of small and large amd64, GPU and arm64 machines (see docs/scheduling.md)")
	fs.Float64Var(&v.X86Factor, "x86-factor", 0, "with --hetero: x86 cores times this (below 1: CPU contended)")
	fs.Float64Var(&v.ScarceFactor, "scarce-factor", 0, "with --hetero: arm64 and GPU pools times this (below 1: overloaded)")
	fs.BoolVar(&v.ArmTenant, "arm-tenant", false, "with --generate: the last team runs on arm64 only")
	fs.IntVar(&v.Nightly, "nightly", 0, "with --generate: long GPU pipelines of tenant \"nightly\" every night at 01:00-02:00")
	fs.IntVar(&v.NightlyPriority, "nightly-priority", 0, "with --nightly: their priority (-100..100)")
	fs.Float64Var(&v.LargeShare, "large-share", 0, "with --generate: share of x86 builds made large (16 cores, 48 GiB)")
	fs.Float64Var(&v.HeavyTail, "heavy-tail", 0, "with --generate: durations times a Pareto factor of this shape (> 1; mean 1)")
	fs.Float64Var(&v.Noise, "noise", 0, "with --generate: durations times exp(noise × N(0,1))")
	fs.Float64Var(&v.UnseenKeys, "unseen-keys", 0, "with --generate: share of jobs with a key never seen before")
	fs.Float64Var(&v.Drift, "drift", 0, "with --generate: half of the keys grow to this factor of their duration over the workload")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	// The engine's knobs, the same for the suite and for a run.
	engine := scheduler.Config{WorkWeight: *workWeight, PathWeight: *pathWeight, WorkKnee: *workKnee, FairShareDelay: *fairDelay,
		Slack: *slack, Window: *window, Aging: *aging}

	if *suite {
		if *suiteScale <= 0 {
			return usageError(fs, "--suite-scale must be positive")
		}
		if !validScorer(*scorer) {
			return usageError(fs, "--scorer %q: want binpack or spread", *scorer)
		}
		for _, p := range policyList(*suitePolicies) {
			if !validPolicy(p) {
				return usageError(fs, "--suite-policies: %q is not fifo, least-loaded or hodei", p)
			}
		}
		return runSuite(sim.SuiteOptions{Scorer: scheduler.Scorer(*scorer), Scale: *suiteScale, AlibabaDir: *aliDir, Only: splitSet(*suiteOnly), Progress: os.Stderr,
			Engine: engine, Policies: policyList(*suitePolicies)}, *markdown, *asJSON)
	}
	if !validPolicy(scheduler.Policy(*policy)) {
		return usageError(fs, "--policy %q: want fifo, least-loaded or hodei", *policy)
	}
	if !validScorer(*scorer) {
		return usageError(fs, "--scorer %q: want binpack or spread", *scorer)
	}
	if *churn < 0 || *aging < 0 || *lookahead < 0 {
		return usageError(fs, "--churn, --aging and --lookahead must not be negative")
	}
	var shardCounts []int
	for _, f := range strings.Split(*shardsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > sim.MaxShards {
			return usageError(fs, "--shards %q: want numbers from 1 to %d separated by commas", *shardsFlag, sim.MaxShards)
		}
		shardCounts = append(shardCounts, n)
	}
	if *shardBy != sim.ShardByPool && *shardBy != sim.ShardByTenant {
		return usageError(fs, "--shard-by %q: want pool or tenant", *shardBy)
	}
	if len(shardCounts) > 1 && *compare {
		return usageError(fs, "--compare does not go with a list of --shards")
	}
	if slices.Max(shardCounts) > 1 && *poolsFile != "" {
		return usageError(fs, "--shards does not go with --pools")
	}
	var pools *sim.PoolOptions
	if *poolsFile != "" {
		switch *autoscaleMode {
		case sim.AutoscaleStatic, sim.AutoscaleReactive, sim.AutoscalePredictive:
		default:
			return usageError(fs, "--autoscale %q: want static, reactive or predictive", *autoscaleMode)
		}
		if *asQuantile <= 0 || *asQuantile > 1 || *asHeadroom < 0 || *asCooldown <= 0 {
			return usageError(fs, "--autoscale-quantile must be in (0, 1], --autoscale-headroom not negative, --autoscale-cooldown positive")
		}
		if *scalePeriod <= 0 {
			return usageError(fs, "--scale-period must be positive")
		}
		if *churn > 0 {
			return usageError(fs, "--churn does not go with --pools")
		}
		cfg, err := poolsfile.LoadConfig(*poolsFile)
		if err != nil {
			return fail("sim", err)
		}
		pools = &sim.PoolOptions{Config: cfg, Mode: *autoscaleMode, Period: *scalePeriod,
			Autoscale: autoscale.Options{Quantile: *asQuantile, Headroom: *asHeadroom, ExcessCooldown: *asCooldown}}
	}
	policies := []scheduler.Policy{scheduler.Policy(*policy)}
	if *compare {
		policies = []scheduler.Policy{scheduler.PolicyFIFO, scheduler.PolicyLeastLoaded, scheduler.PolicyHodei}
	}

	// The workload.
	var w *sim.Workload
	var err error
	t0 := time.Now()
	sources := 0
	for _, b := range []bool{*generate, *pipelines != "", *aliNodes != "" || *aliPods != ""} {
		if b {
			sources++
		}
	}
	switch {
	case sources == 0 && *workers != "":
		return usageError(fs, "--workers FILE needs --pipelines FILE (or use --generate)")
	case sources != 1:
		return usageError(fs, "give one workload: --generate, --workers and --pipelines, or --alibaba-nodes and --alibaba-pods")
	case *generate:
		n := 500
		if *workers != "" {
			n, err = strconv.Atoi(*workers)
			if err != nil || n <= 0 {
				return usageError(fs, "with --generate, --workers is a number of workers, not %q", *workers)
			}
		}
		if *jobs < 0 || *days < 0 {
			return usageError(fs, "--jobs and --days must not be negative")
		}
		if *load <= 0 || *floodShare <= 0 || *floodShare >= 1 || *burst < 0 {
			return usageError(fs, "--load must be positive, --flood-share between 0 and 1 (exclusive), --burst not negative")
		}
		if *jobs == 0 && *days == 0 {
			*jobs = 100000
		}
		w, err = sim.Generate(sim.GenOptions{Jobs: *jobs, Days: *days, Workers: n, Load: *load, Tenants: *tenants,
			FloodShare: *floodShare, Burst: *burst, Seed: *seed, Variant: v})
		if err != nil {
			return usageError(fs, "%v", err)
		}
	case *pipelines != "":
		if *workers == "" {
			return usageError(fs, "--pipelines needs --workers FILE")
		}
		w, err = sim.LoadFiles(*workers, *pipelines)
		if err != nil {
			return fail("sim", err)
		}
	default:
		if *aliNodes == "" || *aliPods == "" {
			return usageError(fs, "give both --alibaba-nodes and --alibaba-pods")
		}
		if *workers != "" {
			return usageError(fs, "--workers does not go with --alibaba-*")
		}
		if *timeScale <= 0 {
			return usageError(fs, "--time-scale must be positive")
		}
		if *nodeFraction <= 0 || *nodeFraction > 1 {
			return usageError(fs, "--node-fraction must be in (0, 1]")
		}
		if *gpuShare != sim.GPUShareMilli && *gpuShare != sim.GPUShareWhole {
			return usageError(fs, "--gpu-share %q: want milli or whole", *gpuShare)
		}
		w, err = sim.ImportAlibaba(*aliNodes, *aliPods, sim.AlibabaOptions{TimeScale: *timeScale, GPUShare: *gpuShare,
			NodeFraction: *nodeFraction, QoSPriority: *qosPriority})
		if err != nil {
			return fail("sim", err)
		}
	}
	loadTime := time.Since(t0)
	if err := w.WriteFiles(*writeWorkers, *writePipelines); err != nil {
		return fail("sim", err)
	}
	if *dryRun {
		sim.WriteWorkload(os.Stdout, w)
		return exitOK
	}

	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return fail("sim", err)
	}
	defer stopProfile()
	if !*asJSON {
		sim.WriteWorkload(os.Stdout, w)
		fmt.Printf("prepared   in %.1fs\n\n", loadTime.Seconds())
	}
	var results []*sim.Result
	type runOf struct {
		policy scheduler.Policy
		shards int
	}
	var runs []runOf
	for _, p := range policies {
		for _, n := range shardCounts {
			runs = append(runs, runOf{p, n})
		}
	}
	for _, ro := range runs {
		p := ro.policy
		runtime.GC() // each run starts from the same heap
		r, err := sim.Run(w, sim.Options{Policy: p, Aging: *aging, Lookahead: *lookahead, Scorer: scheduler.Scorer(*scorer),
			Engine: engine, Check: *check, Churn: *churn, ChurnDown: *churnDown, Seed: *seed, Pools: pools,
			Shards: ro.shards, ShardBy: *shardBy})
		if err != nil {
			return fail("sim", fmt.Errorf("policy %s, %d shards: %w", p, ro.shards, err))
		}
		results = append(results, r)
		if !*asJSON {
			sim.WriteResult(os.Stdout, r)
			sim.WritePools(os.Stdout, r)
			fmt.Println()
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		var v any = results[0]
		if *compare || len(shardCounts) > 1 {
			v = results
		}
		if err := enc.Encode(v); err != nil {
			return fail("sim", err)
		}
		return exitOK
	}
	if *compare {
		sim.WriteComparison(os.Stdout, results)
	}
	if len(shardCounts) > 1 {
		sim.WriteShards(os.Stdout, results)
	}
	return exitOK
}

// runSuite runs the scenario suite and prints its table (or, with asJSON,
// one object per scenario: its name and the results of every policy).
func runSuite(o sim.SuiteOptions, markdown, asJSON bool) int {
	t0 := time.Now()
	rows, err := sim.RunSuite(o)
	if err != nil {
		return fail("sim", err)
	}
	if asJSON {
		type row struct {
			Scenario string        `json:"scenario"`
			About    string        `json:"about"`
			Results  []*sim.Result `json:"results"`
		}
		out := make([]row, len(rows))
		for i, r := range rows {
			out[i] = row{r.Scenario.Name, r.Scenario.About, r.Results}
		}
		if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
			return fail("sim", err)
		}
		return exitOK
	}
	sim.WriteSuite(os.Stdout, rows, markdown)
	fmt.Printf("\n%d scenarios in %.0fs\n", len(rows), time.Since(t0).Seconds())
	return exitOK
}

func splitSet(s string) map[string]bool {
	if s == "" {
		return nil
	}
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

// validPolicy reports whether p is a policy the simulator runs.
func validPolicy(p scheduler.Policy) bool {
	switch p {
	case scheduler.PolicyFIFO, scheduler.PolicyLeastLoaded, scheduler.PolicyHodei:
		return true
	}
	return false
}

// validScorer reports whether s names a worker scorer ("" is the engine's
// default).
func validScorer(s string) bool {
	switch scheduler.Scorer(s) {
	case "", scheduler.BinPack, scheduler.Spread:
		return true
	}
	return false
}

// policyList reads a list of policies separated by commas (nil for none).
func policyList(s string) []scheduler.Policy {
	var out []scheduler.Policy
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, scheduler.Policy(f))
		}
	}
	return out
}
