package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// CreateRepo stores r, or fails with an error wrapping store.ErrConflict.
func (s *Store) CreateRepo(ctx context.Context, r store.Repo) error {
	_, err := s.w.ExecContext(ctx, "INSERT INTO repos ("+schema.RepoCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		schema.RepoArgs(r)...)
	if err != nil {
		return fmt.Errorf("sqlite: create repo %s/%s: %w", r.Tenant, r.Name, constraintErr(err))
	}
	return nil
}

// GetRepo returns a repository, or an error wrapping store.ErrNotFound.
func (s *Store) GetRepo(ctx context.Context, tenant, name string) (store.Repo, error) {
	r, err := schema.ScanRepo(s.r.QueryRowContext(ctx, "SELECT "+schema.RepoCols+" FROM repos WHERE tenant = ? AND name = ?", tenant, name))
	if err != nil {
		return store.Repo{}, fmt.Errorf("sqlite: get repo %s/%s: %w", tenant, name, notFound(err))
	}
	return r, nil
}

// ListRepos returns the repositories of a tenant sorted by name.
func (s *Store) ListRepos(ctx context.Context, tenant string) ([]store.Repo, error) {
	rs, err := query(ctx, s.r, schema.ScanRepo, "SELECT "+schema.RepoCols+" FROM repos WHERE tenant = ? ORDER BY name", tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list repos: %w", err)
	}
	return rs, nil
}

// DeleteRepo removes a repository, its deliveries and its firings.
func (s *Store) DeleteRepo(ctx context.Context, tenant, name string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: delete repo: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	res, err := tx.ExecContext(ctx, "DELETE FROM repos WHERE tenant = ? AND name = ?", tenant, name)
	if err == nil {
		err = affected(res)
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, "DELETE FROM deliveries WHERE tenant = ? AND repo = ?", tenant, name)
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, "DELETE FROM schedule_firings WHERE tenant = ? AND repo = ?", tenant, name)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete repo %s/%s: %w", tenant, name, err)
	}
	return nil
}

// ClaimDelivery records d unless it was recorded before.
func (s *Store) ClaimDelivery(ctx context.Context, d store.Delivery) (store.Delivery, bool, error) {
	res, err := s.w.ExecContext(ctx, "INSERT INTO deliveries (tenant, repo, id, run_ids, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
		d.Tenant, d.Repo, d.ID, strings.Join(d.RunIDs, " "), schema.EncTime(d.At))
	if err == nil {
		if n, _ := res.RowsAffected(); n == 1 {
			return d, true, nil
		}
		var runs string
		var at int64
		err = s.w.QueryRowContext(ctx, "SELECT run_ids, at FROM deliveries WHERE tenant = ? AND repo = ? AND id = ?",
			d.Tenant, d.Repo, d.ID).Scan(&runs, &at)
		if err == nil {
			return store.Delivery{Tenant: d.Tenant, Repo: d.Repo, ID: d.ID, RunIDs: strings.Fields(runs), At: schema.DecTime(at)}, false, nil
		}
	}
	return store.Delivery{}, false, fmt.Errorf("sqlite: claim delivery %s: %w", d.ID, err)
}

// SetDeliveryRuns records the runs a delivery started.
func (s *Store) SetDeliveryRuns(ctx context.Context, tenant, repo, id string, runIDs []string) error {
	res, err := s.w.ExecContext(ctx, "UPDATE deliveries SET run_ids = ? WHERE tenant = ? AND repo = ? AND id = ?",
		strings.Join(runIDs, " "), tenant, repo, id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delivery %s runs: %w", id, err)
	}
	return nil
}

// InsertTrigger records the trigger of a run inserted in the same
// transaction.
func (t *tx) InsertTrigger(tr store.Trigger) error {
	if t.done {
		return errTxDone
	}
	_, err := t.tx.ExecContext(t.ctx, "INSERT INTO run_triggers ("+schema.TriggerCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		schema.TriggerArgs(tr)...)
	if err != nil {
		return fmt.Errorf("sqlite: insert trigger of run %s: %w", tr.RunID, constraintErr(err))
	}
	return nil
}

// GetTriggers returns the triggers of the runs of ids that have one.
func (s *Store) GetTriggers(ctx context.Context, runIDs []string) (map[string]store.Trigger, error) {
	out := make(map[string]store.Trigger)
	for len(runIDs) > 0 {
		n := min(len(runIDs), 500)
		args := make([]any, n)
		for i, id := range runIDs[:n] {
			args[i] = id
		}
		ts, err := query(ctx, s.r, schema.ScanTrigger, "SELECT "+schema.TriggerCols+" FROM run_triggers WHERE run_id IN (?"+strings.Repeat(", ?", n-1)+")", args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: get triggers: %w", err)
		}
		for _, t := range ts {
			out[t.RunID] = t
		}
		runIDs = runIDs[n:]
	}
	return out, nil
}

// AddStatusReport appends a report of a run's commit status.
func (s *Store) AddStatusReport(ctx context.Context, r store.StatusReport) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO status_reports (run_id, seq, state, error, at)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM status_reports WHERE run_id = ?`,
		r.RunID, r.State, r.Error, schema.EncTime(r.At), r.RunID)
	if err != nil {
		return fmt.Errorf("sqlite: add status report of run %s: %w", r.RunID, constraintErr(err))
	}
	return nil
}

// ListStatusReports returns a run's reports, oldest first.
func (s *Store) ListStatusReports(ctx context.Context, runID string) ([]store.StatusReport, error) {
	rs, err := query(ctx, s.r, schema.ScanStatusReport, "SELECT run_id, state, error, at FROM status_reports WHERE run_id = ? ORDER BY seq", runID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list status reports: %w", err)
	}
	return rs, nil
}

// InsertRunKey records the idempotency key of a run.
func (t *tx) InsertRunKey(k store.RunKey) error {
	if t.done {
		return errTxDone
	}
	_, err := t.tx.ExecContext(t.ctx, "INSERT INTO run_keys (tenant, idem_key, run_id, created_at) VALUES (?, ?, ?, ?)",
		k.Tenant, k.Key, k.RunID, schema.EncTime(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: insert key of run %s: %w", k.RunID, constraintErr(err))
	}
	return nil
}

// RunByKey returns the run that a submission with key made in tenant.
func (s *Store) RunByKey(ctx context.Context, tenant, key string) (string, error) {
	var id string
	err := s.r.QueryRowContext(ctx, "SELECT run_id FROM run_keys WHERE tenant = ? AND idem_key = ?", tenant, key).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("sqlite: run of key %q: %w", key, notFound(err))
	}
	return id, nil
}
