package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hodei-ci/hodei/internal/bench"
)

func benchCmd(args []string) int {
	if len(args) > 0 && args[0] == "api" {
		return benchAPICmd(args[1:])
	}
	if len(args) > 0 && args[0] == "fleet" {
		return benchFleetCmd(args[1:])
	}
	fs := flags("bench", "[flags]", `
Measure Hodei end to end on this machine: start an embedded server (embedded
NATS JetStream, SQLite, local agents), submit trivial pipelines (one job, one
step "true"), and print throughput and latency percentiles. It also measures
how many "sh -c true" processes this machine starts per second: no system that
runs each job as a process can go faster.

"hodei bench api" loads the API instead (hodei bench api --help), and "hodei
bench fleet" drives one server with thousands of simulated agents (hodei
bench fleet --help).

Examples:
  hodei bench --pipelines 5000 --concurrency 8
  hodei bench --dag --pipelines 500
  hodei bench --rate 50 --pipelines 1000   # latency at 50 pipelines/s offered`)
	n := fs.Int("pipelines", 2000, "pipelines to submit")
	conc := fs.Int("concurrency", 8, "concurrent submitters, each waiting for its pipeline to end (closed loop)")
	rate := fs.Float64("rate", 0, "submit open-loop at this many pipelines per second instead")
	dag := fs.Bool("dag", false, "use 10-job diamond pipelines (1 -> 8 -> 1)")
	workers := fs.Int("workers", 2, "local agents")
	spawn := fs.Int("spawn-samples", 2000, "\"sh -c true\" processes to start for the ceiling (0 skips)")
	unsafeShared := fs.Bool("unsafe-shared-user", false, "run the steps without isolation, to measure what it costs")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	if *n <= 0 || *conc <= 0 || *workers <= 0 || *rate < 0 {
		return usageError(fs, "--pipelines, --concurrency and --workers must be positive")
	}
	ctx, done, err := startBench(*cpuProfile)
	if err != nil {
		return fail("bench", err)
	}
	defer done()
	res, err := bench.Run(ctx, bench.Options{
		Pipelines: *n, Concurrency: *conc, Rate: *rate, DAG: *dag, Workers: *workers, SpawnSamples: *spawn, Unisolated: *unsafeShared,
	})
	return benchResult(ctx, "bench", res, err, *asJSON, func(res bench.Result) {
		printPipelinesRun(res)
		if res.SpawnPerSec > 0 {
			fmt.Printf("sh -c true spawn    %8.1f /s   (Hodei reached %.0f%% of it)\n", res.SpawnPerSec, 100*res.CeilingFraction)
		}
	})
}

// benchResult reports how a run of pipelines (bench.Run) ended: its error
// (the signal, if one stopped it), or its result as one line of JSON with
// asJSON, or else as text. Failed runs fail the benchmark.
func benchResult(ctx context.Context, name string, res bench.Result, err error, asJSON bool, text func(bench.Result)) int {
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fail(name, err)
	}
	if asJSON {
		if err := printJSONLine(os.Stdout, res); err != nil {
			return fail(name, err)
		}
		return exitOK
	}
	text(res)
	if res.Failed > 0 {
		fmt.Printf("failed runs         %d\n", res.Failed)
		return exitFailed
	}
	return exitOK
}

// printPipelinesRun prints what "hodei bench" and "hodei bench fleet"
// measure alike: the pipelines run, the throughput and the latencies.
func printPipelinesRun(res bench.Result) {
	mode := fmt.Sprintf("closed loop, %d submitters", res.Concurrency)
	if res.Rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f pipelines/s offered", res.Rate)
	}
	fmt.Printf("%d pipelines, %d jobs (%s) in %.2fs\n", res.Pipelines, res.Jobs, mode, res.WallS)
	fmt.Printf("throughput          %8.1f jobs/s\n", res.JobsPerSec)
	fmt.Printf("submit -> start     p50 %7.2f ms   p95 %7.2f ms   p99 %7.2f ms\n", res.SubmitToStartMS.P50, res.SubmitToStartMS.P95, res.SubmitToStartMS.P99)
	fmt.Printf("submit -> finish    p50 %7.2f ms   p95 %7.2f ms   p99 %7.2f ms\n", res.SubmitToFinishMS.P50, res.SubmitToFinishMS.P95, res.SubmitToFinishMS.P99)
}
