package agent

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/sandbox"
)

// cpuTime is the CPU time (user and system) used so far by this process and
// its waited-for children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// benchStep runs `true` as a step b.N times and reports the CPU time per
// step beside the wall time.
func benchStep(b *testing.B, run func() stepResult) {
	cpu0 := cpuTime()
	for b.Loop() {
		if res := run(); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
}

// BenchmarkStepUnisolated is a one-line step as the agent's own user.
func BenchmarkStepUnisolated(b *testing.B) {
	dir := b.TempDir()
	benchStep(b, func() stepResult {
		return runStepTracked(context.Background(), "true", dir, testEnv, 0, io.Discard, nil, nil)
	})
}

// BenchmarkStepSandboxed is the same step in a sandbox (namespaces, mounts,
// Landlock, an unprivileged uid when root).
func BenchmarkStepSandboxed(b *testing.B) {
	ws, tmp := b.TempDir(), b.TempDir()
	if os.Geteuid() == 0 {
		for _, d := range []string{ws, tmp} {
			if err := os.Chown(d, DefaultStepUIDs.First, DefaultStepUIDs.First); err != nil {
				b.Fatal(err)
			}
		}
	}
	spec := sandbox.Spec{Script: "true", Workspace: ws, Tmp: tmp, Env: testEnv, Hide: []string{b.TempDir()},
		UID: DefaultStepUIDs.First, GID: DefaultStepUIDs.First}
	benchStep(b, func() stepResult {
		return runSandboxed(context.Background(), spec, 0, io.Discard, nil, nil)
	})
}
