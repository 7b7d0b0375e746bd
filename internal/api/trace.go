package api

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/hodei-ci/hodei/internal/tracing"
)

// traceSubmit emits the submission of a run, from the request's arrival to
// the run's commit: a child of the run's span, linked to the caller's span
// when the request carries a W3C traceparent.
func traceSubmit(r *http.Request, runID string, began time.Time) {
	if !tracing.Enabled() {
		return
	}
	s := tracing.Span{Name: "submit", Run: runID, ID: tracing.SpanID("submit", runID), Parent: tracing.RunSpan(runID),
		Start: began, End: time.Now(), Kind: trace.SpanKindServer,
		Attrs: []attribute.KeyValue{attribute.String("hodei.run.id", runID), attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path)}}
	if caller := tracing.Extract(r.Header.Get); caller.IsValid() {
		s.Links = append(s.Links, caller)
	}
	tracing.Emit(s)
}
