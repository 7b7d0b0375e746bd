package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// CreateRepo stores r, or fails with an error wrapping store.ErrConflict.
func (s *Store) CreateRepo(ctx context.Context, r store.Repo) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO repos ("+schema.RepoCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		schema.RepoArgs(r)...)
	if err != nil {
		return fmt.Errorf("postgres: create repo %s/%s: %w", r.Tenant, r.Name, storeErr(err))
	}
	return nil
}

// GetRepo returns a repository, or an error wrapping store.ErrNotFound.
func (s *Store) GetRepo(ctx context.Context, tenant, name string) (store.Repo, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+schema.RepoCols+" FROM repos WHERE tenant = $1 AND name = $2", tenant, name)
	if err == nil {
		var r store.Repo
		if r, err = pgx.CollectExactlyOneRow(rows, rowTo(schema.ScanRepo)); err == nil {
			return r, nil
		}
	}
	return store.Repo{}, fmt.Errorf("postgres: get repo %s/%s: %w", tenant, name, storeErr(notFound(err)))
}

// ListRepos returns the repositories of a tenant sorted by name.
func (s *Store) ListRepos(ctx context.Context, tenant string) ([]store.Repo, error) {
	rs, err := query(ctx, s.pool, schema.ScanRepo, "SELECT "+schema.RepoCols+" FROM repos WHERE tenant = $1 ORDER BY name", tenant)
	if err != nil {
		return nil, fmt.Errorf("postgres: list repos: %w", storeErr(err))
	}
	return rs, nil
}

// DeleteRepo removes a repository, its deliveries and its firings.
func (s *Store) DeleteRepo(ctx context.Context, tenant, name string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM repos WHERE tenant = $1 AND name = $2", tenant, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		if _, err = tx.Exec(ctx, "DELETE FROM deliveries WHERE tenant = $1 AND repo = $2", tenant, name); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM schedule_firings WHERE tenant = $1 AND repo = $2", tenant, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: delete repo %s/%s: %w", tenant, name, storeErr(err))
	}
	return nil
}

// ClaimDelivery records d unless it was recorded before.
func (s *Store) ClaimDelivery(ctx context.Context, d store.Delivery) (store.Delivery, bool, error) {
	tag, err := s.pool.Exec(ctx, "INSERT INTO deliveries (tenant, repo, id, run_ids, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
		d.Tenant, d.Repo, d.ID, strings.Join(d.RunIDs, " "), schema.EncTime(d.At))
	if err == nil {
		if tag.RowsAffected() == 1 {
			return d, true, nil
		}
		var runs string
		var at int64
		err = s.pool.QueryRow(ctx, "SELECT run_ids, at FROM deliveries WHERE tenant = $1 AND repo = $2 AND id = $3",
			d.Tenant, d.Repo, d.ID).Scan(&runs, &at)
		if err == nil {
			return store.Delivery{Tenant: d.Tenant, Repo: d.Repo, ID: d.ID, RunIDs: strings.Fields(runs), At: schema.DecTime(at)}, false, nil
		}
	}
	return store.Delivery{}, false, fmt.Errorf("postgres: claim delivery %s: %w", d.ID, storeErr(err))
}

// SetDeliveryRuns records the runs a delivery started.
func (s *Store) SetDeliveryRuns(ctx context.Context, tenant, repo, id string, runIDs []string) error {
	tag, err := s.pool.Exec(ctx, "UPDATE deliveries SET run_ids = $1 WHERE tenant = $2 AND repo = $3 AND id = $4",
		strings.Join(runIDs, " "), tenant, repo, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: delivery %s runs: %w", id, storeErr(err))
	}
	return nil
}

// InsertTrigger queues the insert of a run's trigger, after its run's.
func (t *tx) InsertTrigger(tr store.Trigger) error {
	return t.queue(op{
		sql:  "INSERT INTO run_triggers (" + schema.TriggerCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		args: schema.TriggerArgs(tr),
		what: func() string { return "insert trigger of run " + tr.RunID },
	})
}

// GetTriggers returns the triggers of the runs of ids that have one.
func (s *Store) GetTriggers(ctx context.Context, runIDs []string) (map[string]store.Trigger, error) {
	out := make(map[string]store.Trigger)
	if len(runIDs) == 0 {
		return out, nil
	}
	ts, err := query(ctx, s.pool, schema.ScanTrigger, "SELECT "+schema.TriggerCols+" FROM run_triggers WHERE run_id = ANY($1)", runIDs)
	if err != nil {
		return nil, fmt.Errorf("postgres: get triggers: %w", storeErr(err))
	}
	for _, t := range ts {
		out[t.RunID] = t
	}
	return out, nil
}

// AddStatusReport appends a report of a run's commit status.
func (s *Store) AddStatusReport(ctx context.Context, r store.StatusReport) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO status_reports (run_id, seq, state, error, at)
		SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM status_reports WHERE run_id = $1`,
		r.RunID, r.State, r.Error, schema.EncTime(r.At))
	if err != nil {
		return fmt.Errorf("postgres: add status report of run %s: %w", r.RunID, storeErr(err))
	}
	return nil
}

// ListStatusReports returns a run's reports, oldest first.
func (s *Store) ListStatusReports(ctx context.Context, runID string) ([]store.StatusReport, error) {
	rs, err := query(ctx, s.pool, schema.ScanStatusReport, "SELECT run_id, state, error, at FROM status_reports WHERE run_id = $1 ORDER BY seq", runID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list status reports: %w", storeErr(err))
	}
	return rs, nil
}

// InsertRunKey queues the insert of a run's idempotency key, after its run's.
func (t *tx) InsertRunKey(k store.RunKey) error {
	return t.queue(op{
		sql:  "INSERT INTO run_keys (tenant, idem_key, run_id, created_at) VALUES ($1, $2, $3, $4)",
		args: []any{k.Tenant, k.Key, k.RunID, schema.EncTime(k.CreatedAt)},
		what: func() string { return "insert key of run " + k.RunID },
	})
}

// RunByKey returns the run that a submission with key made in tenant.
func (s *Store) RunByKey(ctx context.Context, tenant, key string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, "SELECT run_id FROM run_keys WHERE tenant = $1 AND idem_key = $2", tenant, key).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("postgres: run of key %q: %w", key, storeErr(notFound(err)))
	}
	return id, nil
}
