package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// testReruns: a re-run's record and its carried jobs are stored with its
// run, read back whole, and a second record of the same run conflicts.
func testReruns(t *testing.T, s store.Store) {
	ctx := context.Background()
	old, next := newRun(runID(1), state.RunFailed, "acme"), newRun(runID(2), state.RunQueued, "acme")
	build, test := newJob(next.ID, "build", 0, state.JobSucceeded), newJob(next.ID, "test", 1, state.JobPending)
	rr := store.Rerun{RunID: next.ID, Of: old.ID, FailedOnly: true, Carried: []store.CarriedJob{
		{JobID: build.ID, JobKey: "build", FromRun: old.ID, FromJob: old.ID + "-build", FromAttempt: 2},
	}}
	if _, err := s.GetRerun(ctx, next.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRerun before: got %v, want ErrNotFound", err)
	}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(old); err != nil {
			return err
		}
		if err := tx.InsertRun(next); err != nil {
			return err
		}
		if err := tx.InsertJobs([]store.Job{build, test}); err != nil {
			return err
		}
		return tx.InsertRerun(rr)
	})
	got, err := s.GetRerun(ctx, next.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "GetRerun", got, rr)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.InsertRerun(store.Rerun{RunID: next.ID, Of: old.ID}) })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("second record of a re-run: got %v, want ErrConflict", err)
	}
	plain, err := s.GetRerun(ctx, old.ID)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRerun of a run that re-runs nothing = %+v, %v", plain, err)
	}
}
