package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
)

// publish sends s on its worker's status subject.
func (w *worker) publish(s bus.Status) {
	w.h.t.Helper()
	w.publishFrom(w.id, s)
}

func TestFinalStatusUsageIsStoredWithItsAttempt(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(oneJob)
	d := w.next()
	w.publish(bus.Status{JobID: d.JobID, Attempt: 1, State: bus.StatusRunning})
	w.publish(bus.Status{JobID: d.JobID, Attempt: 1, State: bus.StatusFailed, ExitCode: -1,
		Error: "step 1: out of memory", PeakMemory: 64 << 20, CPUTime: 250 * time.Millisecond})
	d2 := w.next()
	w.publish(bus.Status{JobID: d2.JobID, Attempt: 2, State: bus.StatusRunning})
	w.publish(bus.Status{JobID: d2.JobID, Attempt: 2, State: bus.StatusSucceeded, PeakMemory: 10 << 20, CPUTime: 3 * time.Second})
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobSucceeded }, "a succeeded")
	atts, err := h.st.ListAttempts(context.Background(), d.JobID)
	if err != nil || len(atts) != 2 {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	if atts[0].PeakMemory != 64<<20 || atts[0].CPUTime != 250*time.Millisecond ||
		atts[1].PeakMemory != 10<<20 || atts[1].CPUTime != 3*time.Second {
		t.Fatalf("usage not stored with its attempt: %+v", atts)
	}
}
