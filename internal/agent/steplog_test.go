package agent

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/steplog"
)

// stepLog runs spec's steps on an unisolated agent and returns the log the
// batcher emitted, chunk by chunk with their steps.
func stepLog(t *testing.T, spec pipeline.JobSpec, secrets ...string) (log string, steps []int, state string, code int) {
	t.Helper()
	a := &Agent{cfg: Config{ID: "w1", WorkDir: t.TempDir(), Unisolated: true}}
	a.cfg.Defaults()
	var mu sync.Mutex
	var out strings.Builder
	b := newBatcher(1<<16, time.Hour, func(step int, data []byte) {
		mu.Lock()
		defer mu.Unlock()
		out.Write(data)
		for range strings.Count(string(data), "\n") {
			steps = append(steps, step)
		}
	})
	d := bus.Dispatch{RunID: "r", JobID: "j", Attempt: 1}
	state, code, _ = a.runSteps(context.Background(), d, spec, b, mask.New(secrets...), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	b.Flush(-1)
	mu.Lock()
	defer mu.Unlock()
	return out.String(), steps, state, code
}

func TestStepHeadersAndFooters(t *testing.T) {
	spec := pipeline.JobSpec{Key: "j", Steps: []pipeline.StepSpec{
		{Name: "greet", Run: "echo hello"},
		{Run: "printf 'no newline'\nexit 3"},
	}}
	log, steps, state, code := stepLog(t, spec)
	if state != bus.StatusFailed || code != 3 {
		t.Fatalf("state %s code %d, want failed 3", state, code)
	}
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^==> step 1/2: greet$`),
		regexp.MustCompile(`^hello$`),
		regexp.MustCompile(`^<== step 1/2 exited 0 in [0-9.]+(m?s|µs)$`),
		regexp.MustCompile(`^==> step 2/2: printf 'no newline' …$`),
		// The step's unterminated line is closed before the footer.
		regexp.MustCompile(`^no newline$`),
		regexp.MustCompile(`^<== step 2/2 exited 3 in [0-9.]+(m?s|µs)$`),
	}
	if len(lines) != len(want) || !strings.HasSuffix(log, "\n") {
		t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(want), log)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i], re)
		}
	}
	// Headers and footers belong to their step's chunks.
	if wantSteps := []int{0, 0, 0, 1, 1, 1}; !slices.Equal(steps, wantSteps) {
		t.Errorf("lines' steps = %v, want %v", steps, wantSteps)
	}
}

func TestStepHeaderMasksSecrets(t *testing.T) {
	spec := pipeline.JobSpec{Key: "j", Steps: []pipeline.StepSpec{{Run: "true s3cr3t-value"}}}
	log, _, state, _ := stepLog(t, spec, "s3cr3t-value")
	if state != bus.StatusSucceeded {
		t.Fatalf("state %s, want succeeded", state)
	}
	if strings.Contains(log, "s3cr3t") || !strings.Contains(log, "==> step 1/1: true ***") {
		t.Errorf("header not masked:\n%s", log)
	}
}

func TestStepTitle(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct{ name, run, want string }{
		{"build", "make", "build"},
		{"", "  make test  ", "make test"},
		{"", "a\tb\x1b[31m", "a b [31m"},
		{"", long, strings.Repeat("x", steplog.MaxTitle-1) + "…"},
	} {
		if got := steplog.Title(tc.name, tc.run); got != tc.want {
			t.Errorf("stepTitle(%q, %q) = %q, want %q", tc.name, tc.run, got, tc.want)
		}
	}
}
