package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/proctest"
)

// testEnv is a small environment for steps.
var testEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"}

// watchWriter collects output and reports the pid printed on a line
// "bg <pid>" as soon as it arrives.
type watchWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	pid chan int
}

var bgLine = regexp.MustCompile(`(?m)^bg (\d+)$`)

func newWatchWriter() *watchWriter { return &watchWriter{pid: make(chan int, 1)} }

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := bgLine.Match(w.buf.Bytes())
	w.buf.Write(p)
	if m := bgLine.FindSubmatch(w.buf.Bytes()); !had && m != nil {
		pid, _ := strconv.Atoi(string(m[1]))
		w.pid <- pid
	}
	return len(p), nil
}

// awaitPid returns the pid of the line "bg <pid>", or fails the test if
// wait ends before the step printed it.
func (w *watchWriter) awaitPid(t *testing.T, wait context.Context) int {
	t.Helper()
	select {
	case pid := <-w.pid:
		return pid
	case <-wait.Done():
		t.Fatalf("step did not start: %q", w.String())
		return 0
	}
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// bgStep is a step run by runBackground.
type bgStep struct {
	res  stepResult
	took time.Duration // how long runStep took
	pid  int           // the process the step left in the background
	out  *watchWriter
}

// runBackground runs script, which prints "bg PID" of a process it leaves
// in the background, with the step timeout. The step has printed the line
// by the time runStep returns (it is read before the step's end), or the
// test fails. The process is killed when the test ends if it is still
// alive.
func runBackground(t *testing.T, script string, timeout time.Duration) bgStep {
	t.Helper()
	out := newWatchWriter()
	start := time.Now()
	res := runStep(context.Background(), script, t.TempDir(), testEnv, timeout, out)
	s := bgStep{res: res, took: time.Since(start), out: out}
	select {
	case s.pid = <-out.pid:
	default:
		t.Fatalf("the step did not print its background pid before runStep returned: %q", out.String())
	}
	t.Cleanup(func() {
		if proctest.Alive(s.pid) {
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
		}
	})
	return s
}

func TestRunStepSuccess(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	res := runStep(context.Background(), "echo hello", t.TempDir(), testEnv, 0, &out)
	if res.ExitCode != 0 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if out.String() != "hello\n" {
		t.Fatalf("output %q", out.String())
	}
}

func TestRunStepExitCode(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1, 2, 3, 42, 127, 255} {
		var out bytes.Buffer
		res := runStep(context.Background(), fmt.Sprintf("echo before; exit %d", code), t.TempDir(), testEnv, 0, &out)
		if res.ExitCode != code {
			t.Errorf("exit %d: ExitCode %d", code, res.ExitCode)
		}
		if res.Err == nil || !strings.Contains(res.Err.Error(), strconv.Itoa(code)) {
			t.Errorf("exit %d: Err %v", code, res.Err)
		}
		if errors.Is(res.Err, errTimeout) {
			t.Errorf("exit %d: Err %v wraps errTimeout", code, res.Err)
		}
		if out.String() != "before\n" {
			t.Errorf("exit %d: output %q", code, out.String())
		}
	}
	// A command that is not found: the shell's 127.
	res := runStep(context.Background(), "no-such-command-hodei", t.TempDir(), testEnv, 0, &bytes.Buffer{})
	if res.ExitCode != 127 {
		t.Errorf("missing command: ExitCode %d, want 127", res.ExitCode)
	}
}

