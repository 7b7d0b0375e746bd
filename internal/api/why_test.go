package api_test

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// TestQueuedJobReason: a queued job that waits for a busy worker says so
// (reason, reason_detail); on the test server, whose one local worker is
// the whole fleet, a job larger than it fails at once with why.
func TestQueuedJobReason(t *testing.T) {
	e := startUnisolated(t)
	ctx := testCtx(t, 60*time.Second)
	gate := filepath.Join(t.TempDir(), "gate")
	// Each job asks for all the cpus of the local worker (the machine's,
	// at least one), so the second waits for the first.
	cpus := max(runtime.NumCPU(), 1)
	yaml := fmt.Sprintf(`name: why
jobs:
  first:
    runs-on: {cpu: %d}
    steps:
      - run: |
          while [ ! -f %q ]; do sleep 0.02; done
  second:
    runs-on: {cpu: %d}
    steps: [{run: "true"}]
  huge:
    runs-on: {cpu: %d}
    steps: [{run: "true"}]
`, cpus, gate, cpus, cpus*1000)
	r, err := e.c.Submit(ctx, "p.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	defer openGate(t, gate)
	jobs := map[string]wire.Job{}
	for {
		run, err := e.c.GetRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range run.Jobs {
			jobs[j.Key] = j
		}
		if jobs["first"].State == "running" && jobs["second"].Reason != "" && jobs["huge"].State.Final() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jobs never showed why they wait: %+v", jobs)
		case <-time.After(10 * time.Millisecond): // the server runs the job in its own goroutines
		}
	}
	second := jobs["second"]
	if second.State != "queued" || second.Reason != "workers_busy" || !strings.Contains(second.ReasonDetail, "1 worker(s) can run it, all busy") {
		t.Errorf("second: %s %q %q, want queued workers_busy", second.State, second.Reason, second.ReasonDetail)
	}
	huge := jobs["huge"]
	want := fmt.Sprintf("no worker can run it: asks %d cpu, the largest worker has %d", cpus*1000, cpus)
	if huge.State != "failed" || huge.Error != want || huge.Reason != "" {
		t.Errorf("huge: %s %q (reason %q), want failed %q", huge.State, huge.Error, huge.Reason, want)
	}
	if jobs["first"].Reason != "" {
		t.Errorf("a running job has a reason: %q", jobs["first"].Reason)
	}
}
