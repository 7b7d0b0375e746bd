package sandbox

import (
	"errors"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
)

// TestStepsGetSignalsTheProcessIgnored starts a shell that traps SIGHUP
// and sends it to itself, from a process that ignores SIGHUP (as under
// nohup): without catchIgnoredSignals the shell inherits the ignored
// disposition, cannot trap it, and exits 0.
func TestStepsGetSignalsTheProcessIgnored(t *testing.T) {
	signal.Ignore(syscall.SIGHUP)
	t.Cleanup(func() { signal.Reset(syscall.SIGHUP) })
	catchIgnoredSignals()
	err := exec.Command("/bin/sh", "-c", `trap 'exit 7' HUP; kill -HUP $$; exit 0`).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("shell's HUP trap: %v, want exit status 7", err)
	}
}
