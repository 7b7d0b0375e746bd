package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// The cases of this file are about Update itself: what a batch does when it
// fails, panics, is canceled or races others.

func testMissingParents(t *testing.T, s store.Store) {
	ctx := context.Background()
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")) })
	for name, fn := range map[string]func(tx store.Tx) error{
		"InsertJobs": func(tx store.Tx) error {
			return tx.InsertJobs([]store.Job{newJob("no-such-run", "a", 0, state.JobQueued)})
		},
		"UpsertAttempt": func(tx store.Tx) error { return tx.UpsertAttempt(store.Attempt{JobID: "no-such-job", N: 1}) },
		"AppendLogs": func(tx store.Tx) error {
			return tx.AppendLogs([]store.LogChunk{{JobID: "no-such-job", Attempt: 1, Seq: 1}})
		},
	} {
		if err := s.Update(ctx, fn); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s with a missing parent: %v, want ErrNotFound", name, err)
		}
	}
}

// testFailedStatementRollsBackTheBatch: the statements before the one that
// fails are not committed either, and the store takes the next batch.
func testFailedStatementRollsBackTheBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")) })
	err := s.Update(ctx, func(tx store.Tx) error {
		return errors.Join(
			tx.InsertRun(newRun(runID(2), state.RunQueued, "acme")),
			tx.InsertJobs([]store.Job{newJob(runID(2), "a", 0, state.JobQueued)}),
			tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")), // a conflict
			tx.InsertRun(newRun(runID(3), state.RunQueued, "acme")),
		)
	})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), runID(1)) {
		t.Fatalf("Update: %v, want ErrConflict naming %s", err, runID(1))
	}
	for _, id := range []string{runID(2), runID(3)} {
		if _, err := s.GetRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRun(%s) after the failed batch: %v, want ErrNotFound", id, err)
		}
	}
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(4), state.RunQueued, "acme")) })
}

// testTxAfterUpdate: a Tx kept past its Update writes nothing.
func testTxAfterUpdate(t *testing.T, s store.Store) {
	var kept store.Tx
	Update(t, s, func(tx store.Tx) error {
		kept = tx
		return nil
	})
	if err := kept.InsertRun(newRun(runID(1), state.RunQueued, "acme")); err == nil {
		t.Error("InsertRun on a Tx kept after Update: no error")
	}
	if _, err := s.GetRun(context.Background(), runID(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun = %v, want ErrNotFound", err)
	}
}

func testUpdatePanicRollsBack(t *testing.T, s store.Store) {
	ctx := context.Background()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Update did not propagate fn's panic")
			}
		}()
		_ = s.Update(ctx, func(tx store.Tx) error {
			if err := tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if _, err := s.GetRun(ctx, runID(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun after a panicking Update = %v, want ErrNotFound", err)
	}
	// Whatever Update holds (a mutex, a connection) was released.
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(2), state.RunQueued, "acme")) })
}

func testUpdateCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")); err != nil {
			return err
		}
		cancel()
		return tx.InsertRun(newRun(runID(2), state.RunQueued, "acme"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a context canceled midway: %v, want context.Canceled", err)
	}
	if _, err := s.GetRun(context.Background(), runID(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun after a canceled Update = %v, want ErrNotFound", err)
	}
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(3), state.RunQueued, "acme")) })
}

// testCloseTwice closes the store; the suite's cleanup closes it again and
// fails the case if that second Close returns an error.
func testCloseTwice(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentUpdates: many goroutines write through one Store while
// others read; every Update commits and every read succeeds (no "database
// is locked", no serialization failure left to the caller).
func testConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers, readers, rounds, jobsPerRun = 8, 4, 25, 4
	errc := make(chan error, writers+readers)

	stop := make(chan struct{})
	var rg sync.WaitGroup
	for g := range readers {
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				runs, err := s.ListRuns(ctx, store.RunFilter{Limit: 10})
				if err == nil && len(runs) > 0 {
					_, err = s.ListJobs(ctx, runs[0].ID)
				}
				if err == nil {
					_, _, err = s.ActiveRuns(ctx)
				}
				if err == nil {
					_, err = s.CountRuns(ctx)
				}
				if err == nil {
					_, err = s.ReadLogs(ctx, fmt.Sprintf("run-%d-0.j0", g), 0, 0, 100)
				}
				if err != nil {
					errc <- fmt.Errorf("reader %d: %w", g, err)
					return
				}
			}
		})
	}

	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range rounds {
				if err := s.Update(ctx, SubmitAndStart(fmt.Sprintf("run-%d-%d", g, i), jobsPerRun, fmt.Sprintf("w-%d", g))); err != nil {
					errc <- fmt.Errorf("writer %d, round %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	counts, err := s.CountRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[state.RunQueued] != writers*rounds {
		t.Errorf("CountRuns = %v, want %d queued", counts, writers*rounds)
	}
}

// SubmitAndStart is the fn of an Update that submits a run of jobs jobs
// (IDs runID.j0, runID.j1...) and starts them on worker, as the
// orchestrator's batches do.
func SubmitAndStart(runID string, jobs int, worker string) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		run := newRun(runID, state.RunQueued, "acme")
		js := make([]store.Job, jobs)
		for k := range js {
			js[k] = BenchJob(runID, k)
		}
		if err := tx.InsertRun(run); err != nil {
			return err
		}
		if err := tx.InsertJobs(js); err != nil {
			return err
		}
		for _, j := range js {
			j.State = state.JobRunning
			j.Attempt = 1
			j.WorkerID = worker
			if err := tx.UpdateJob(j); err != nil {
				return err
			}
			if err := tx.UpsertAttempt(store.Attempt{JobID: j.ID, N: 1, WorkerID: worker, State: state.AttemptRunning, AssignedAt: at(1)}); err != nil {
				return err
			}
			if err := tx.AppendLogs([]store.LogChunk{{JobID: j.ID, Attempt: 1, Seq: 1, Data: []byte("x"), At: at(1)}}); err != nil {
				return err
			}
		}
		return tx.UpsertWorker(store.Worker{ID: worker, State: state.WorkerBusy, FirstSeen: at(1), LastSeen: at(1)})
	}
}

// BenchJob returns queued job i of run runID, with the ID runID.j<i>.
func BenchJob(runID string, i int) store.Job {
	return store.Job{
		ID: fmt.Sprintf("%s.j%d", runID, i), RunID: runID, Key: fmt.Sprintf("j%d", i), Name: fmt.Sprintf("j%d", i), Index: i,
		State: state.JobQueued, Spec: []byte(`{"steps":[]}`), MaxAttempts: 1, QueuedAt: at(1),
	}
}
