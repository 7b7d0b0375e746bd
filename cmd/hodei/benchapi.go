package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/bench"
)

func benchAPICmd(args []string) int {
	fs := flags("bench api", "[flags]", `
Load a server's API with authenticated requests from -c kept-alive
connections for -d, and print requests per second and latency percentiles
for each kind of request: "run" (GET /api/v1/runs/ID), "list" (GET
/api/v1/runs?limit=20), "logs" (GET /api/v1/runs/ID/logs) and "submit" (POST
/api/v1/runs, a one-step pipeline).

Without --server it starts an embedded server (authentication, Cedar and the
audit trail on, as "hodei server" by default; 2 local workers), seeds it with
finished runs, and reads them with an API token it makes; the CPU time per
request it prints then includes its own. With --server, the token is the
CLI's (hodei login) or --token, and --pid names the server's process to
measure its CPU time per request.

Examples:
  hodei bench api -c 16 -d 10s
  hodei bench api --mix run=8,list=1,logs=1 --cpuprofile api.pprof
  hodei bench api --server http://127.0.0.1:8080 --pid 4242 -c 16 -d 20s`)
	conns := fs.Int("c", 16, "connections, each sending its next request when the last is answered")
	dur := fs.Duration("d", 10*time.Second, "how long to load the server")
	mix := fs.String("mix", "run=1", "kinds of requests and their weights: run, list, logs, submit")
	runs := fs.Int("runs", 20, "finished runs to seed the embedded server with (and to read)")
	srv := fs.String("server", "", "URL of a running server (default: start an embedded one)")
	token := fs.String("token", "", "API token for --server (default: the CLI's saved credentials)")
	pid := fs.Int("pid", 0, "with --server: the server's process id, to measure its CPU time per request")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process during the run (the embedded server and the load generator)")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	weights := map[string]int{}
	for _, part := range strings.Split(*mix, ",") {
		k, v, found := strings.Cut(strings.TrimSpace(part), "=")
		w := 1
		if found {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return usageError(fs, "--mix %q: a weight is a whole number", part)
			}
			w = n
		}
		weights[k] = w
	}
	if *conns <= 0 || *dur <= 0 || *runs <= 0 {
		return usageError(fs, "-c, -d and --runs must be positive")
	}
	o := bench.APIOptions{Server: *srv, Token: *token, Connections: *conns, Duration: *dur, Mix: weights, Runs: *runs, ServerPID: *pid}
	if *srv != "" && o.Token == "" {
		o.Token = clientToken(*srv)
	}
	ctx, done, err := startBench(*cpuProfile)
	if err != nil {
		return fail("bench api", err)
	}
	defer done()
	res, err := bench.RunAPI(ctx, o)
	if err != nil {
		return fail("bench api", err)
	}
	if *asJSON {
		if err := printJSONLine(os.Stdout, res); err != nil {
			return fail("bench api", err)
		}
		return exitOK
	}
	fmt.Printf("%d requests on %d connections in %.2fs: %.0f req/s, %d errors\n", res.Requests, res.Connections, res.DurationS, res.PerSec, res.Errors)
	fmt.Printf("latency             p50 %7.2f ms   p95 %7.2f ms   p99 %7.2f ms   max %7.2f ms\n", res.LatencyMS.P50, res.LatencyMS.P95, res.LatencyMS.P99, res.MaxMS)
	kinds := make([]string, 0, len(res.Kinds))
	for k := range res.Kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	if len(kinds) > 1 {
		for _, k := range kinds {
			kr := res.Kinds[k]
			fmt.Printf("  %-7s %8.0f req/s   p50 %7.2f ms   p99 %7.2f ms   (%d errors)\n", k, kr.PerSec, kr.LatencyMS.P50, kr.LatencyMS.P99, kr.Errors)
		}
	}
	if res.CPUPerRequestUS > 0 {
		fmt.Printf("cpu per request     %.1f µs (%s)\n", res.CPUPerRequestUS, res.CPUProcess)
	}
	if res.AuditBytesPerRequest > 0 {
		fmt.Printf("audit trail         %.0f bytes per request\n", res.AuditBytesPerRequest)
	}
	if res.FirstError != "" {
		fmt.Printf("first error         %s\n", res.FirstError)
	}
	if res.Errors > 0 {
		return exitFailed
	}
	return exitOK
}

// startBench returns the context of a benchmark, which ends at SIGINT or
// SIGTERM, with the CPU profile of path (none if empty) started; done
// stops the profile, then the context.
func startBench(path string) (ctx context.Context, done func(), err error) {
	ctx, stop := signalContext()
	stopProfile, err := startCPUProfile(path)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, func() {
		stopProfile()
		stop()
	}, nil
}

// startCPUProfile writes a CPU profile of this process to path until stop
// is called; with no path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
