package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

// A run at priority -10 waits behind the priority 0 runs queued with it and
// still runs before they are all done: its priority level ages (here one
// level per 500 ms, so it ranks with priority 0 after 5 s and ahead of it
// after 5.5 s) while 30 runs of at least 0.3 s each keep the one worker busy
// for 9 s or more.
func TestNegativePriorityWaitsAndAges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startTestServer(t, Options{
		NATSListen:     "none",
		LocalWorkers:   1,
		WorkerCPUMilli: 1000,
		WorkerTTL:      2 * time.Second,
		SchedulerAging: 500 * time.Millisecond,
		// The blocker waits on a file of the test's directory, which a
		// sandbox hides.
		UnsafeSharedUser: true,
	})
	sub := s.Hub.Subscribe("", 1<<16)
	defer sub.Close()

	// A blocker holds the only worker (1 core) until the file appears.
	gate := filepath.Join(t.TempDir(), "go")
	blocker, err := s.Submit(ctx, "blocker.yaml", []byte(fmt.Sprintf(`name: blocker
jobs:
  hold:
    runs-on: {cpu: 1}
    steps: [{run: "until [ -e %s ]; do sleep 0.05; done"}]
`, gate)), "")
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := s.Store.GetRun(ctx, blocker.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !r.StartedAt.IsZero() {
			break
		}
		select {
		case <-sub.C:
		case <-ctx.Done():
			t.Fatal("the blocker never started")
		}
	}
	var normal []store.Run
	for i := range 30 {
		r, err := s.Submit(ctx, "normal.yaml", []byte(fmt.Sprintf(`name: normal-%02d
jobs:
  work:
    runs-on: {cpu: 1}
    steps: [{run: "sleep 0.3"}]
`, i)), "")
		if err != nil {
			t.Fatal(err)
		}
		normal = append(normal, r)
	}
	low, err := s.Submit(ctx, "nightly.yaml", []byte(`name: nightly
priority: -10
jobs:
  batch:
    runs-on: {cpu: 1}
    steps: [{run: "true"}]
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Wait for every run to end: check the store after each notification.
	pending := append([]store.Run{blocker, low}, normal...)
	for len(pending) > 0 {
		r, err := s.Store.GetRun(ctx, pending[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State.Final() {
			pending = pending[1:]
			continue
		}
		select {
		case <-sub.C:
		case <-ctx.Done():
			t.Fatalf("run %s did not end: %s", r.ID, r.State)
		}
	}

	lowRun, _ := loadRun(t, s, low.ID)
	if lowRun.State != "succeeded" {
		t.Fatalf("the priority -10 run ended %s", lowRun.State)
	}
	before, after := 0, 0
	for _, r := range normal {
		got, _ := loadRun(t, s, r.ID)
		if got.StartedAt.Before(lowRun.StartedAt) {
			before++
		} else {
			after++
		}
	}
	if before == 0 {
		t.Errorf("the priority -10 run started first, before every priority 0 run queued with it")
	}
	if after == 0 {
		t.Errorf("the priority -10 run started after all %d priority 0 runs: it did not age", len(normal))
	}
	t.Logf("priority -10 run started after %d priority 0 runs, before %d", before, after)
}
