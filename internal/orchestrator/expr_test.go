package orchestrator

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
)

// TestReadyJobGetsItsNeedsInItsSpec: a job whose expressions read needs is
// dispatched, and stored, with them evaluated; a failure with
// continue-on-error neither fails the run nor counts as a failure for the
// jobs that need it.
func TestReadyJobGetsItsNeedsInItsSpec(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(`name: deferred
jobs:
  build:
    continue-on-error: true
    steps: [{run: make}]
  report:
    needs: build
    env:
      RESULT: ${{ needs.build.result }}
    steps:
      - run: echo "build ${{ needs.build.result }} in ${{ hodei.run_id }}"
  on-failure:
    needs: build
    if: failure()
    steps: [{run: echo failed}]
`)
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusFailed, 2)
	d2 := w.next()
	var spec pipeline.JobSpec
	if err := json.Unmarshal(d2.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Key != "report" || spec.Deferred || spec.Env["RESULT"] != "success" || spec.Steps[0].Run != `echo "build success in `+run.ID+`"` {
		t.Fatalf("dispatched spec = %+v", spec)
	}
	var stored pipeline.JobSpec
	if err := json.Unmarshal(h.job(run.ID, "report").Spec, &stored); err != nil || stored.Steps[0].Run != spec.Steps[0].Run {
		t.Errorf("stored spec = %+v, %v", stored, err)
	}
	w.status(w.id, d2.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State.Final()
	}, "run ended")
	r, _ := h.st.GetRun(context.Background(), run.ID)
	if r.State != state.RunSucceeded {
		t.Errorf("run %s (%s), want succeeded: build failed with continue-on-error", r.State, r.Error)
	}
	if s := h.job(run.ID, "build").State; s != state.JobFailed {
		t.Errorf("build %s, want failed", s)
	}
	if s := h.job(run.ID, "on-failure").State; s != state.JobSkipped {
		t.Errorf("on-failure %s, want skipped", s)
	}
}

// TestJobWhoseConditionCannotBeEvaluatedFails: an expression that fails
// when the job is ready (here a format that names an argument it does not
// have, known only then) fails the job, from pending, without an attempt,
// and the run.
func TestJobWhoseConditionCannotBeEvaluatedFails(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(`name: bad-format
jobs:
  a:
    outputs: [missing]
    steps: [{run: x}]
  b:
    needs: a
    if: format(needs.a.outputs.missing || '{9}', 'x') == 'x'
    steps: [{run: x}]
`)
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State.Final()
	}, "run ended")
	j := h.job(run.ID, "b")
	if j.State != state.JobFailed || j.Attempt != 0 || j.Error == "" {
		t.Errorf("b = %s attempt %d error %q, want failed without an attempt", j.State, j.Attempt, j.Error)
	}
	t.Logf("b's error: %s", j.Error)
	if r, _ := h.st.GetRun(context.Background(), run.ID); r.State != state.RunFailed {
		t.Errorf("run %s, want failed", r.State)
	}
}
