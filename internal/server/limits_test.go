package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/steplog"
)

// startLimitedServer starts a server with one local agent and the given
// limits, serving the API on a loopback port without authentication.
func startLimitedServer(t *testing.T, o Options) *Server {
	t.Helper()
	o.NATSListen = "none"
	o.LocalWorkers = 1
	o.WorkerTTL = 5 * time.Second
	return startTestServer(t, o)
}

// TestLogLimitCutsWithMarkerAndStepGoesOn: past the log limit of a job, the
// stored log ends with a line that says where and why it was cut, the rest
// of the output is dropped, and the steps run to their end.
func TestLogLimitCutsWithMarkerAndStepGoesOn(t *testing.T) {
	s := startLimitedServer(t, Options{MaxLogBytes: 1 << 20})
	r, jobs := runPipeline(t, s, `name: loud
jobs:
  loud:
    steps:
      - run: head -c 3145728 /dev/zero | tr '\0' a; echo done > "$HODEI_WORKSPACE/finished"
      - run: test -f "$HODEI_WORKSPACE/finished" && echo "second step ran"
`, 60*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s (%s): the steps must go on past the log limit", r.State, r.Error)
	}
	out := logsOf(t, s, jobs["loud"].ID)
	// The agent's header line counts toward the limit like the output.
	header := steplog.Header(0, 2, steplog.Title("", `head -c 3145728 /dev/zero | tr '\0' a; echo done > "$HODEI_WORKSPACE/finished"`))
	kept := header + strings.Repeat("a", 1<<20-len(header))
	if !strings.HasPrefix(out, kept) {
		t.Fatalf("log does not start with the first 1 MiB of output (%d bytes)", len(out))
	}
	marker := strings.TrimPrefix(out, kept)
	want := "\n[hodei] log cut here, after 1048576 bytes, in step 1: the job's output reached the limit of 1Mi per attempt (server flag --max-log-bytes); the steps go on, the rest of their output is not kept\n"
	if marker != want {
		if len(marker) > 400 {
			marker = fmt.Sprintf("%d bytes ending %q", len(marker), marker[len(marker)-200:])
		}
		t.Errorf("after the kept output: %s, want the marker %q and nothing more", marker, want)
	}
}

// TestPipelineLimitsAtSubmit: the server refuses a pipeline over its
// limits with an error that names the limit; matrix combinations count as
// jobs; the API answers 413 too_large for a file over the size limit.
func TestPipelineLimitsAtSubmit(t *testing.T) {
	s := startLimitedServer(t, Options{Limits: pipeline.Limits{MaxJobs: 10, MaxFileBytes: 4096}, HTTPAddr: "127.0.0.1:0"})
	ctx := context.Background()
	matrix := `name: m
jobs:
  a:
    steps: [{run: "true"}]
  t:
    matrix: {x: [1, 2, 3], y: [1, 2, 3]}
    steps: [{run: "true"}]
`
	if _, err := s.Submit(ctx, "ok.yaml", []byte(matrix), ""); err != nil {
		t.Fatalf("10 jobs with a limit of 10: %v", err)
	}
	_, err := s.Submit(ctx, "m.yaml", []byte(strings.Replace(matrix, "[1, 2, 3]}", "[1, 2, 3, 4]}", 1)), "")
	var list pipeline.ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), "m.yaml:2:1: jobs: the pipeline has 13 jobs (matrix combinations counted); at most 10 are allowed") {
		t.Fatalf("13 jobs with a limit of 10: %v", err)
	}

	big := matrix + "#" + strings.Repeat("x", 4096) + "\n"
	_, err = s.Submit(ctx, "big.yaml", []byte(big), "")
	if err == nil || !strings.Contains(err.Error(), "limit of 4Ki (4096 bytes) on pipeline files") {
		t.Fatalf("a file over 4 KiB: %v", err)
	}
	for _, ct := range []string{"application/yaml", "application/json"} {
		body := []byte(big)
		if ct == "application/json" {
			body = []byte(`{"file": "big.yaml", "pipeline": ` + strconv.Quote(big) + `}`)
		}
		resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v1/runs", ct, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), `"code":"too_large"`) ||
			!strings.Contains(string(msg), "limit of 4Ki (4096 bytes) on pipeline files (server flag --max-pipeline-bytes)") {
			t.Errorf("%s body over the limit: %d %s", ct, resp.StatusCode, msg)
		}
	}
}

