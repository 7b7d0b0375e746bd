package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

const gated = `name: release
jobs:
  build:
    steps: [{run: "true"}]
  deploy:
    needs: build
    environment: {name: production, approvers: [release], timeout: 24h}
    steps: [{run: "true"}]
  announce:
    needs: deploy
    steps: [{run: "true"}]
`

func (h *harness) decide(runID, key string, d Decision) (store.Job, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.o.Decide(ctx, runID, h.job(runID, key).ID, d)
}

// gatedRun submits gated and runs build: deploy then waits for an approval.
func (h *harness) gatedRun(w *worker) store.Run {
	h.t.Helper()
	run := h.submit(gated)
	d := w.next()
	if d.JobID != h.job(run.ID, "build").ID {
		h.t.Fatalf("first dispatch %+v, want build", d)
	}
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "deploy")() == state.JobWaitingApproval }, "deploy waiting for its approval")
	return run
}

// noDispatch checks that nothing was sent to w since its last message.
func (w *worker) noDispatch() {
	w.h.t.Helper()
	w.h.ping() // a scheduling pass after every change made so far
	info, err := w.cons.Info(context.Background())
	if err != nil {
		w.h.t.Fatal(err)
	}
	if info.NumPending != 0 {
		w.h.t.Fatalf("worker %s has %d dispatch messages waiting, want none", w.id, info.NumPending)
	}
}

func TestApprovalGateApproved(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	before := time.Now()
	run := h.gatedRun(w)
	j := h.job(run.ID, "deploy")
	if j.ApprovalDeadline.Before(before.Add(24*time.Hour)) || j.ApprovalDeadline.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("deadline %v, want 24h after it began waiting", j.ApprovalDeadline)
	}
	w.noDispatch() // a waiting job is not queued

	got, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "alice (user:alice)", Comment: "go"})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != state.JobQueued && got.State != state.JobAssigned {
		t.Errorf("after the approval the job is %s", got.State)
	}
	d := w.next()
	if d.JobID != j.ID {
		t.Fatalf("dispatch %+v, want deploy", d)
	}
	j = h.job(run.ID, "deploy")
	if j.Decision != store.DecisionApproved || j.DecidedBy != "alice (user:alice)" || j.DecisionComment != "go" || j.DecidedAt.IsZero() {
		t.Errorf("decision = %q by %q (%q) at %v", j.Decision, j.DecidedBy, j.DecisionComment, j.DecidedAt)
	}
	if _, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "bob"}); !errors.Is(err, ErrNotWaiting) {
		t.Errorf("second decision: %v, want ErrNotWaiting", err)
	}
	if _, err := h.decide(run.ID, "build", Decision{Approve: true, By: "bob"}); !errors.Is(err, ErrNotWaiting) {
		t.Errorf("decision on a job without an environment: %v, want ErrNotWaiting", err)
	}
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	d = w.next()
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State == state.RunSucceeded
	}, "run succeeded")
}

func TestApprovalGateRejected(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.gatedRun(w)
	if _, err := h.decide(run.ID, "deploy", Decision{By: "carol (user:carol)", Comment: "not on a Friday"}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State == state.RunFailed
	}, "run failed")
	j := h.job(run.ID, "deploy")
	if j.State != state.JobFailed || j.Decision != store.DecisionRejected || j.Error != "rejected by carol (user:carol): not on a Friday" || j.Attempt != 0 {
		t.Errorf("deploy %s decision %q error %q attempts %d", j.State, j.Decision, j.Error, j.Attempt)
	}
	if s := h.jobState(run.ID, "announce")(); s != state.JobSkipped {
		t.Errorf("the dependent of a rejected job is %s, want skipped", s)
	}
	if _, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "bob"}); !errors.Is(err, ErrRunFinal) {
		t.Errorf("decision after the run ended: %v, want ErrRunFinal", err)
	}
	w.noDispatch()
}

