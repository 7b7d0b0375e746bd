package sandbox

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// DefaultSignals makes the termination signals this process was started
// with ignored (SIGHUP under nohup; SIGINT and SIGQUIT in a background job
// of a non-interactive shell) caught by a handler that drops them. The
// process goes on ignoring them in effect, but a step it starts gets them
// at their default disposition, as in a terminal: execve resets caught
// signals and keeps ignored ones, and a shell cannot trap a signal ignored
// when it started. Steps started by Cmd.Start call it; so must any other
// code that starts a step. It acts once per process.
var DefaultSignals = sync.OnceFunc(catchIgnoredSignals)

func catchIgnoredSignals() {
	var ignored []os.Signal
	for _, s := range []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM} {
		if signal.Ignored(s) {
			ignored = append(ignored, s)
		}
	}
	if len(ignored) > 0 {
		// Never read: a signal that finds the buffer full is dropped.
		signal.Notify(make(chan os.Signal, 1), ignored...)
	}
}
