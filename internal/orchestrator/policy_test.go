package orchestrator

import (
	"fmt"
	"testing"

	"github.com/hodei-ci/hodei/internal/bus"
)

// The live server schedules with the same engine as the simulator: these
// tests check its policy end to end through the orchestrator, one worker
// that fits one job at a time, and a scripted agent.

// submitAs submits yaml for tenant and returns the run's ID.
func (h *harness) submitAs(tenant, yaml string) string {
	h.t.Helper()
	return h.submitFor(tenant, yaml).ID
}

func bigJob(name string, priority int) string {
	return fmt.Sprintf(`name: %s
priority: %d
jobs:
  work:
    runs-on: {cpu: 4}
    steps: [{run: "true"}]
`, name, priority)
}

func TestHighPriorityOvertakesQueue(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1") // 4 cpus: one big job at a time
	var low []string
	for i := 0; i < 6; i++ {
		low = append(low, h.submitAs("t", bigJob("low", 0)))
	}
	first := w.next()
	if first.RunID != low[0] {
		t.Fatalf("first dispatch %s, want the first low-priority run", first.RunID)
	}
	urgent := h.submitAs("t", bigJob("urgent", 50))
	w.status(w.id, first.JobID, 1, bus.StatusRunning, 0)
	w.status(w.id, first.JobID, 1, bus.StatusSucceeded, 0)
	next := w.next()
	if next.RunID != urgent {
		t.Fatalf("after the running job, run %s was dispatched; want the high-priority run %s ahead of %d queued", next.RunID, urgent, len(low)-1)
	}
}

func TestFairShareBetweenTenants(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.workerWith("w1", 8000) // two big jobs at a time
	// Tenant A floods the queue, then tenant B submits two runs.
	for i := 0; i < 8; i++ {
		h.submitAs("a", bigJob("flood", 0))
	}
	var b []string
	for i := 0; i < 2; i++ {
		b = append(b, h.submitAs("b", bigJob("small-team", 0)))
	}
	isB := map[string]bool{b[0]: true, b[1]: true}
	var order []bool
	running := []bus.Dispatch{w.next(), w.next()} // A's first two
	for i := 0; i < 4; i++ {
		done := running[0]
		running = running[1:]
		w.status(w.id, done.JobID, 1, bus.StatusRunning, 0)
		w.status(w.id, done.JobID, 1, bus.StatusSucceeded, 0)
		d := w.next()
		order = append(order, isB[d.RunID])
		running = append(running, d)
	}
	// Under FIFO, B would wait for all 8 of A's runs. With fair share, as
	// soon as A holds more than B, B's runs go next: both are among the
	// next four dispatched.
	nB := 0
	for _, x := range order {
		if x {
			nB++
		}
	}
	if nB != 2 {
		t.Fatalf("tenant B got %d of the next 4 dispatches (order %v), want both of its runs", nB, order)
	}
}

func TestFIFOPolicyKeepsSubmissionOrder(t *testing.T) {
	h := newHarness(t, Config{Policy: "fifo"})
	w := h.worker("w1")
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, h.submitAs("a", bigJob("x", 0)))
	}
	h.submitAs("b", bigJob("y", 90))
	for i := 0; i < 3; i++ {
		d := w.next()
		if d.RunID != ids[i] {
			t.Fatalf("dispatch %d is %s, want %s (fifo ignores tenants and priority)", i, d.RunID, ids[i])
		}
		w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	}
}
