package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/hodei-ci/hodei/internal/bench"
	"github.com/hodei-ci/hodei/internal/store/postgres"
)

func benchFleetCmd(args []string) int {
	fs := flags("bench fleet", "[flags]", `
Drive one embedded server (SQLite or the PostgreSQL of --store, the
orchestrator and scheduler, embedded NATS JetStream or the external NATS of
--nats) with --agents simulated agents
in this process: each has its own NATS connection, heartbeats, dispatch
consumer and reports, the real protocol of "hodei agent", and an executor
that ends every job at once (or after --delay) without running anything.
It submits one-job pipelines and prints jobs/s, submit->start and
submit->finish latencies, how long the agents took to join, and the
process's resident memory (server and agents together).

Examples:
  hodei bench fleet --agents 1000 --pipelines 20000 --concurrency 256
  hodei bench fleet --agents 5000 --heartbeat 5s --pipelines 50000 --concurrency 1024
  hodei bench fleet --agents 500 --store postgres://hodei@127.0.0.1:5432/hodei --pipelines 20000 --concurrency 256`)
	agents := fs.Int("agents", 100, "simulated agents")
	n := fs.Int("pipelines", 10000, "one-job pipelines to submit")
	conc := fs.Int("concurrency", 64, "concurrent submitters, each waiting for its pipeline to end (closed loop)")
	rate := fs.Float64("rate", 0, "submit open-loop at this many pipelines per second instead")
	delay := fs.Duration("delay", 0, "how long each simulated job lasts")
	slots := fs.Int("slots", 4, "jobs each simulated agent runs at once")
	heartbeat := fs.Duration("heartbeat", 0, "the agents' heartbeat interval (the server's default when 0); the worker TTL is 5 times it")
	startParallel := fs.Int("start-parallel", 64, "agents that start at once")
	natsURL := fs.String("nats", "", "run the server on this external NATS instead of the embedded one")
	storeURL := fs.String("store", "", "the server's database: sqlite (a file in a temporary directory) or a postgres:// `URL`")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	joinProfile := fs.String("join-cpuprofile", "", "write a CPU profile of the agents' join alone to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file once every agent has joined")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	if *agents <= 0 || *n <= 0 || *conc <= 0 || *slots <= 0 || *startParallel <= 0 || *rate < 0 || *delay < 0 || *heartbeat < 0 {
		return usageError(fs, "--agents, --pipelines, --concurrency, --slots and --start-parallel must be positive")
	}
	if *storeURL == "sqlite" { // as hodei server spells its default (HODEI_STORE)
		*storeURL = ""
	}
	if *storeURL != "" && !postgres.IsURL(*storeURL) {
		return usageError(fs, "--store %q: want sqlite or a postgres:// URL", *storeURL)
	}
	ctx, done, err := startBench(*cpuProfile)
	if err != nil {
		return fail("bench fleet", err)
	}
	defer done()
	stopJoinProfile, err := startCPUProfile(*joinProfile)
	if err != nil {
		return fail("bench fleet", err)
	}
	joined := func() {
		stopJoinProfile()
		if *memProfile != "" {
			if err := writeHeapProfile(*memProfile); err != nil {
				fmt.Fprintf(os.Stderr, "hodei bench fleet: %v\n", err)
			}
		}
	}
	res, err := bench.Run(ctx, bench.Options{
		Pipelines: *n, Concurrency: *conc, Rate: *rate, Agents: *agents, AgentDelay: *delay, AgentSlots: *slots,
		HeartbeatInterval: *heartbeat, StartParallel: *startParallel, NATSURL: *natsURL, Store: *storeURL, Joined: joined,
	})
	stopJoinProfile() // when the join failed
	return benchResult(ctx, "bench fleet", res, err, *asJSON, func(res bench.Result) {
		fmt.Printf("%d simulated agents joined in %.1fs\n", res.Agents, res.AgentsStartS)
		printPipelinesRun(res)
		fmt.Printf("process RSS         %8.0f MiB (server and agents)\n", res.ServerRSSMiB)
	})
}

// writeHeapProfile writes the heap profile (after a collection, so that it
// shows what is live) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}
