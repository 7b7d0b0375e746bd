package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-ci/hodei/internal/backoff"
)

// otlpExporter sends spans to an OTLP receiver, over HTTP (protobuf bodies
// on /v1/traces) or gRPC (the TraceService's Export, unary, over HTTP/2).
// It is written on net/http and the OTLP protobuf messages rather than on
// the SDK's exporters: those link the gRPC library, whose debug pages
// (x/net/trace, html/template) make the linker keep every exported method
// of the binary: 26 MB of code and 30 MB of memory for every `hodei`
// process, traces on or off.
type otlpExporter struct {
	url      string
	grpc     bool
	gzip     bool
	headers  map[string]string
	timeout  time.Duration
	hc       *http.Client
	attempts int
}

// The gRPC method of OTLP trace export.
const grpcExportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// newOTLPExporter configures an exporter from the OTEL_EXPORTER_OTLP_*
// variables, as the OpenTelemetry specification defines them.
func newOTLPExporter(protocol string) (*otlpExporter, error) {
	env := func(name string) string {
		if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v
		}
		return os.Getenv("OTEL_EXPORTER_OTLP_" + name)
	}
	e := &otlpExporter{grpc: protocol == "grpc", timeout: 10 * time.Second, attempts: 5, headers: map[string]string{}}
	if v := env("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT %q: want milliseconds", v)
		}
		e.timeout = time.Duration(ms) * time.Millisecond
	}
	switch c := env("COMPRESSION"); c {
	case "", "none":
	case "gzip":
		e.gzip = !e.grpc // gRPC bodies are sent uncompressed
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_COMPRESSION %q: want gzip or none", c)
	}
	if h := env("HEADERS"); h != "" {
		for _, kv := range strings.Split(h, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %q is not key=value", kv)
			}
			if uv, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
				v = uv
			}
			e.headers[strings.TrimSpace(k)] = v
		}
	}

	// The endpoint: the signal's own is a full URL (HTTP) or address
	// (gRPC); the general one is a base to which HTTP adds /v1/traces.
	endpoint, full := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), true
	if endpoint == "" {
		endpoint, full = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), false
	}
	insecure := strings.EqualFold(env("INSECURE"), "true")
	if !strings.Contains(endpoint, "://") {
		scheme := "https://"
		if insecure {
			scheme = "http://"
		}
		endpoint = scheme + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("OTLP endpoint %q: want http(s)://host:port", endpoint)
	}
	switch {
	case e.grpc:
		u.Path = grpcExportPath
	case !full:
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	e.url = u.String()

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if e.grpc {
		// gRPC is HTTP/2 only: over TLS by ALPN, in clear with prior
		// knowledge (h2c), as gRPC servers take it.
		var p http.Protocols
		if u.Scheme == "http" {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP2(true)
		}
		tr.Protocols = &p
	}
	e.hc = &http.Client{Transport: tr}
	return e, nil
}

// ExportSpans implements sdktrace.SpanExporter: one request, sent again on
// the answers the specification calls retryable.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	body, err := encodeRequest(spans)
	if err != nil {
		return err
	}
	for n := 0; ; n++ {
		retry, err := e.send(ctx, body)
		if err == nil || !retry || n+1 >= e.attempts {
			return err
		}
		if werr := (backoff.Backoff{Base: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}).Wait(ctx, n+1); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// send makes one request; retry says whether another may succeed.
func (e *otlpExporter) send(ctx context.Context, msg []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	body, ctype := msg, "application/x-protobuf"
	if e.grpc {
		framed := make([]byte, 5, 5+len(msg)) // not compressed, then the length
		binary.BigEndian.PutUint32(framed[1:], uint32(len(msg)))
		body, ctype = append(framed, msg...), "application/grpc"
	} else if e.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(msg)
		_ = zw.Close()
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, "POST", e.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", ctype)
	if e.grpc {
		req.Header.Set("TE", "trailers")
	} else if e.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return true, fmt.Errorf("otlp export: %w", err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if e.grpc {
		// The status is in the trailers, or in the headers of a
		// trailers-only answer.
		status := resp.Trailer.Get("Grpc-Status")
		if status == "" {
			status = resp.Header.Get("Grpc-Status")
		}
		if resp.StatusCode == http.StatusOK && status == "0" {
			return false, nil
		}
		msg := resp.Trailer.Get("Grpc-Message")
		if msg == "" {
			msg = resp.Header.Get("Grpc-Message")
		}
		// UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED...
		retryable := map[string]bool{"1": true, "4": true, "8": true, "10": true, "11": true, "14": true, "15": true}
		return retryable[status], fmt.Errorf("otlp export: HTTP %d, grpc-status %q: %s", resp.StatusCode, status, msg)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		retry = true
	}
	return retry, fmt.Errorf("otlp export: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(reply))
}

// Shutdown implements sdktrace.SpanExporter.
func (e *otlpExporter) Shutdown(context.Context) error {
	e.hc.CloseIdleConnections()
	return nil
}

// encodeRequest encodes an ExportTraceServiceRequest: its one field (1) is
// the repeated ResourceSpans, one here per resource and scope.
func encodeRequest(spans []sdktrace.ReadOnlySpan) ([]byte, error) {
	type group struct {
		res   *resourcepb.Resource
		scope *tracepb.ScopeSpans
	}
	var groups []*group
	index := map[string]*group{}
	for _, s := range spans {
		key := s.Resource().String() + "\x00" + s.InstrumentationScope().Name
		g := index[key]
		if g == nil {
			g = &group{res: &resourcepb.Resource{Attributes: keyValues(s.Resource().Attributes())},
				scope: &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: s.InstrumentationScope().Name, Version: s.InstrumentationScope().Version}}}
			index[key] = g
			groups = append(groups, g)
		}
		g.scope.Spans = append(g.scope.Spans, spanProto(s))
	}
	var out []byte
	for _, g := range groups {
		b, err := proto.Marshal(&tracepb.ResourceSpans{Resource: g.res, ScopeSpans: []*tracepb.ScopeSpans{g.scope}})
		if err != nil {
			return nil, fmt.Errorf("otlp: encode spans: %w", err)
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}

func spanProto(s sdktrace.ReadOnlySpan) *tracepb.Span {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	p := &tracepb.Span{
		TraceId: tid[:], SpanId: sid[:], Name: s.Name(),
		Kind:              tracepb.Span_SpanKind(s.SpanKind()), // the same numbering
		StartTimeUnixNano: uint64(s.StartTime().UnixNano()), EndTimeUnixNano: uint64(s.EndTime().UnixNano()),
		Attributes: keyValues(s.Attributes()),
		Flags:      uint32(sc.TraceFlags()),
	}
	if s.Parent().IsValid() {
		psid := s.Parent().SpanID()
		p.ParentSpanId = psid[:]
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		p.Links = append(p.Links, &tracepb.Span_Link{TraceId: ltid[:], SpanId: lsid[:], Attributes: keyValues(l.Attributes)})
	}
	switch st := s.Status(); st.Code {
	case codes.Error:
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: st.Description}
	case codes.Ok:
		p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
	}
	return p
}

func keyValues(kvs []attribute.KeyValue) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		v := &commonpb.AnyValue{}
		switch kv.Value.Type() {
		case attribute.BOOL:
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: kv.Value.AsBool()}
		case attribute.INT64:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: kv.Value.AsInt64()}
		case attribute.FLOAT64:
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: kv.Value.AsFloat64()}
		default:
			v.Value = &commonpb.AnyValue_StringValue{StringValue: kv.Value.Emit()}
		}
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: v})
	}
	return out
}
