package orchestrator

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
)

const outputsPipeline = `name: outputs
jobs:
  a:
    outputs: [version, notes]
    steps: [{run: x}]
  b:
    needs: a
    env:
      V: v${{ needs.a.outputs.version }}
    steps: [{run: x}]
`

// TestOutputsReachTheJobsThatNeedThem: the outputs a worker reports with
// a success are kept with the job (every declared name) and reach the
// spec of the job that needs it, in its env through the expression and as
// HODEI_NEEDS_A_OUTPUTS_*.
func TestOutputsReachTheJobsThatNeedThem(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(outputsPipeline)
	d := w.next()
	w.statusWith(w.id, d.JobID, 1, bus.StatusSucceeded, 0, map[string]string{"version": "1.2"})
	next := w.next()
	var spec pipeline.JobSpec
	if err := json.Unmarshal(next.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Key != "b" || spec.Env["V"] != "v1.2" || spec.NeedsOutputs["HODEI_NEEDS_A_OUTPUTS_VERSION"] != "1.2" || spec.NeedsOutputs["HODEI_NEEDS_A_OUTPUTS_NOTES"] != "" {
		t.Errorf("b's spec: key %s, env %q, needs' outputs %q", spec.Key, spec.Env, spec.NeedsOutputs)
	}
	if _, ok := spec.NeedsOutputs["HODEI_NEEDS_A_OUTPUTS_NOTES"]; !ok {
		t.Error("a declared output never written has no variable")
	}
	if got := h.job(run.ID, "a").Outputs; !maps.Equal(got, map[string]string{"version": "1.2", "notes": ""}) {
		t.Errorf("a's stored outputs = %q", got)
	}
}

// TestUndeclaredOutputsFailTheJob: the server checks what a worker
// reports, as the agent does: an output the job does not declare fails
// the attempt (and the job, without retries), and its dependents are
// skipped.
func TestUndeclaredOutputsFailTheJob(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(outputsPipeline)
	d := w.next()
	w.statusWith(w.id, d.JobID, 1, bus.StatusSucceeded, 0, map[string]string{"version": "1.2", "token": "x"})
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State.Final()
	}, "run ended")
	a := h.job(run.ID, "a")
	if a.State != state.JobFailed || !strings.Contains(a.Error, "token written to $HODEI_OUTPUT but not declared") || a.Outputs != nil {
		t.Errorf("a = %s %q outputs %v, want failed for the undeclared output", a.State, a.Error, a.Outputs)
	}
	if b := h.job(run.ID, "b"); b.State != state.JobSkipped {
		t.Errorf("b = %s, want skipped", b.State)
	}
}
