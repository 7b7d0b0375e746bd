package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/state"
)

// TestUnrunnableWithAnOpenNATSPort: with a NATS port open for agents, a job
// that no worker could run (and no pool: there is none) fails once agents
// have had the join grace (--worker-ttl) to come back, and from then on in
// the pass that queues it; with WaitForAgents it keeps waiting and says why.
func TestUnrunnableWithAnOpenNATSPort(t *testing.T) {
	const huge = "name: huge\njobs:\n  huge:\n    runs-on: {cpu: 10000}\n    steps: [{run: \"true\"}]\n"
	for _, wait := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s := startTestServer(t, Options{
			NATSListen: "", LocalWorkers: 1, WorkerTTL: time.Second, WaitForAgents: wait,
		})
		if wait {
			run, err := s.Submit(ctx, "huge.yaml", []byte(huge), "")
			if err != nil {
				t.Fatal(err)
			}
			// Well past the join grace, the job still waits: poll its
			// reason until the grace is over, then check its state.
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				_, jobs := loadRun(t, s, run.ID)
				out, err := s.Orch.Outlook(ctx, []string{jobs["huge"].ID})
				if err != nil {
					t.Fatal(err)
				}
				if j := jobs["huge"]; j.State != state.JobQueued || out[j.ID].Waiting.Code != scheduler.ReasonTooLarge {
					t.Fatalf("--wait-for-agents: %s, waits for %+v; want queued, %s", j.State, out[j.ID].Waiting, scheduler.ReasonTooLarge)
				}
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(100 * time.Millisecond): // the state would change in the server's own loop
				}
			}
			continue
		}
		first, jobs := runPipeline(t, s, huge, 30*time.Second)
		if first.State != state.RunFailed || !strings.HasPrefix(jobs["huge"].Error, "no worker can run it: asks 10000 cpu, the largest worker has") {
			t.Fatalf("first run %s, error %q", first.State, jobs["huge"].Error)
		}
		// Submit answers after the pass that queued the job.
		run, err := s.Submit(ctx, "huge.yaml", []byte(huge), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, jobs := loadRun(t, s, run.ID); jobs["huge"].State != state.JobFailed {
			t.Errorf("after the grace: %s, want failed at once", jobs["huge"].State)
		}
	}
}
