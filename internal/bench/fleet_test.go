//go:build fleet

package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFleetOf500AgentsLosesNoJob (build tag fleet: scripts/test runs it in
// its own step, without the race detector, which would make it a test of a
// starved process) drives one server with 500 simulated
// agents (each its own NATS connection, heartbeats, dispatch consumer and
// reports) through 10,000 one-job pipelines: every run succeeds, every job
// ran, and no attempt of a job was delivered to an executor twice.
func TestFleetOf500AgentsLosesNoJob(t *testing.T) {
	const agents, pipelines = 500, 10000
	var (
		mu    sync.Mutex
		execs = map[string]int{} // job -> executions
		twice []string
		seen  = map[string]bool{} // job/attempt
	)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Pipelines: pipelines, Concurrency: 128, Agents: agents, AgentSlots: 4,
		// A loaded machine (the race detector, other packages' tests) may
		// hold heartbeats back: a long lease keeps the test about lost jobs,
		// not about a starved process.
		HeartbeatInterval: 3 * time.Second,
		OnExec: func(runID, jobID string, attempt int) {
			mu.Lock()
			defer mu.Unlock()
			execs[jobID]++
			k := fmt.Sprintf("%s/%d", jobID, attempt)
			if seen[k] {
				twice = append(twice, k)
			}
			seen[k] = true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Agents != agents || res.Jobs != pipelines {
		t.Fatalf("%d agents, %d jobs; want %d and %d", res.Agents, res.Jobs, agents, pipelines)
	}
	if res.Failed != 0 {
		t.Errorf("%d runs failed", res.Failed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(execs) != pipelines {
		t.Errorf("%d jobs ran, want %d", len(execs), pipelines)
	}
	again := 0
	for _, n := range execs {
		if n > 1 {
			again++
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d attempts delivered twice, e.g. %v", len(twice), twice[:min(len(twice), 5)])
	}
	t.Logf("%d agents joined in %.1fs; %d jobs at %.0f jobs/s, submit->start p99 %.0f ms; %d jobs given a second attempt; RSS %.0f MiB",
		res.Agents, res.AgentsStartS, res.Jobs, res.JobsPerSec, res.SubmitToStartMS.P99, again, res.ServerRSSMiB)
}
