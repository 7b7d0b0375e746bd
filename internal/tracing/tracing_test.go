package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestSpansJoinByDerivedIDs: spans emitted apart (as by a server and an
// agent) form one tree: a root with the run's trace ID, children under the
// IDs their parents were derived with.
func TestSpansJoinByDerivedIDs(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := StartWith(context.Background(), keep{exp}, "test")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Children first: the order of emission does not matter.
	Emit(Span{Name: "step", Run: "r1", ID: StepSpan("r1.a", 1, 0), Parent: AttemptSpan("r1.a", 1), Start: t0.Add(time.Second), End: t0.Add(2 * time.Second)})
	Emit(Span{Name: "attempt", Run: "r1", ID: AttemptSpan("r1.a", 1), Parent: JobSpan("r1.a"), Start: t0, End: t0.Add(3 * time.Second), Err: "exit 1"})
	Emit(Span{Name: "run", Run: "r1", ID: RunSpan("r1"), Start: t0, End: t0.Add(time.Minute)})
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Error("Enabled after shutdown")
	}
	got := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		got[s.Name] = s
	}
	if len(got) != 3 {
		t.Fatalf("%d spans exported, want 3: %v", len(got), got)
	}
	for name, want := range map[string]struct{ id, parent trace.SpanID }{
		"run":     {RunSpan("r1"), trace.SpanID{}},
		"attempt": {AttemptSpan("r1.a", 1), JobSpan("r1.a")},
		"step":    {StepSpan("r1.a", 1, 0), AttemptSpan("r1.a", 1)},
	} {
		s := got[name]
		if s.SpanContext.TraceID() != RunTrace("r1") {
			t.Errorf("%s: trace %s, want the run's %s", name, s.SpanContext.TraceID(), RunTrace("r1"))
		}
		if s.SpanContext.SpanID() != want.id || s.Parent.SpanID() != want.parent {
			t.Errorf("%s: span %s parent %s, want %s parent %s", name, s.SpanContext.SpanID(), s.Parent.SpanID(), want.id, want.parent)
		}
	}
	if s := got["step"]; !s.StartTime.Equal(t0.Add(time.Second)) || !s.EndTime.Equal(t0.Add(2*time.Second)) {
		t.Errorf("step: %s to %s, want the times given", s.StartTime, s.EndTime)
	}
	if got["attempt"].Status.Description != "exit 1" {
		t.Errorf("attempt status %+v, want an error \"exit 1\"", got["attempt"].Status)
	}
	if RunTrace("r1") == RunTrace("r2") || JobSpan("r1.a") == JobSpan("r1.b") {
		t.Error("derived IDs collide")
	}
}

// keep is an in-memory exporter whose spans outlive the provider's
// shutdown (the SDK's clears them).
type keep struct{ *tracetest.InMemoryExporter }

func (keep) Shutdown(context.Context) error { return nil }

// TestEmitWithoutExportDoesNothing: with no exporter, Emit is a no-op.
func TestEmitWithoutExportDoesNothing(t *testing.T) {
	if Enabled() {
		t.Fatal("enabled with no setup")
	}
	Emit(Span{Name: "x", Run: "r"}) // must not panic
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := Setup(context.Background(), "x")
	if err != nil || Enabled() {
		t.Fatalf("Setup without endpoint: %v, enabled %v", err, Enabled())
	}
	_ = shutdown(context.Background())
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := Setup(context.Background(), "x"); err == nil {
		t.Error("Setup with an unknown protocol: no error")
	}
}

// TestTraceParentRoundTrip: what Inject writes, Extract reads.
func TestTraceParentRoundTrip(t *testing.T) {
	h := map[string]string{}
	Inject("r1", AttemptSpan("r1.a", 2), func(k, v string) { h[k] = v })
	want := "00-" + RunTrace("r1").String() + "-" + AttemptSpan("r1.a", 2).String() + "-01"
	if h["traceparent"] != want {
		t.Fatalf("traceparent %q, want %q", h["traceparent"], want)
	}
	sc := Extract(func(k string) string { return h[k] })
	if sc.TraceID() != RunTrace("r1") || sc.SpanID() != AttemptSpan("r1.a", 2) {
		t.Errorf("Extract: %s/%s", sc.TraceID(), sc.SpanID())
	}
	if Extract(func(string) string { return "" }).IsValid() {
		t.Error("Extract of nothing is valid")
	}
}
