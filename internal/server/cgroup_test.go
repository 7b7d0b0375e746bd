package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestLocalWorkersMeasureAttemptsUnlessNoCgroups runs one job on the
// server's in-process workers, with and without Options.NoCgroups: with
// cgroups (root on Linux) the attempt records its peak memory and CPU time;
// without, it records none and still succeeds.
func TestLocalWorkersMeasureAttemptsUnlessNoCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	for _, off := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Start(ctx, Options{
			DataDir: t.TempDir(), NATSListen: "none", LocalWorkers: 1, WorkerTTL: 2 * time.Second,
			HeartbeatInterval: 200 * time.Millisecond, NoCgroups: off,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := s.WaitForWorkers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		run, jobs := runPipeline(t, s, `name: usage
jobs:
  j:
    runs-on: {cpu: 1, memory: 128Mi}
    steps: [{run: 'i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done'}]
`, 30*time.Second)
		atts, err := s.Store.ListAttempts(ctx, jobs["j"].ID)
		s.Close()
		cancel()
		if err != nil || run.State != "succeeded" || len(atts) != 1 {
			t.Fatalf("NoCgroups %v: run %s, attempts %+v, %v", off, run.State, atts, err)
		}
		measured := atts[0].PeakMemory > 0 && atts[0].CPUTime > 0
		if measured == off {
			t.Errorf("NoCgroups %v: attempt usage peak %d, cpu %v", off, atts[0].PeakMemory, atts[0].CPUTime)
		}
	}
}
