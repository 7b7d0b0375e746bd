package sandbox

import (
	"io"
	"strings"
	"syscall"
	"testing"
)

// The behaviours of the PID namespace's init, whichever it is (the static
// init, the shell init, or the re-executed one: the package's tests run
// once each way, see TestShellInitAsRoot and TestReexecutedInitAsRoot).

// TestEveryTerminationSignalReachesTheStepAndItsDaemons sends each signal
// the init passes on to the init (as the agent does to cancel a step): the
// step's shell gets it, and so does a setsid daemon of the step, before
// the namespace dies. (A background job of a non-interactive shell ignores
// SIGINT and SIGQUIT from its start and cannot trap them, so the daemon is
// checked with SIGTERM and SIGHUP.)
func TestEveryTerminationSignalReachesTheStepAndItsDaemons(t *testing.T) {
	for _, sig := range []struct {
		name   string
		sig    syscall.Signal
		daemon bool
	}{{"TERM", syscall.SIGTERM, true}, {"HUP", syscall.SIGHUP, true}, {"INT", syscall.SIGINT, false}, {"QUIT", syscall.SIGQUIT, false}} {
		t.Run(sig.name, func(t *testing.T) {
			ws := workspace(t)
			script := `trap 'echo got-` + sig.name + `; exit 3' ` + sig.name + `
echo up`
			if sig.daemon {
				// The step's trap waits (polling: the daemon's file is the
				// only sign it got the signal; 5 s bound) for the daemon to
				// have written its file, so the daemon's answer is in the
				// output when the step exits and the namespace dies.
				script = `setsid sh -c 'trap "echo daemon-got-$1 > daemon; exit 0" $1; echo > daemon-up; while :; do sleep 0.05; done' daemon ` + sig.name + ` </dev/null >/dev/null 2>&1 &
trap 'i=0; while [ ! -s daemon ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; cat daemon; echo got-` + sig.name + `; exit 3' ` + sig.name + `
i=0; while [ ! -e daemon-up ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
echo up`
			}
			script += `
while :; do sleep 0.05; done`
			c, r := startUp(t, spec(ws, script))
			if err := syscall.Kill(c.Pid(), sig.sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(r)
			st, err := c.Wait()
			want := "got-" + sig.name + "\n"
			if sig.daemon {
				want = "daemon-got-" + sig.name + "\n" + want
			}
			// The shell may first say that its `sleep` was killed
			// ("Terminated"): the signal reached it too.
			if err != nil || st.Code != 3 || !strings.HasSuffix(string(rest), want) {
				t.Fatalf("status %+v, %v, output %q; want exit 3 and output ending %q", st, err, rest, want)
			}
		})
	}
}

// TestKillOfItselfEndsTheStep checks that a step's `kill $$` kills its
// shell (the shell is not the namespace's init, which would ignore it).
func TestKillOfItselfEndsTheStep(t *testing.T) {
	st, out := run(t, &Cmd{Spec: spec(workspace(t), `kill $$; echo survived`)})
	if st.Signal != syscall.SIGTERM || st.Code != -1 || out != "" {
		t.Fatalf("status %+v, output %q; want killed by SIGTERM, no output", st, out)
	}
}

// TestOrphansAreReapedWhileTheStepRuns leaves orphans that exit at once
// (each `true` outlives its parent `sh` or not, either way it ends up the
// child of the namespace's init) and checks that none stays a zombie
// while the step still runs. The shell init does not reap
// (TestShellInitAsRoot leaves this test out).
func TestOrphansAreReapedWhileTheStepRuns(t *testing.T) {
	// The poll loop in the script: the init reaps asynchronously, on its
	// SIGCHLD; 5 s bound. A process may end between the glob and the read
	// of its stat: 2>/dev/null comes first so that the shell's error for
	// the redirection goes there too.
	st, out := run(t, &Cmd{Spec: spec(workspace(t), `for i in 1 2 3 4 5; do sh -c 'true & exit 0'; done
i=0
while :; do
	z=0
	for s in /proc/[0-9]*/stat; do
		read -r l 2>/dev/null < $s || continue
		case "$l" in *") Z "*) z=$((z+1));; esac
	done
	[ $z = 0 ] && break
	i=$((i+1)); [ $i -ge 500 ] && break
	sleep 0.01
done
echo zombies $z`)})
	if st.Code != 0 || out != "zombies 0\n" {
		t.Fatalf("status %+v, output %q; want no zombie left", st, out)
	}
}

// TestShellInitAsRoot runs this package's tests again as root with the
// shell init of the direct start (HODEI_SANDBOX_INIT=shell), the init of
// the direct start on architectures without a static one, except the
// test of reaping, which the shell init does not do.
func TestShellInitAsRoot(t *testing.T) {
	nestedTests(t, "shell", "Orphans")
}