// procStatus reads a field of /proc/self/status in bytes.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestLongLineCostsBoundedMemory: a step printing a 50 MB line without a
// newline goes through the agent, the bus, the orchestrator, the store and
// the API (the prefixed view of every job's output) in bounded memory, and
// comes back byte-exact. The bound is on the peak RSS of this process (the
// whole server runs in it), reset before the run (clear_refs): the growth
// over the RSS before the run must stay under 120 MiB, or 250 MiB under
// -race, whose shadow memory grows with every allocation. This is an RSS
// bound with margin (the collector's pace varies with the load of the
// machine), not a timing: measured, the growth is 66 to 82 MiB (153 MiB
// under -race); before output was bounded end to end, it was 330 MiB
// (885 MiB under -race).
func TestLongLineCostsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("prints a 50 MB line")
	}
	const size = 50 << 20
	s := startLimitedServer(t, Options{HTTPAddr: "127.0.0.1:0"})
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS: %v", err)
	}
	before := procStatus(t, "VmRSS")
	r, jobs := runPipeline(t, s, `name: long
jobs:
  long:
    steps:
      - run: head -c `+strconv.Itoa(size)+` /dev/zero | tr '\0' x
`, 120*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	// Read it back through the API, every job prefixed (the view that
	// cuts output into lines), counting bytes as they come.
	resp, err := http.Get("http://" + s.HTTPAddr() + "/api/v1/runs/" + r.ID + "/logs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := &lineCheck{want: 'x'}
	if _, err := io.Copy(got, resp.Body); err != nil {
		t.Fatal(err)
	}
	if got.prefix != "[long] " || got.n != size || !got.endsWithNewline || got.bad {
		t.Errorf("API log: prefix %q, %d bytes of x, newline at the end %v, other bytes %v; want [long] , %d, true, false",
			got.prefix, got.n, got.endsWithNewline, got.bad, size)
	}
	header := "[long] " + steplog.Header(0, 1, "head -c "+strconv.Itoa(size)+" /dev/zero | tr '\\0' x")
	footer := "[long] " + steplog.Footer(0, 1, steplog.Exited(0), 0)
	if got.header != header || steplog.ZeroDurations(string(got.footer)) != footer {
		t.Errorf("API log: header %q, footer %q; want %q, %q", got.header, got.footer, header, footer)
	}
	peak := procStatus(t, "VmHWM")
	growth := peak - before
	t.Logf("RSS before %d MiB, peak %d MiB, growth %d MiB for a %d MiB line", before>>20, peak>>20, growth>>20, size>>20)
	bound := int64(120 << 20)
	if raceEnabled {
		bound = 250 << 20
	}
	if growth > bound {
		t.Errorf("peak RSS grew by %d MiB for a %d MiB line, want under %d MiB", growth>>20, size>>20, bound>>20)
	}
	// Every chunk on the bus and in the store is at most 64 KiB.
	for att, seq := 0, int64(0); ; {
		cs, err := s.Store.ReadLogs(context.Background(), jobs["long"].ID, att, seq, 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			if len(c.Data) > 64<<10 {
				t.Fatalf("chunk %d holds %d bytes, want at most 64 KiB", c.Seq, len(c.Data))
			}
			att, seq = c.Attempt, c.Seq
		}
	}
}

// lineCheck reads the step's header line, then "[long] " followed by x
// bytes and a newline, without keeping them, then the step's footer line.
type lineCheck struct {
	want            byte
	header          string
	prefix          string
	n               int
	endsWithNewline bool
	footer          []byte
	bad             bool
}

func (c *lineCheck) Write(p []byte) (int, error) {
	total := len(p)
	for !strings.HasSuffix(c.header, "\n") && len(p) > 0 {
		if len(c.header) > 1024 {
			c.bad = true
			return total, nil
		}
		c.header += string(p[0])
		p = p[1:]
	}
	for len(c.prefix) < len("[long] ") && len(p) > 0 {
		c.prefix += string(p[0])
		p = p[1:]
	}
	for i, b := range p {
		switch {
		case c.endsWithNewline:
			c.footer = append(c.footer, p[i:]...)
			c.bad = c.bad || len(c.footer) > 1024
			return total, nil
		case b == c.want:
			c.n++
		case b == '\n':
			c.endsWithNewline = true
		default:
			c.bad = true
		}
	}
	return total, nil
}

// TestLongLineExactThroughAPI: a 2.3 MB line (the numbers 1 to 400,000
// without separators) is cut into chunks of at most 64 KiB and comes back
// exact from the store and from both views of the API: one job as it is,
// and every job prefixed.
func TestLongLineExactThroughAPI(t *testing.T) {
	s := startLimitedServer(t, Options{HTTPAddr: "127.0.0.1:0"})
	r, jobs := runPipeline(t, s, `name: digits
jobs:
  digits:
    steps:
      - run: seq 1 400000 | tr -d '\n'; printf '\n'; echo after
`, 60*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	var line strings.Builder
	for i := 1; i <= 400000; i++ {
		line.WriteString(strconv.Itoa(i))
	}
	header := steplog.Header(0, 1, `seq 1 400000 | tr -d '\n'; printf '\n'; echo after`)
	footer := steplog.Footer(0, 1, steplog.Exited(0), 0)
	want := header + line.String() + "\nafter\n" + footer
	if got := steplog.ZeroDurations(logsOf(t, s, jobs["digits"].ID)); got != want {
		t.Fatalf("stored log: %d bytes, want %d exact", len(got), len(want))
	}
	for _, c := range []struct{ query, want string }{
		{"?job=digits", want},
		{"", "[digits] " + header + "[digits] " + line.String() + "\n[digits] after\n[digits] " + footer},
	} {
		resp, err := http.Get("http://" + s.HTTPAddr() + "/api/v1/runs/" + r.ID + "/logs" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if steplog.ZeroDurations(string(got)) != c.want {
			t.Errorf("GET logs%s: %d bytes, want %d exact", c.query, len(got), len(c.want))
		}
	}
}