// TestRunStepOutput: steps that succeed, and the exact output they give.
func TestRunStepOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		env          []string
		want         string
	}{
		// Both streams share one pipe, so the order is kept.
		{"stdout and stderr in order", "echo to-out; echo to-err >&2; echo out-again", testEnv, "to-out\nto-err\nout-again\n"},
		// Only the given environment: nothing leaks from the agent's own.
		{"only the given environment", `printf '%s|%s|%s|%s\n' "$HODEI_TEST_VAR" "${EMPTY-unset}" "${HOME-unset}" "${GOPATH-unset}"`,
			append(slices.Clone(testEnv), "HODEI_TEST_VAR=a b=c", "EMPTY="), "a b=c||unset|unset\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			res := runStep(context.Background(), tc.script, t.TempDir(), tc.env, 0, &out)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if out.String() != tc.want {
				t.Fatalf("output %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func TestRunStepDrainsLargeOutput(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	// Output much bigger than a pipe buffer, ending as the shell exits.
	res := runStep(context.Background(), "head -c 3000000 /dev/zero | tr '\\0' x; echo end >&2", t.TempDir(), testEnv, 0, &out)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if out.Len() != 3000004 || !strings.HasSuffix(out.String(), "xend\n") {
		t.Fatalf("got %d bytes, ending %q", out.Len(), out.String()[max(0, out.Len()-10):])
	}
}

func TestRunStepShellE(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	res := runStep(context.Background(), "echo one\nfalse\necho two", t.TempDir(), testEnv, 0, &out)
	if res.ExitCode != 1 || res.Err == nil {
		t.Fatalf("result %+v, want exit 1", res)
	}
	if out.String() != "one\n" {
		t.Fatalf("output %q: sh -e must stop at the first failing command", out.String())
	}
}

func TestRunStepDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	res := runStep(context.Background(), "pwd; echo data > created.txt", dir, testEnv, 0, &out)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := filepath.EvalSymlinks(strings.TrimSpace(out.String()))
	if err != nil || got != want {
		t.Fatalf("pwd %q (%v), want %q", out.String(), err, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "created.txt")); err != nil || string(b) != "data\n" {
		t.Fatalf("created.txt: %q %v", b, err)
	}
}

func TestRunStepBadDir(t *testing.T) {
	t.Parallel()
	res := runStep(context.Background(), "true", filepath.Join(t.TempDir(), "missing"), testEnv, 0, &bytes.Buffer{})
	if res.Err == nil || res.ExitCode != -1 {
		t.Fatalf("result %+v, want a start error", res)
	}
}

// TestRunStepBackgroundChildAfterExit: a step that exits leaving a child in
// the background does not hang on the child holding the output pipe, and the
// child goes with the step.
func TestRunStepBackgroundChildAfterExit(t *testing.T) {
	t.Parallel()
	s := runBackground(t, "sleep 60 &\necho \"bg $!\"", 0)
	if s.res.Err != nil {
		t.Fatalf("result %+v", s.res)
	}
	// Waiting for the child would take its whole minute.
	if s.took >= time.Minute {
		t.Errorf("step took %v: it waited for the background child", s.took)
	}
	proctest.RequireDead(t, s.pid, 5*time.Second)
}

func TestRunStepTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	// The grandchild writes elsewhere, so that only the group kill (and not
	// the closing of the output pipe) can end it.
	s := runBackground(t, "sleep 60 >/dev/null 2>&1 &\necho \"bg $!\"\nsleep 60\necho not-reached", timeout)
	if !errors.Is(s.res.Err, errTimeout) {
		t.Errorf("Err %v does not wrap errTimeout", s.res.Err)
	}
	if s.res.ExitCode != -1 {
		t.Errorf("ExitCode %d, want -1", s.res.ExitCode)
	}
	if s.took < timeout {
		t.Errorf("returned after %v, before the timeout %v", s.took, timeout)
	}
	// Without the timeout the step would sleep its minute.
	if s.took >= time.Minute {
		t.Errorf("returned %v after the timeout of %v: the step ran its course", s.took-timeout, timeout)
	}
	if strings.Contains(s.out.String(), "not-reached") {
		t.Errorf("output %q", s.out.String())
	}
	proctest.RequireDead(t, s.pid, 5*time.Second)
}

// TestRunStepTimeoutEscalates: a group that ignores SIGTERM gets SIGKILL
// after killGrace.
func TestRunStepTimeoutEscalates(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	s := runBackground(t, "trap '' TERM\nsleep 60 &\necho \"bg $!\"\nwait\necho not-reached", timeout)
	if !errors.Is(s.res.Err, errTimeout) || s.res.ExitCode != -1 {
		t.Errorf("result %+v, want a timeout", s.res)
	}
	// Waiting out the grace period is the behaviour under test.
	if s.took < timeout+killGrace {
		t.Errorf("returned after %v: SIGTERM was ignored, so it must wait killGrace (%v) after the timeout (%v)", s.took, killGrace, timeout)
	}
	// Without SIGKILL the group would sleep its minute.
	if s.took >= time.Minute {
		t.Errorf("returned after %v: SIGKILL never came", s.took)
	}
	proctest.RequireDead(t, s.pid, 5*time.Second)
}

func TestRunStepCancelKillsGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cancel func(context.CancelCauseFunc)
		is     error
	}{
		{"cancel", func(c context.CancelCauseFunc) { c(nil) }, context.Canceled},
		{"job timeout cause", func(c context.CancelCauseFunc) { c(fmt.Errorf("job %w after 1s", errTimeout)) }, errTimeout},
		{"agent stop", func(c context.CancelCauseFunc) { c(errCanceled) }, errCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			out := newWatchWriter()
			done := make(chan stepResult, 1)
			go func() {
				done <- runStep(ctx, "sleep 60 &\necho \"bg $!\"\nwait\necho not-reached", t.TempDir(), testEnv, time.Hour, out)
			}()

			wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			pid := out.awaitPid(t, wait)
			// The check that follows must be able to fail: the grandchild
			// runs while the step does.
			if !proctest.Alive(pid) {
				t.Fatalf("background process %d not running before cancel", pid)
			}

			start := time.Now()
			tc.cancel(cancel)
			var res stepResult
			select {
			case res = <-done:
			case <-wait.Done():
				t.Fatal("runStep did not return after cancel")
			}
			if el := time.Since(start); el >= 2*time.Second {
				t.Errorf("runStep returned %v after cancel", el)
			}
			if !errors.Is(res.Err, tc.is) || res.ExitCode != -1 {
				t.Errorf("result %+v, want an error wrapping %v", res, tc.is)
			}
			if strings.Contains(out.String(), "not-reached") {
				t.Errorf("output %q", out.String())
			}
			proctest.RequireDead(t, pid, 5*time.Second)
		})
	}
}

func TestRunStepCanceledBeforeStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	res := runStep(ctx, "touch started; sleep 60", dir, testEnv, 0, &bytes.Buffer{})
	if !errors.Is(res.Err, context.Canceled) {
		t.Errorf("Err %v", res.Err)
	}
	if _, err := os.Stat(filepath.Join(dir, "started")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the step started although its context was canceled before (%v)", err)
	}
}

func TestMergeEnv(t *testing.T) {
	t.Parallel()
	base := []string{"PATH=/bin", "A=base", "DUP=first", "DUP=second", "EQ=x=y", "NOEQUALS", "EMPTY="}
	got := mergeEnv(base,
		map[string]string{"A": "hodei", "B": "hodei", "C": "hodei"},
		nil,
		map[string]string{"B": "run", "EMPTY": "set"},
		map[string]string{"C": "step", "D": ""},
	)
	want := []string{"A=hodei", "B=run", "C=step", "D=", "DUP=second", "EMPTY=set", "EQ=x=y", "PATH=/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeEnv\n got %q\nwant %q", got, want)
	}
	if e := mergeEnv(nil); e == nil || len(e) != 0 {
		t.Fatalf("mergeEnv(nil) = %#v, want empty non-nil (nil would give the step the agent's environment)", e)
	}
}

// TestMergeEnvProperty: later layers win, every key once, sorted.
func TestMergeEnvProperty(t *testing.T) {
	t.Parallel()
	keys := []string{"A", "B", "C", "PATH", "HOME", "HODEI_RUN_ID", "X_1"}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 3))
		want := map[string]string{}
		var base []string
		for range r.IntN(6) {
			k, v := keys[r.IntN(len(keys))], fmt.Sprint("base", r.IntN(5), "=", r.IntN(3))
			base = append(base, k+"="+v)
			want[k] = v
		}
		var layers []map[string]string
		for l := range r.IntN(5) {
			m := map[string]string{}
			for range r.IntN(4) {
				m[keys[r.IntN(len(keys))]] = fmt.Sprint("layer", l)
			}
			layers = append(layers, m)
			maps.Copy(want, m)
		}
		got := mergeEnv(base, layers...)
		if !slices.IsSorted(got) {
			t.Fatalf("seed %d: not sorted: %q", seed, got)
		}
		if len(got) != len(want) {
			t.Fatalf("seed %d: got %q, want %v", seed, got, want)
		}
		for _, kv := range got {
			k, v, _ := strings.Cut(kv, "=")
			if w, ok := want[k]; !ok || w != v {
				t.Fatalf("seed %d: %s, want %s=%s", seed, kv, k, w)
			}
		}
	}
}

