package postgres

import (
	"context"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// InsertRerun queues the record of a re-run and its carried jobs, after
// its run's and jobs' inserts.
func (t *tx) InsertRerun(r store.Rerun) error {
	failed := 0
	if r.FailedOnly {
		failed = 1
	}
	if err := t.queue(op{
		sql:  "INSERT INTO run_reruns (run_id, rerun_of, failed_only) VALUES ($1, $2, $3)",
		args: []any{r.RunID, r.Of, failed},
		what: func() string { return "insert rerun " + r.RunID },
	}); err != nil {
		return err
	}
	for _, c := range r.Carried {
		if err := t.queue(op{
			sql:  "INSERT INTO carried_jobs (job_id, run_id, job_key, from_run, from_job, from_attempt) VALUES ($1, $2, $3, $4, $5, $6)",
			args: []any{c.JobID, r.RunID, c.JobKey, c.FromRun, c.FromJob, c.FromAttempt},
			what: func() string { return "insert carried job " + c.JobID },
		}); err != nil {
			return err
		}
	}
	return nil
}

// GetRerun returns what a re-run records.
func (s *Store) GetRerun(ctx context.Context, runID string) (store.Rerun, error) {
	r := store.Rerun{RunID: runID}
	var failed int
	err := s.pool.QueryRow(ctx, "SELECT rerun_of, failed_only FROM run_reruns WHERE run_id = $1", runID).Scan(&r.Of, &failed)
	if err != nil {
		return store.Rerun{}, fmt.Errorf("postgres: rerun %s: %w", runID, storeErr(notFound(err)))
	}
	r.FailedOnly = failed != 0
	r.Carried, err = query(ctx, s.pool, schema.ScanCarriedJob, "SELECT job_id, job_key, from_run, from_job, from_attempt FROM carried_jobs WHERE run_id = $1 ORDER BY job_id", runID)
	if err != nil {
		return store.Rerun{}, fmt.Errorf("postgres: carried jobs of %s: %w", runID, storeErr(err))
	}
	return r, nil
}
