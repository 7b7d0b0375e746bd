// Package tracing exports OpenTelemetry traces of runs: one trace per run,
// with a span for the run, its submission, each job, each job's queue wait,
// the scheduling pass that placed it, its dispatch to a worker, each
// attempt and each step.
//
// Spans are emitted when what they measure has ended, with the times the
// store records, and their IDs are derived from the run, job, attempt and
// step they stand for: the trace ID from the run ID, each span ID from its
// names. So a span emitted by the server and one emitted by an agent in
// another process, or by a server restarted in between, still join the
// same tree, without any span kept open across processes or restarts. The
// context also travels in the `traceparent` header of each assignment on
// NATS (W3C trace context) and is read from the `traceparent` of the HTTP
// request that submits a run (a link from the run to the caller's trace).
//
// Export is set by the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT turns it on, OTEL_EXPORTER_OTLP_PROTOCOL
// (or _TRACES_PROTOCOL) chooses `grpc` or `http/protobuf` (the default),
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and the
// exporter's own OTEL_EXPORTER_OTLP_* (headers, timeout, TLS) apply as the
// OpenTelemetry SDK defines them; OTEL_TRACES_EXPORTER=none turns it off.
// With none of them set, nothing is recorded and Emit costs a check.
package tracing

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracer is the tracer spans are emitted with; nil while export is off.
var tracer atomic.Pointer[trace.Tracer]

// Enabled reports whether spans are exported.
func Enabled() bool { return tracer.Load() != nil }

// Configured reports whether the environment asks for export.
func Configured() bool {
	if strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup starts exporting spans if the environment asks for it (see the
// package doc), with service as the service name unless OTEL_SERVICE_NAME
// says otherwise. The returned function flushes and stops the export; it
// does nothing when export is off.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if !Configured() {
		return noop, nil
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "":
		protocol = "http/protobuf"
	case "http/protobuf", "grpc":
	default:
		return noop, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", protocol)
	}
	exp, err := newOTLPExporter(protocol)
	if err != nil {
		return noop, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	return StartWith(ctx, exp, service)
}

// StartWith starts exporting spans to exp (an exporter of the SDK: an
// in-memory one in tests), with service as the service name unless
// OTEL_SERVICE_NAME says otherwise; Setup calls it with the OTLP exporter.
func StartWith(ctx context.Context, exp sdktrace.SpanExporter, service string) (shutdown func(context.Context) error, err error) {
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// Environment wins over the default service name.
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(derivedIDs{}),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t := tp.Tracer("github.com/hodei-ci/hodei")
	tracer.Store(&t)
	return func(ctx context.Context) error {
		tracer.Store(nil)
		return tp.Shutdown(ctx)
	}, nil
}

// RunTrace is the trace ID of a run: derived from its ID.
func RunTrace(runID string) trace.TraceID {
	var id trace.TraceID
	h := sha256.Sum256([]byte("hodei/run/" + runID))
	copy(id[:], h[:])
	return id
}

// SpanID derives a span ID from the names of what it stands for.
func SpanID(parts ...string) trace.SpanID {
	var id trace.SpanID
	h := sha256.Sum256([]byte("hodei/span/" + strings.Join(parts, "\x00")))
	copy(id[:], h[:])
	return id
}

// RunSpan, JobSpan, AttemptSpan and StepSpan are the IDs of the spans of a
// run, a job, an attempt of a job and a step of an attempt.
func RunSpan(runID string) trace.SpanID { return SpanID("run", runID) }

func JobSpan(jobID string) trace.SpanID { return SpanID("job", jobID) }

func AttemptSpan(jobID string, n int) trace.SpanID {
	return SpanID("attempt", jobID, strconv.Itoa(n))
}

func StepSpan(jobID string, attempt, step int) trace.SpanID {
	return SpanID("step", jobID, strconv.Itoa(attempt), strconv.Itoa(step))
}

// Context is the span context of span in the trace of run, as a parent.
func Context(runID string, span trace.SpanID) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: RunTrace(runID), SpanID: span, TraceFlags: trace.FlagsSampled, Remote: true,
	})
}

// Span is a span to emit once what it measures has ended.
type Span struct {
	Name string
	// Run is the run whose trace the span is in.
	Run string
	// ID is the span's ID; Parent its parent's, zero for the run's root.
	ID, Parent trace.SpanID
	Start, End time.Time
	Attrs      []attribute.KeyValue
	// Err marks the span as failed, with this description.
	Err string
	// Links are spans of other traces (the caller's who submitted a run).
	Links []trace.SpanContext
	Kind  trace.SpanKind
}

// wantedIDs carries the IDs a span is to get, for derivedIDs.
type wantedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

type wantedKey struct{}

// derivedIDs is the SDK's ID generator: it gives a span the IDs Emit
// derived, and random ones to any other span.
type derivedIDs struct{}

func (derivedIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if w, ok := ctx.Value(wantedKey{}).(wantedIDs); ok {
		return w.trace, w.span
	}
	return randomIDs(ctx)
}

func (derivedIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if w, ok := ctx.Value(wantedKey{}).(wantedIDs); ok {
		return w.span
	}
	_, s := randomIDs(ctx)
	return s
}

// randomIDs derives IDs from a time and a counter: unique in a process,
// for spans that are not Hodei's own (none are made today).
var idSeq atomic.Uint64

func randomIDs(context.Context) (trace.TraceID, trace.SpanID) {
	n := idSeq.Add(1)
	h := sha256.Sum256(fmt.Appendf(nil, "%d/%d/%d", os.Getpid(), time.Now().UnixNano(), n))
	var t trace.TraceID
	var s trace.SpanID
	copy(t[:], h[:16])
	copy(s[:], h[16:24])
	return t, s
}

// Emit records s if export is on.
func Emit(s Span) {
	tp := tracer.Load()
	if tp == nil {
		return
	}
	ctx := context.WithValue(context.Background(), wantedKey{}, wantedIDs{trace: RunTrace(s.Run), span: s.ID})
	if s.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, Context(s.Run, s.Parent))
	}
	end := s.End
	if end.Before(s.Start) {
		end = s.Start
	}
	opts := []trace.SpanStartOption{trace.WithTimestamp(s.Start), trace.WithAttributes(s.Attrs...), trace.WithSpanKind(s.Kind)}
	for _, l := range s.Links {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: l}))
	}
	_, span := (*tp).Start(ctx, s.Name, opts...)
	if s.Err != "" {
		span.SetStatus(codes.Error, s.Err)
	}
	span.End(trace.WithTimestamp(end))
}

// Inject writes the W3C traceparent of span (in run's trace) into set, for
// a message header.
func Inject(runID string, span trace.SpanID, set func(key, value string)) {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithRemoteSpanContext(context.Background(), Context(runID, span)), carrier)
	for k, v := range carrier {
		set(k, v)
	}
}

// Extract reads a W3C traceparent (from a message header or an HTTP
// request); it returns an invalid span context if there is none.
func Extract(get func(key string) string) trace.SpanContext {
	carrier := propagation.MapCarrier{}
	for _, k := range (propagation.TraceContext{}).Fields() {
		if v := get(k); v != "" {
			carrier[k] = v
		}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}
