//go:build jaeger

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test of this file exports to a real Jaeger v2, built from the Go
// module proxy by scripts/build-jaeger (tools/jaeger); scripts/test sets
// HODEI_JAEGER to the binary. It fails, not skips, without it.
const jaegerEnv = "HODEI_JAEGER"

// jaegerServer is a Jaeger v2 for one test: OTLP receivers (gRPC and HTTP),
// in-memory storage and the query API, each on its own loopback port.
type jaegerServer struct {
	otlpGRPC, otlpHTTP string // host:port
	query              string // http://host:port
	hc                 *http.Client
}

func startJaeger(t *testing.T) *jaegerServer {
	t.Helper()
	bin := os.Getenv(jaegerEnv)
	if bin == "" {
		t.Fatalf("$%s must name a jaeger binary: scripts/build-jaeger builds one (scripts/test does, and sets it)", jaegerEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("$%s: %v (scripts/build-jaeger builds it)", jaegerEnv, err)
	}
	j := &jaegerServer{otlpGRPC: freeAddr(t), otlpHTTP: freeAddr(t), hc: &http.Client{Timeout: 10 * time.Second}}
	queryAddr, queryGRPC, health := freeAddr(t), freeAddr(t), freeAddr(t)
	j.query = "http://" + queryAddr
	// Jaeger's own configuration (cmd/jaeger/config.yaml) cut to what the
	// test needs, every listener on loopback, no metrics endpoint.
	conf := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, health, queryAddr, queryGRPC, j.otlpGRPC, j.otlpHTTP)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", "file:"+path)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	p := startCmd(t, "jaeger.log", cmd)
	// Jaeger is another program: its readiness is polled, with a deadline.
	eventually(t, 2*time.Minute, "jaeger's query API answers", func() (bool, error) {
		select {
		case <-p.done:
			t.Fatal("jaeger exited before it was ready")
		default:
		}
		resp, err := j.hc.Get(j.query + "/api/v3/services")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("HTTP %d", resp.StatusCode)
	})
	return j
}

// otlpJSON is the answer of Jaeger's API v3: OTLP's JSON encoding (ids in
// hex), wrapped in "result".
type otlpJSON struct {
	Result struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []otlpJSONAttr `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []struct {
					TraceID      string         `json:"traceId"`
					SpanID       string         `json:"spanId"`
					ParentSpanID string         `json:"parentSpanId"`
					Name         string         `json:"name"`
					Attributes   []otlpJSONAttr `json:"attributes"`
					Links        []struct {
						TraceID string `json:"traceId"`
					} `json:"links"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	} `json:"result"`
}

type otlpJSONAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue *string `json:"stringValue"`
		IntValue    *string `json:"intValue"` // int64 is a string in OTLP's JSON
	} `json:"value"`
}

func (a otlpJSONAttr) value() string {
	switch {
	case a.Value.StringValue != nil:
		return *a.Value.StringValue
	case a.Value.IntValue != nil:
		return *a.Value.IntValue
	}
	return ""
}

// spans asks Jaeger's query API (v3, over HTTP) for path and returns the
// spans of the answer; none when Jaeger has none (404).
func (j *jaegerServer) spans(t *testing.T, path string) []otlpSpan {
	t.Helper()
	resp, err := j.hc.Get(j.query + path)
	if err != nil {
		t.Fatalf("jaeger %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jaeger %s: %d %s", path, resp.StatusCode, data)
	}
	var out otlpJSON
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("jaeger %s: %v\n%s", path, err, data)
	}
	var spans []otlpSpan
	for _, rs := range out.Result.ResourceSpans {
		service := ""
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				service = a.value()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := otlpSpan{trace: strings.ToLower(s.TraceID), id: strings.ToLower(s.SpanID), parent: strings.ToLower(s.ParentSpanID),
					name: s.Name, service: service, attrs: map[string]string{}}
				for _, a := range s.Attributes {
					sp.attrs[a.Key] = a.value()
				}
				for _, l := range s.Links {
					sp.links = append(sp.links, strings.ToLower(l.TraceID))
				}
				spans = append(spans, sp)
			}
		}
	}
	return spans
}

// TestRunTracesInJaeger is TestRunTraces with a real Jaeger v2 as the OTLP
// receiver, once over OTLP/HTTP and once over OTLP/gRPC: the span tree of a
// run (submission, run, jobs, queue, scheduling, attempts, dispatch and the
// agent's steps) is read back from Jaeger's query API as Jaeger stored it.
func TestRunTracesInJaeger(t *testing.T) {
	const caller = "0af7651916cd43dd8448eb211c80319c"
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(protocol, "/", "-"), func(t *testing.T) {
			j := startJaeger(t)
			endpoint := "http://" + j.otlpHTTP
			if protocol == "grpc" {
				endpoint = "http://" + j.otlpGRPC
			}
			from := time.Now().Add(-time.Minute)
			runID := runTraced(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=100"}, caller)

			// The run's trace: found among the server's traces, then read
			// whole. The processes export on their own schedule and Jaeger
			// stores in batches: polled, with a deadline.
			var spans []otlpSpan
			eventually(t, time.Minute, "the run's trace in jaeger, with the agent's three steps", func() (bool, error) {
				q := url.Values{"query.service_name": {"hodei-server"}, "query.num_traces": {"100"},
					"query.start_time_min": {from.UTC().Format(time.RFC3339Nano)},
					"query.start_time_max": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)}}
				trace := ""
				for _, s := range j.spans(t, "/api/v3/traces?"+q.Encode()) {
					if s.name == "run traced" && s.attrs["hodei.run.id"] == runID {
						trace = s.trace
					}
				}
				if trace == "" {
					return false, fmt.Errorf("no span \"run traced\" of run %s yet", runID)
				}
				spans = j.spans(t, "/api/v3/traces/"+trace)
				steps := 0
				for _, s := range spans {
					if s.service == "hodei-agent" && s.attrs["hodei.run.id"] == runID {
						steps++
					}
				}
				return steps == 3, fmt.Errorf("%d step spans in trace %s", steps, trace)
			})
			checkRunTree(t, spans, runID, caller)
		})
	}
}
