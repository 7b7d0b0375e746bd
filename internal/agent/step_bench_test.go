package agent

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/hodei-ci/hodei/internal/proctest"
	"github.com/hodei-ci/hodei/internal/sandbox"
)

// benchStep runs `true` as a step b.N times and reports the CPU time per
// step beside the wall time.
func benchStep(b *testing.B, run func() stepResult) {
	proctest.BenchCPU(b, func() error { return run().Err })
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