// TestRunStepGroupGetsGrace: killGrace is for the whole group, not only the
// shell. The shell dies on SIGTERM at once, but a child that cleans up on
// SIGTERM must get its grace period before SIGKILL.
func TestRunStepGroupGetsGrace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newWatchWriter()
	// The child's cleanup takes 200ms (the sleep in the trap is the
	// behaviour under test: a cleanup shorter than killGrace).
	script := `sh -c 'trap "sleep 0.2; echo cleaned; exit 0" TERM; echo "bg $$"; while :; do sleep 0.05; done' &
wait`
	done := make(chan stepResult, 1)
	go func() { done <- runStep(ctx, script, t.TempDir(), testEnv, 0, out) }()
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	pid := out.awaitPid(t, wait)
	start := time.Now()
	cancel()
	var res stepResult
	select {
	case res = <-done:
	case <-wait.Done():
		t.Fatal("runStep did not return")
	}
	if el := time.Since(start); el >= killGrace+2*time.Second {
		t.Errorf("returned %v after cancel", el)
	}
	if !errors.Is(res.Err, context.Canceled) {
		t.Errorf("Err %v", res.Err)
	}
	if !strings.Contains(out.String(), "cleaned") {
		t.Errorf("the child was killed before its SIGTERM cleanup could finish; output %q", out.String())
	}
	proctest.RequireDead(t, pid, 5*time.Second)
}

// TestRunStepEscapedChild: a process that left the step's group (setsid)
// cannot be killed with it and holds the output pipe; runStep gives up on the
// pipe after a while instead of hanging, and keeps the output read so far.
func TestRunStepEscapedChild(t *testing.T) {
	t.Parallel()
	// The step waits until the child has its own session, so that the
	// group kill at the end cannot catch it half-way.
	s := runBackground(t, `setsid sleep 30 &
p=$!
echo "bg $p"
until [ "$(cut -d' ' -f6 /proc/$p/stat)" = "$p" ]; do :; done
echo done`, 0)
	if s.res.Err != nil {
		t.Fatalf("result %+v", s.res)
	}
	if !strings.Contains(s.out.String(), "done\n") {
		t.Fatalf("output %q", s.out.String())
	}
	// runStep waits 2s for the pipe before giving up; waiting for the
	// escaped child would take its 30 s.
	if s.took >= 30*time.Second {
		t.Fatalf("runStep took %v with an escaped child", s.took)
	}
	if !proctest.Alive(s.pid) {
		t.Fatalf("escaped process %d is gone: the test did not test an escape", s.pid)
	}
}

// TestRunStepKilledBySignal: a shell killed by a signal from outside (not by
// runStep) fails with exit code -1, and the error names the signal.
func TestRunStepKilledBySignal(t *testing.T) {
	t.Parallel()
	for sig, want := range map[string]string{"KILL": "signal 9 (killed)", "TERM": "signal 15 (terminated)"} {
		res := runStep(context.Background(), "echo x; kill -"+sig+" $$; echo not-reached", t.TempDir(), testEnv, 0, &bytes.Buffer{})
		if res.ExitCode != -1 || res.Err == nil || errors.Is(res.Err, errTimeout) {
			t.Fatalf("%s: result %+v", sig, res)
		}
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("%s: error %q does not name the signal (%s)", sig, res.Err, want)
		}
	}
}

// BenchmarkStepGate is the cost of holding a step until onStart returns
// (one more shell exec) against starting its shell directly.
func BenchmarkStepGate(b *testing.B) {
	dir := b.TempDir()
	for _, gated := range []bool{false, true} {
		name := "direct"
		var onStart func(int)
		if gated {
			name, onStart = "gated", func(int) {}
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if res := runStepTracked(context.Background(), "true", dir, testEnv, 0, io.Discard, onStart, nil); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		})
	}
}
