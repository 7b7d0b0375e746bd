package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/sandbox"
)

// killGrace is how long a step's process group gets between SIGTERM and
// SIGKILL when it is cancelled or times out.
const killGrace = 500 * time.Millisecond

// errTimeout marks a step stopped by its timeout (or its job's).
var errTimeout = errors.New("timed out")

// stepResult is how one step ended.
type stepResult struct {
	ExitCode int
	Err      error // nil when the shell exited 0
}

// runStep runs script with `sh -e` in its own process group, in dir, with env,
// and copies its merged stdout and stderr to out. It returns when the shell has
// exited and its output is drained. Cancelling ctx, or reaching timeout, kills
// the whole process group (SIGTERM, then SIGKILL after killGrace).
func runStep(ctx context.Context, script, dir string, env []string, timeout time.Duration, out io.Writer) stepResult {
	return runStepTracked(ctx, script, dir, env, timeout, out, nil, nil)
}

// runStepTracked is runStep that also tells onStart the step's process group
// id once it has started, so that an agent killed mid-step can find and kill
// the group when it starts again. With a cgroup g, the shell is born in it
// (cgroup.Group.Spawn): the group holds every process of the step from its
// start, and finds them after a crash. Without one, the shell is held until
// onStart has returned (one more exec of sh). The step runs as the agent's
// own user, unisolated: it is what an agent started with
// --unsafe-shared-user does (runSandboxed is the isolated form).
func runStepTracked(ctx context.Context, script, dir string, env []string, timeout time.Duration, out io.Writer, onStart func(pgid int), g *cgroup.Group) stepResult {
	sandbox.DefaultSignals() // a step gets the signals the agent was started ignoring
	var gate *os.File        // held by the shell until onStart has run
	held := onStart != nil && g == nil
	started := onStart
	if held {
		started = func(pgid int) {
			onStart(pgid)
			// Let the script run (an error means the shell is gone already).
			_, _ = gate.Write([]byte("\n"))
			gate.Close()
		}
	}
	return superviseStep(ctx, timeout, out, started, func(w *os.File) (int, func() stepResult, error) {
		cmd := exec.Command("/bin/sh", "-e", "-c", script)
		if held {
			var err error
			if cmd, gate, err = gatedShell(script); err != nil {
				return 0, nil, err
			}
		}
		cmd.Dir = dir
		cmd.Env = env
		cmd.Stdin = nil
		cmd.Stdout = w
		cmd.Stderr = w
		// Setpgid puts the step and its children in a group we can kill at
		// once; Pdeathsig kills the shell if the agent dies without
		// cleaning up.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		var err error
		if g != nil {
			err = g.Spawn(cmd.SysProcAttr, cmd.Start)
		} else {
			err = cmd.Start()
		}
		if gate != nil {
			cmd.ExtraFiles[0].Close() // the shell's end
		}
		if err != nil {
			if gate != nil {
				gate.Close()
			}
			return 0, nil, fmt.Errorf("start sh: %w", err)
		}
		return cmd.Process.Pid, func() stepResult { return exitResult(cmd.Wait()) }, nil
	})
}

// runSandboxed runs a step in a sandbox (see internal/sandbox): its own PID,
// mount, IPC and UTS namespaces, the data directories hidden, writes limited
// to its workspace and /tmp, an unprivileged identity. With a cgroup g,
// every process of the step is in it from its start. When the shell ends,
// every process it left is killed with it.
func runSandboxed(ctx context.Context, spec sandbox.Spec, timeout time.Duration, out io.Writer, onStart func(pgid int), g *cgroup.Group) stepResult {
	return superviseStep(ctx, timeout, out, onStart, func(w *os.File) (int, func() stepResult, error) {
		c := &sandbox.Cmd{Spec: spec, Stdout: w, Cgroup: g}
		if err := c.Start(); err != nil {
			return 0, nil, err
		}
		return c.Pid(), func() stepResult {
			st, err := c.Wait()
			switch {
			case err != nil:
				return stepResult{ExitCode: -1, Err: err}
			case st.Signal != 0:
				return stepResult{ExitCode: -1, Err: fmt.Errorf("killed by signal %d (%v)", int(st.Signal), st.Signal)}
			case st.Code != 0:
				return stepResult{ExitCode: st.Code, Err: fmt.Errorf("exit status %d", st.Code)}
			}
			return stepResult{}
		}, nil
	})
}

