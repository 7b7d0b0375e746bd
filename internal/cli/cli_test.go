package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

func TestLinesPartial(t *testing.T) {
	var b bytes.Buffer
	l := NewLines(&b, nil)
	steps := []struct {
		key, data string
		want      string // what b holds after the write
	}{
		{"a", "hel", ""},
		{"b", "one\ntw", "[b] one\n"},
		{"a", "lo\nwor", "[b] one\n[a] hello\n"},
		{"a", "ld\n\nx", "[b] one\n[a] hello\n[a] world\n[a] \n"},
		{"b", "o\n", "[b] one\n[a] hello\n[a] world\n[a] \n[b] two\n"},
	}
	for i, s := range steps {
		if err := l.Write(s.key, []byte(s.data)); err != nil {
			t.Fatal(err)
		}
		if b.String() != s.want {
			t.Fatalf("after write %d: %q, want %q", i, b.String(), s.want)
		}
	}
	if !l.Pending("a") || l.Pending("b") {
		t.Errorf("Pending(a) = %v, Pending(b) = %v", l.Pending("a"), l.Pending("b"))
	}
	if err := l.Flush("b"); err != nil || strings.Count(b.String(), "\n") != 5 {
		t.Errorf("flushing a stream without a partial line wrote something: %q", b.String())
	}
	if err := l.FlushAll(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(b.String(), "[b] two\n[a] x\n") {
		t.Errorf("after FlushAll: %q", b.String())
	}
	if l.Pending("a") {
		t.Error("a still pending after FlushAll")
	}
	// A flushed stream starts a fresh line.
	_ = l.Write("a", []byte("y\n"))
	if !strings.HasSuffix(b.String(), "[a] x\n[a] y\n") {
		t.Errorf("after flush and write: %q", b.String())
	}
}

func TestLinesByteAtATime(t *testing.T) {
	var b bytes.Buffer
	l := NewLines(&b, NoPrefix)
	in := "first line\nsecond\n\nlast without newline"
	for i := 0; i < len(in); i++ {
		_ = l.Write("k", []byte{in[i]})
	}
	if b.String() != "first line\nsecond\n\n" {
		t.Errorf("complete lines = %q", b.String())
	}
	_ = l.FlushAll()
	if b.String() != in+"\n" {
		t.Errorf("all = %q", b.String())
	}
}

func TestPrinter(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b, nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []wire.Event{
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "1", JobKey: "build", State: "queued", At: t0}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "1", JobKey: "build", State: "running", Attempt: 1, At: t0}},
		{Type: wire.EventLog, Log: &wire.LogEvent{JobID: "1", JobKey: "build", Data: "compiling\nhalf"}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "1", JobKey: "build", State: "queued", Attempt: 1, Error: "exit status 1", At: t0.Add(time.Second)}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "1", JobKey: "build", State: "running", Attempt: 2, At: t0.Add(2 * time.Second)}},
		{Type: wire.EventLog, Log: &wire.LogEvent{JobID: "1", JobKey: "build", Data: "done"}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "1", JobKey: "build", State: "succeeded", Attempt: 2, At: t0.Add(3200 * time.Millisecond)}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "2", JobKey: "test (a)", State: "failed", Error: "step 1: exit status 2", At: t0,
			StartedAt: ptr(t0.Add(-500 * time.Millisecond))}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "3", JobKey: "deploy", State: "queued", Attempt: 1, Error: "lost: worker restarted", At: t0}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "3", JobKey: "deploy", State: "skipped", At: t0}},
		{Type: wire.EventJob, Job: &wire.JobEvent{JobID: "4", JobKey: "late", State: "canceled", At: t0}},
		{Type: wire.EventEnd, End: &wire.Run{State: "failed"}},
	}
	for _, ev := range evs {
		if err := p.Event(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := `[build] ▶ started
[build] compiling
[build] half
[build] ↻ attempt 1 failed: exit status 1; retrying
[build] ▶ started (attempt 2)
[build] done
[build] ✓ succeeded in 1.2s
[test (a)] ✗ failed: step 1: exit status 2 (500ms)
[deploy] ↻ attempt 1 lost: worker restarted; running it again
[deploy] - skipped
[late] ✗ canceled
`
	if b.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", b.String(), want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFormatDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0ms"},
		{850 * time.Millisecond, "850ms"},
		{1249 * time.Millisecond, "1.2s"},
		{59 * time.Second, "59.0s"},
		{3*time.Minute + 4*time.Second, "3m04s"},
		{2*time.Hour + 5*time.Minute, "2h05m"},
		{-time.Second, "-"},
	} {
		if got := FormatDuration(c.d); got != c.want {
			t.Errorf("FormatDuration(%s) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := FormatBytes(1536 << 20); got != "1.5Gi" {
		t.Errorf("FormatBytes = %q", got)
	}
	if got := FormatBytes(64 << 20); got != "64Mi" {
		t.Errorf("FormatBytes = %q", got)
	}
	if got := FormatCPU(500); got != "0.5" {
		t.Errorf("FormatCPU = %q", got)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	_ = Table(&b, []string{"JOB", "STATE"}, [][]string{{"test (a, b)", "ok"}, {"x", "tab\there"}})
	want := "JOB          STATE\ntest (a, b)  ok\nx            tab here\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestParseAndEnv(t *testing.T) {
	env := map[string]string{"HODEI_DATA_DIR": "/from/env", "HODEI_WORKERS": "7", "HODEI_FOLLOW": "true"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./d", "")
	workers := fs.Int("workers", 2, "")
	follow := fs.Bool("follow", false, "")
	server := fs.String("server", "http://default", "")
	pos, err := Parse(fs, []string{"file.yaml", "--workers", "3", "other", "--", "--not-a-flag"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pos, "|") != "file.yaml|other|--not-a-flag" {
		t.Errorf("positional = %q", pos)
	}
	if *workers != 3 {
		t.Errorf("workers = %d: the flag must win over HODEI_WORKERS", *workers)
	}
	if *dataDir != "/from/env" || !*follow {
		t.Errorf("data-dir = %q, follow = %v: not taken from the environment", *dataDir, *follow)
	}
	if *server != "http://default" {
		t.Errorf("server = %q", *server)
	}

	fs = flag.NewFlagSet("y", flag.ContinueOnError)
	fs.Int("workers", 2, "")
	_, err = Parse(fs, nil, lookup)
	if err != nil {
		t.Fatal(err)
	}
	env["HODEI_WORKERS"] = "many"
	fs = flag.NewFlagSet("z", flag.ContinueOnError)
	fs.Int("workers", 2, "")
	if _, err := Parse(fs, nil, lookup); err == nil || !strings.Contains(err.Error(), "HODEI_WORKERS") {
		t.Errorf("bad env value: err = %v", err)
	}
	if EnvName("nats-listen") != "HODEI_NATS_LISTEN" {
		t.Errorf("EnvName = %q", EnvName("nats-listen"))
	}
}

func TestPipelineErrors(t *testing.T) {
	_, err := pipeline.Parse("p.yaml", []byte("name: x\njobs:\n  a:\n    steps:\n      - name: no run\n"))
	var b bytes.Buffer
	if !PipelineErrors(&b, err) || !strings.HasPrefix(b.String(), "p.yaml:5:") {
		t.Errorf("PipelineErrors(%v) wrote %q", err, b.String())
	}
	b.Reset()
	if PipelineErrors(&b, errors.New("other")) || b.Len() != 0 {
		t.Error("PipelineErrors took another error")
	}
}

func TestAttemptsTableShowsUsage(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 := t0.Add(1500 * time.Millisecond)
	exit1, exit0 := 137, 0
	peak := int64(48 << 20)
	cpu := 0.25
	jobs := []wire.Job{{Key: "build", Attempts: []wire.Attempt{
		{N: 1, Worker: "w1", State: "failed", StartedAt: &t0, FinishedAt: &t1, ExitCode: &exit1, Reason: "exit 137"},
		{N: 2, Worker: "w2", State: "succeeded", StartedAt: &t0, FinishedAt: &t1, ExitCode: &exit0, PeakMemory: &peak, CPUSeconds: &cpu},
	}}}
	var b bytes.Buffer
	if err := AttemptsTable(&b, jobs); err != nil {
		t.Fatal(err)
	}
	want := "JOB    ATTEMPT  WORKER  STATE      EXIT  DURATION  PEAK MEMORY  CPU TIME  ENDED\n" +
		"build  1        w1      failed     137   1.5s      -            -         exit 137\n" +
		"build  2        w2      succeeded  0     1.5s      48Mi         250ms     -\n"
	if b.String() != want {
		t.Errorf("attempts:\n%s\nwant\n%s", b.String(), want)
	}
}

// TestWorkersTableShowsUnisolated checks that a worker whose steps run
// without a sandbox says so in `hodei workers`, and that others do not.
func TestWorkersTableShowsUnisolated(t *testing.T) {
	var b strings.Builder
	err := WorkersTable(&b, []wire.Worker{
		{ID: "safe", Pool: "local", State: "idle", Labels: []string{"linux"}},
		{ID: "open", Pool: "local", State: "busy", Labels: []string{"linux", UnisolatedLabel}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		switch {
		case strings.HasPrefix(l, "safe") && strings.Contains(l, "unisolated"):
			t.Errorf("isolated worker shown as unisolated: %q", l)
		case strings.HasPrefix(l, "open") && !strings.Contains(l, "busy (unisolated)"):
			t.Errorf("unisolated worker not shown as such: %q", l)
		}
	}
}
