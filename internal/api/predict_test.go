package api_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// waitsFor is a pipeline whose one job runs until the file gate exists.
func waitsFor(gate string) string {
	return fmt.Sprintf(`name: predicted
jobs:
  build:
    steps:
      - run: |
          while [ ! -f %q ]; do sleep 0.02; done
`, gate)
}

func TestPredictedDurationAndETA(t *testing.T) {
	e := startUnisolated(t)
	ctx := testCtx(t, 60*time.Second)
	dir := t.TempDir()

	// The first run teaches the scheduler how long "predicted/build" takes:
	// the test holds it for at least 400ms.
	gate1 := filepath.Join(dir, "gate1")
	r1, err := e.c.Submit(ctx, "p.yaml", []byte(waitsFor(gate1)), "")
	if err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	for {
		run, err := e.c.GetRun(ctx, r1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if run.Jobs[0].State == "running" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("first run never started")
		case <-time.After(10 * time.Millisecond):
		}
	}
	for time.Since(held) < 400*time.Millisecond {
		<-time.After(400*time.Millisecond - time.Since(held)) // the hold is the duration under test
	}
	openGate(t, gate1)
	_, end := e.follow(t, ctx, r1.ID, "")
	if end.State != "succeeded" {
		t.Fatalf("first run %s", end.State)
	}
	ran := end.Jobs[0].Duration()

	// The second run's job, while it runs, carries the learned prediction
	// and an ETA after its start.
	gate2 := filepath.Join(dir, "gate2")
	r2, err := e.c.Submit(ctx, "p.yaml", []byte(waitsFor(gate2)), "")
	if err != nil {
		t.Fatal(err)
	}
	var job wire.Job
	for {
		run, err := e.c.GetRun(ctx, r2.ID)
		if err != nil {
			t.Fatal(err)
		}
		job = run.Jobs[0]
		if job.State == "running" && job.ETA != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("second run's job never showed a prediction while running: %+v", job)
		case <-time.After(10 * time.Millisecond):
		}
	}
	openGate(t, gate2)
	got := time.Duration(job.PredictedSeconds * float64(time.Second))
	if got < ran/2 || got > ran*2 {
		t.Errorf("predicted %s for a job that ran %s last time", got, ran)
	}
	if job.StartedAt == nil || job.ETA.Before(*job.StartedAt) {
		t.Errorf("ETA %v is before the start %v", job.ETA, job.StartedAt)
	}
	_, end2 := e.follow(t, ctx, r2.ID, "")
	for _, j := range end2.Jobs {
		if j.PredictedSeconds != 0 || j.ETA != nil {
			t.Errorf("a finished job still shows a prediction: %+v", j)
		}
	}
}