// superviseStep starts a step with start (which gets the write end of the
// output pipe and returns the step's process group id and a function that
// waits for it), copies its output to out, and stops it when ctx ends or
// timeout passes.
func superviseStep(ctx context.Context, timeout time.Duration, out io.Writer, onStart func(pgid int), start func(w *os.File) (int, func() stepResult, error)) stepResult {
	if ctx.Err() != nil {
		// Canceled before it started: it does not start at all.
		return stepResult{ExitCode: -1, Err: context.Cause(ctx)}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return stepResult{ExitCode: -1, Err: fmt.Errorf("pipe: %w", err)}
	}
	pgid, wait, err := start(w)
	w.Close()
	if err != nil {
		r.Close()
		return stepResult{ExitCode: -1, Err: err}
	}
	if onStart != nil {
		onStart(pgid)
	}

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()

	waited := make(chan stepResult, 1)
	go func() { waited <- wait() }()

	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	var stopErr error
	var res stepResult
	select {
	case res = <-waited:
	case <-ctx.Done():
		stopErr = context.Cause(ctx)
		res = killGroup(pgid, waited, copied)
	case <-timer:
		stopErr = fmt.Errorf("step %w after %s", errTimeout, timeout)
		res = killGroup(pgid, waited, copied)
	}
	// Children left behind by the step (backgrounded commands) would hold the
	// output pipe open; the step is over, so its group goes.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		// A process that left the group (setsid) still holds the pipe.
		_ = r.SetReadDeadline(time.Now())
		<-copied
	}
	r.Close()

	if stopErr != nil {
		return stepResult{ExitCode: -1, Err: stopErr}
	}
	return res
}

// exitResult turns the error of exec.Cmd.Wait into a stepResult.
func exitResult(waitErr error) stepResult {
	if waitErr == nil {
		return stepResult{}
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			// ee.Sys() is the raw wait status, not the signal.
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return stepResult{ExitCode: -1, Err: fmt.Errorf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())}
			}
			return stepResult{ExitCode: -1, Err: fmt.Errorf("killed: %v", ee)}
		}
		return stepResult{ExitCode: code, Err: fmt.Errorf("exit status %d", code)}
	}
	return stepResult{ExitCode: -1, Err: waitErr}
}

// gatedShell returns a command that runs script with `sh -e -c`, as runStep
// does, but only once a line is written to gate: the shell first waits on
// its fd 3, then execs the step's shell in the same process (same pid and
// process group). If the gate closes without a line, it exits 125.
func gatedShell(script string) (cmd *exec.Cmd, gate *os.File, err error) {
	gr, gw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	cmd = exec.Command("/bin/sh", "-c", `read -r _ <&3 || exit 125; exec /bin/sh -e -c "$1" 3<&-`, "/bin/sh", script)
	cmd.ExtraFiles = []*os.File{gr} // runStepTracked closes it after Start
	return cmd, gw, nil
}

// killGroup stops a process group: SIGTERM, then SIGKILL after killGrace.
// The grace is for the whole group, not only the shell (which dies on SIGTERM
// at once): it ends early when the shell has exited and the output pipe is
// drained, that is when no process of the step holds the pipe any more.
func killGroup(pgid int, waited <-chan stepResult, drained <-chan struct{}) stepResult {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(killGrace)
	defer grace.Stop()
	var res stepResult
	exited := false
	for !exited || drained != nil {
		select {
		case res = <-waited:
			exited = true
		case <-drained:
			drained = nil
		case <-grace.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			if !exited {
				res = <-waited
			}
			return res
		}
	}
	return res
}

// mergeEnv layers environments: later maps win. The result is sorted.
func mergeEnv(base []string, layers ...map[string]string) []string {
	m := map[string]string{}
	for _, kv := range base {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	for _, l := range layers {
		for k, v := range l {
			m[k] = v
		}
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
