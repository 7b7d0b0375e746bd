package storetest

import (
	"context"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// testJobOutputs checks that a job's outputs (migration 0061) are kept by
// insert and by both forms of update, read back by GetJob, ListJobs and
// ActiveRuns, with empty values kept and no outputs read back as none.
func testJobOutputs(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunRunning, "acme")
	build := newJob(r.ID, "build", 0, state.JobSucceeded)
	build.Outputs = map[string]string{"version": "1.2.3", "notes": "line one\nline \"two\"", "empty": ""}
	test := newJob(r.ID, "test", 1, state.JobPending)
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r); err != nil {
			return err
		}
		return tx.InsertJobs([]store.Job{build, test})
	})
	g, err := s.GetJob(ctx, build.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "outputs inserted", g.Outputs, build.Outputs)
	g, err = s.GetJob(ctx, test.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Outputs != nil {
		t.Errorf("a job without outputs reads back %v, want none", g.Outputs)
	}

	// The usual update (same run, key and index).
	test.State = state.JobSucceeded
	test.Outputs = map[string]string{"report": "ok"}
	Update(t, s, func(tx store.Tx) error { return tx.UpdateJob(test) })
	jobs, err := s.ListJobs(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListJobs after an update of the outputs", jobs, []store.Job{build, test})
	_, active, err := s.ActiveRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ActiveRuns", active, []store.Job{build, test})

	// The full replacement (its index changed) keeps them too, and
	// clearing them clears the column.
	build.Index = 5
	build.Outputs = map[string]string{"version": "2.0"}
	test.Outputs = nil
	Update(t, s, func(tx store.Tx) error {
		if err := tx.UpdateJob(build); err != nil {
			return err
		}
		return tx.UpdateJob(test)
	})
	for _, want := range []store.Job{build, test} {
		g, err := s.GetJob(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "job "+want.Key+" after a full update", g, want)
	}
}
