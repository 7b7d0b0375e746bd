package orchestrator

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/tracing"
)

// keepSpans is an in-memory exporter whose spans outlive the provider's
// shutdown (the SDK's clears them).
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }

func hasAttr(s tracetest.SpanStub, key, value string) bool {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key && kv.Value.AsString() == value {
			return true
		}
	}
	return false
}

// TestRunTraceTree: with traces on, an assignment carries its attempt's
// span as traceparent in the NATS header, and a run's end leaves the spans
// the orchestrator owns under the run's root: the job, its queue wait,
// scheduling pass and attempt, and the dispatch under the attempt.
func TestRunTraceTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := tracing.StartWith(context.Background(), keepSpans{exp}, "test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(oneJob)
	d := w.next()
	want := "00-" + tracing.RunTrace(run.ID).String() + "-" + tracing.AttemptSpan(d.JobID, 1).String() + "-01"
	if d.TraceParent != want {
		t.Errorf("assignment's traceparent %q, want %q", d.TraceParent, want)
	}
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	d2 := w.next() // b, which needs a
	w.status(w.id, d2.JobID, 1, bus.StatusRunning, 0)
	w.status(w.id, d2.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "b")() == state.JobSucceeded }, "b succeeded")
	h.settle()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	parents := map[string]trace.SpanID{}
	ids := map[string]trace.SpanID{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != tracing.RunTrace(run.ID) {
			t.Errorf("span %q in trace %s, want the run's", s.Name, s.SpanContext.TraceID())
		}
		if hasAttr(s, "hodei.job.key", "b") {
			continue // job a's spans are checked; b's are alike
		}
		parents[s.Name], ids[s.Name] = s.Parent.SpanID(), s.SpanContext.SpanID()
	}
	for name, parent := range map[string]string{
		"run one": "", "job a": "run one", "queue": "job a", "schedule": "job a", "attempt 1": "job a", "dispatch": "attempt 1",
	} {
		id, ok := ids[name]
		if !ok {
			t.Errorf("no span %q; have %v", name, ids)
			continue
		}
		if parents[name] != ids[parent] {
			t.Errorf("span %q (%s) has parent %s, want %q (%s)", name, id, parents[name], parent, ids[parent])
		}
	}
}
