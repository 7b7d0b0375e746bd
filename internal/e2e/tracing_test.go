package e2e

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpSpan is what the tests read of a received span.
type otlpSpan struct {
	trace, id, parent string
	name, service     string
	links             []string // trace IDs
	attrs             map[string]string
}

// otlpReceiver is an OTLP trace receiver on loopback: it takes OTLP/HTTP
// (protobuf) on /v1/traces and OTLP/gRPC (the TraceService), as a collector
// does, and keeps every span.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []otlpSpan
}

func (rc *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := otlpSpan{trace: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
					parent: hex.EncodeToString(s.GetParentSpanId()), name: s.GetName(), service: service, attrs: map[string]string{}}
				for _, l := range s.GetLinks() {
					sp.links = append(sp.links, hex.EncodeToString(l.GetTraceId()))
				}
				for _, kv := range s.GetAttributes() {
					v := kv.GetValue()
					sp.attrs[kv.GetKey()] = v.GetStringValue() + func() string {
						if v.GetStringValue() == "" {
							return fmt.Sprint(v.GetIntValue())
						}
						return ""
					}()
				}
				rc.spans = append(rc.spans, sp)
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, _ := rc.Export(r.Context(), &req)
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *otlpReceiver) snapshot() []otlpSpan {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]otlpSpan(nil), rc.spans...)
}

// TestRunTraces runs a DAG on a server and a `hodei agent` (real processes)
// that export traces over OTLP, once over HTTP and once over gRPC, to a
// receiver on loopback, and checks the span tree of the run: the run at the
// root, its submission linked to the caller's trace, each job under the
// run, the queue wait, scheduling pass and attempts under each job, the
// dispatch under the attempt, and each step, emitted by the agent, under
// its attempt (the context having travelled in the assignment's NATS
// header).
func TestRunTraces(t *testing.T) {
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(protocol, "/", "-"), func(t *testing.T) {
			rc := &otlpReceiver{}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			endpoint := "http://" + l.Addr().String()
			if protocol == "grpc" {
				gs := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(gs, rc)
				go func() { _ = gs.Serve(l) }()
				t.Cleanup(gs.Stop)
			} else {
				hs := &http.Server{Handler: rc}
				go func() { _ = hs.Serve(l) }()
				t.Cleanup(func() { _ = hs.Close() })
			}
			otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=100"}
			runID := runTraced(t, otel, caller)

			// The server's spans end with the run's; the agent's three
			// steps come from another process, on its own schedule.
			var spans []otlpSpan
			eventually(t, 30*time.Second, "the run's span and the agent's three steps", func() (bool, error) {
				spans = rc.snapshot()
				run, steps := false, 0
				for _, s := range spans {
					run = run || s.name == "run traced"
					if s.service == "hodei-agent" && s.attrs["hodei.run.id"] == runID {
						steps++
					}
				}
				return run && steps == 3, fmt.Errorf("run span %v, %d step spans", run, steps)
			})
			checkRunTree(t, spans, runID, caller)
		})
	}
}

// runTraced runs the DAG of TestRunTraces (build with two steps, then test
// with one) on a server and a `hodei agent`, real processes exporting their
// spans as the OTEL_* variables of otel say, submitted with a traceparent
// of the caller's trace; it returns the run's id once it has succeeded.
func runTraced(t *testing.T, otel []string, caller string) string {
	t.Helper()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	srvCmd := exec.Command(hodeiBin, withStore(t, []string{"server", "--data-dir", t.TempDir(), "--http", httpAddr,
		"--nats-listen", natsAddr, "--workers", "0", "--auth", "off"})...)
	srvCmd.Env = append(os.Environ(), otel...)
	srv := startCmd(t, "server.log", srvCmd)
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)
	agCmd := exec.Command(hodeiBin, "agent", "--nats", "nats://"+natsAddr, "--id", "trace-agent", "--work-dir", t.TempDir())
	agCmd.Env = append(os.Environ(), otel...)
	startCmd(t, "agent.log", agCmd)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", a.base+"/api/v1/runs?file=trace.yaml", strings.NewReader(`name: traced
jobs:
  build:
    steps:
      - name: compile
        run: echo compiling
      - name: link
        run: echo linking
  test:
    needs: [build]
    steps:
      - name: unit
        run: echo testing
`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	var r runJSON
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: HTTP %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	r.ID = loc[strings.LastIndexByte(loc, '/')+1:]
	eventually(t, time.Minute, "run succeeded", func() (bool, error) {
		got, err := a.run(ctx, r.ID)
		if final(got.State) && got.State != "succeeded" {
			t.Fatalf("run ended %s", got.State)
		}
		return got.State == "succeeded", err
	})
	return r.ID
}

// checkRunTree checks the spans of one run as TestRunTraces describes.
func checkRunTree(t *testing.T, spans []otlpSpan, runID, caller string) {
	t.Helper()
	byID := map[string]otlpSpan{}
	var root otlpSpan
	for _, s := range spans {
		if s.attrs["hodei.run.id"] != runID {
			continue
		}
		byID[s.id] = s
		if s.parent == "" {
			if root.id != "" {
				t.Fatalf("two roots: %q and %q", root.name, s.name)
			}
			root = s
		}
	}
	if root.name != "run traced" || root.service != "hodei-server" {
		t.Fatalf("root span %q of %q, want \"run traced\" of hodei-server", root.name, root.service)
	}
	// find returns the span named name whose parent is parentID.
	find := func(name, parentID string) otlpSpan {
		t.Helper()
		for _, s := range byID {
			if s.name == name && s.parent == parentID {
				if s.trace != root.trace {
					t.Errorf("span %q in trace %s, want the run's %s", name, s.trace, root.trace)
				}
				return s
			}
		}
		var have []string
		for _, s := range byID {
			have = append(have, fmt.Sprintf("%s<-%s", s.name, byID[s.parent].name))
		}
		t.Fatalf("no span %q under %q; have %v", name, byID[parentID].name, have)
		return otlpSpan{}
	}
	submit := find("submit", root.id)
	if len(submit.links) != 1 || submit.links[0] != caller {
		t.Errorf("submit links %v, want the caller's trace %s", submit.links, caller)
	}
	for job, steps := range map[string][]string{"build": {"compile", "link"}, "test": {"unit"}} {
		j := find("job "+job, root.id)
		find("queue", j.id)
		find("schedule", j.id)
		att := find("attempt 1", j.id)
		find("dispatch", att.id)
		for _, st := range steps {
			if s := find(st, att.id); s.service != "hodei-agent" {
				t.Errorf("step %s emitted by %q, want hodei-agent", st, s.service)
			}
		}
	}
}
