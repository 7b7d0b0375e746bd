package sqlite

import (
	"context"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// InsertRerun records a re-run and its carried jobs with its run.
func (t *tx) InsertRerun(r store.Rerun) error {
	if t.done {
		return errTxDone
	}
	failed := 0
	if r.FailedOnly {
		failed = 1
	}
	if _, err := t.tx.ExecContext(t.ctx, "INSERT INTO run_reruns (run_id, rerun_of, failed_only) VALUES (?, ?, ?)", r.RunID, r.Of, failed); err != nil {
		return fmt.Errorf("sqlite: insert rerun %s: %w", r.RunID, constraintErr(err))
	}
	for _, c := range r.Carried {
		if _, err := t.tx.ExecContext(t.ctx, "INSERT INTO carried_jobs (job_id, run_id, job_key, from_run, from_job, from_attempt) VALUES (?, ?, ?, ?, ?, ?)",
			c.JobID, r.RunID, c.JobKey, c.FromRun, c.FromJob, c.FromAttempt); err != nil {
			return fmt.Errorf("sqlite: insert carried job %s: %w", c.JobID, constraintErr(err))
		}
	}
	return nil
}

// GetRerun returns what a re-run records.
func (s *Store) GetRerun(ctx context.Context, runID string) (store.Rerun, error) {
	r := store.Rerun{RunID: runID}
	var failed int
	err := s.r.QueryRowContext(ctx, "SELECT rerun_of, failed_only FROM run_reruns WHERE run_id = ?", runID).Scan(&r.Of, &failed)
	if err != nil {
		return store.Rerun{}, fmt.Errorf("sqlite: rerun %s: %w", runID, notFound(err))
	}
	r.FailedOnly = failed != 0
	r.Carried, err = query(ctx, s.r, schema.ScanCarriedJob, "SELECT job_id, job_key, from_run, from_job, from_attempt FROM carried_jobs WHERE run_id = ? ORDER BY job_id", runID)
	if err != nil {
		return store.Rerun{}, fmt.Errorf("sqlite: carried jobs of %s: %w", runID, err)
	}
	return r, nil
}