func TestApprovalTimesOut(t *testing.T) {
	h := newHarness(t, Config{Tick: 20 * time.Millisecond})
	w := h.worker("w1")
	run := h.submit(strings.Replace(gated, "timeout: 24h", "timeout: 1s", 1))
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	// The deadline is a second after the job began waiting; the loop's
	// tick ends the wait then (the harness waits up to 10 s).
	h.waitFor(func() bool { return h.jobState(run.ID, "deploy")() == state.JobFailed }, "deploy timed out")
	j := h.job(run.ID, "deploy")
	if j.Decision != store.DecisionTimedOut || j.Error != "no approval within 1s" || j.DecidedAt.Before(j.ApprovalDeadline) {
		t.Errorf("decision %q error %q decided at %v, deadline %v", j.Decision, j.Error, j.DecidedAt, j.ApprovalDeadline)
	}
	if s := h.jobState(run.ID, "announce")(); s != state.JobSkipped {
		t.Errorf("dependent %s, want skipped", s)
	}
	w.noDispatch()
}

// TestApprovalSurvivesRestart: a job waiting for its approval when the
// server restarts waits on, with the deadline it had, and the new
// orchestrator takes the decision.
func TestApprovalSurvivesRestart(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.gatedRun(w)
	before := h.job(run.ID, "deploy")
	h.restart(Config{})
	w.heartbeat()
	h.settle()
	after := h.job(run.ID, "deploy")
	if after.State != state.JobWaitingApproval || !after.ApprovalDeadline.Equal(before.ApprovalDeadline) {
		t.Fatalf("after the restart deploy is %s with deadline %v, want waiting with %v", after.State, after.ApprovalDeadline, before.ApprovalDeadline)
	}
	w.noDispatch()
	if _, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	if d := w.next(); d.JobID != before.ID {
		t.Fatalf("dispatch %+v, want deploy", d)
	}
}

// TestApprovalTimeoutSurvivesRestart: the deadline is read back from the
// store, so a wait that passes it while a new orchestrator runs ends.
func TestApprovalTimeoutSurvivesRestart(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.gatedRun(w)
	// The deadline moved to the past in the store, as if the server had
	// been down past it; the new orchestrator must end the wait.
	j := h.job(run.ID, "deploy")
	h.o.Stop()
	j.ApprovalDeadline = time.Now().Add(-time.Minute)
	if err := h.st.Update(context.Background(), func(tx store.Tx) error { return tx.UpdateJob(j) }); err != nil {
		t.Fatal(err)
	}
	h.restart(Config{Tick: 20 * time.Millisecond})
	h.waitFor(func() bool { return h.jobState(run.ID, "deploy")() == state.JobFailed }, "deploy timed out after the restart")
	if got := h.job(run.ID, "deploy"); got.Decision != store.DecisionTimedOut {
		t.Errorf("decision %q, want %q", got.Decision, store.DecisionTimedOut)
	}
}

func TestCancelEndsTheWaitForAnApproval(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.gatedRun(w)
	if err := h.o.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	if s := h.jobState(run.ID, "deploy")(); s != state.JobCanceled {
		t.Errorf("deploy %s after the cancel, want canceled", s)
	}
	if r, _ := h.st.GetRun(context.Background(), run.ID); r.State != state.RunCanceled {
		t.Errorf("run %s", r.State)
	}
	if _, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "alice"}); !errors.Is(err, ErrRunFinal) {
		t.Errorf("approval after the cancel: %v, want ErrRunFinal", err)
	}
}

// TestRootJobWaitsForApproval: a job without needs waits from the
// submission on.
func TestRootJobWaitsForApproval(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit("name: p\njobs:\n  deploy:\n    environment: production\n    steps: [{run: \"true\"}]\n")
	if j := h.job(run.ID, "deploy"); j.State != state.JobWaitingApproval || j.ApprovalDeadline.IsZero() {
		t.Fatalf("deploy %s deadline %v", j.State, j.ApprovalDeadline)
	}
	w.noDispatch()
	if _, err := h.decide(run.ID, "deploy", Decision{Approve: true, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	w.next()
}
