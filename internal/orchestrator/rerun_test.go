package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

const chain = `name: chain
concurrency: {group: chain, limit: 1}
jobs:
  a: {steps: [{run: "true"}]}
  b: {needs: [a], steps: [{run: "true"}]}
  c: {needs: [b], steps: [{run: "true"}]}
`

// TestRerunCarriesJobsThroughTheLineAndARestart: a re-run's carried job is
// stored succeeded with its record and never dispatched; the job that
// needs it is queued when the run leaves its concurrency group's line, and
// the rest follows across a restart of the orchestrator.
func TestRerunCarriesJobsThroughTheLineAndARestart(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	r1 := h.submit(chain)

	p, err := pipeline.Parse("t.yaml", []byte(chain))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := pipeline.Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	carried := store.CarriedJob{JobKey: "a", FromRun: "old", FromJob: "old-1", FromAttempt: 2}
	r2, err := h.o.Submit(ctx, SubmitRequest{Pipeline: p, Jobs: specs, Source: []byte(chain),
		Rerun: &store.Rerun{Of: "old", FailedOnly: true, Carried: []store.CarriedJob{carried}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := h.jobState(r2.ID, "a")(); s != state.JobSucceeded {
		t.Fatalf("carried job a is %s, want succeeded", s)
	}
	if s := h.jobState(r2.ID, "b")(); s != state.JobPending {
		t.Fatalf("b of the waiting re-run is %s, want pending", s)
	}
	rr, err := h.st.GetRerun(ctx, r2.ID)
	carried.JobID = h.job(r2.ID, "a").ID
	if err != nil || rr.Of != "old" || !rr.FailedOnly || len(rr.Carried) != 1 || rr.Carried[0] != carried {
		t.Fatalf("GetRerun = %+v, %v; want carried %+v", rr, err, carried)
	}

	// The first run goes through; the re-run then leaves the line with b.
	for _, key := range []string{"a", "b", "c"} {
		d := w.next()
		if want := h.job(r1.ID, key).ID; d.JobID != want {
			t.Fatalf("dispatch of %s, want %s (job %s of the first run)", d.JobID, want, key)
		}
		w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	}
	d := w.next()
	if want := h.job(r2.ID, "b").ID; d.JobID != want {
		t.Fatalf("after the first run, dispatch of %s, want %s (b of the re-run: a is carried)", d.JobID, want)
	}

	// A new orchestrator takes over while b runs.
	h.restart(Config{})
	w.heartbeat(bus.JobRef{JobID: d.JobID, Attempt: 1})
	h.settle()
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	d = w.next()
	if want := h.job(r2.ID, "c").ID; d.JobID != want {
		t.Fatalf("after b, dispatch of %s, want %s", d.JobID, want)
	}
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), r2.ID)
		return r.State == state.RunSucceeded
	}, "the re-run succeeded")
	if a := h.job(r2.ID, "a"); a.Attempt != 0 || a.WorkerID != "" {
		t.Errorf("carried job a ran: attempt %d on %q", a.Attempt, a.WorkerID)
	}
}
