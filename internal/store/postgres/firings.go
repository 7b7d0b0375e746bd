package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

const firingCols = "tenant, repo, file, schedule, at, kind, run_id, error, recorded_at"

// pendingFirings is the condition of the partial index
// schedule_firings_pending, spelled as it is there so that the query
// uses it (kind is store.FiringRun).
const pendingFirings = "kind = 'run' AND run_id = '' AND error = ''"

func scanFiring(sc schema.Scanner) (store.Firing, error) {
	var f store.Firing
	var at, rec int64
	err := sc.Scan(&f.Tenant, &f.Repo, &f.File, &f.Schedule, &at, &f.Kind, &f.RunID, &f.Error, &rec)
	f.At, f.RecordedAt = schema.DecTime(at), schema.DecTime(rec)
	return f, err
}

// ClaimFiring records f unless a firing with its key was recorded.
func (s *Store) ClaimFiring(ctx context.Context, f store.Firing) (bool, error) {
	tag, err := s.pool.Exec(ctx, "INSERT INTO schedule_firings ("+firingCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
		f.Tenant, f.Repo, f.File, f.Schedule, schema.EncTime(f.At), f.Kind, f.RunID, f.Error, schema.EncTime(f.RecordedAt))
	if err != nil {
		return false, fmt.Errorf("postgres: claim firing %s %s: %w", f.File, f.At, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LastFiring returns the latest firing of a schedule.
func (s *Store) LastFiring(ctx context.Context, tenant, repo, file, schedule string) (store.Firing, error) {
	f, err := scanFiring(s.pool.QueryRow(ctx, "SELECT "+firingCols+" FROM schedule_firings WHERE tenant = $1 AND repo = $2 AND file = $3 AND schedule = $4 ORDER BY at DESC LIMIT 1",
		tenant, repo, file, schedule))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Firing{}, fmt.Errorf("postgres: last firing of %s %s: %w", file, schedule, store.ErrNotFound)
	}
	if err != nil {
		return store.Firing{}, fmt.Errorf("postgres: last firing of %s %s: %w", file, schedule, err)
	}
	return f, nil
}

// PendingFirings returns the claimed firings whose run was not made.
func (s *Store) PendingFirings(ctx context.Context) ([]store.Firing, error) {
	fs, err := query(ctx, s.pool, scanFiring, "SELECT "+firingCols+" FROM schedule_firings WHERE "+pendingFirings+" ORDER BY at")
	if err != nil {
		return nil, fmt.Errorf("postgres: pending firings: %w", err)
	}
	return fs, nil
}

// SetFiringError records why a firing made no run.
func (s *Store) SetFiringError(ctx context.Context, f store.Firing, msg string) error {
	tag, err := s.pool.Exec(ctx, "UPDATE schedule_firings SET error = $1 WHERE tenant = $2 AND repo = $3 AND file = $4 AND schedule = $5 AND at = $6",
		msg, f.Tenant, f.Repo, f.File, f.Schedule, schema.EncTime(f.At))
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: firing error %s %s: %w", f.File, f.At, err)
	}
	return nil
}

// ListFirings returns the firings of a repository, oldest first.
func (s *Store) ListFirings(ctx context.Context, tenant, repo string) ([]store.Firing, error) {
	fs, err := query(ctx, s.pool, scanFiring, "SELECT "+firingCols+" FROM schedule_firings WHERE tenant = $1 AND repo = $2 ORDER BY at, file, schedule", tenant, repo)
	if err != nil {
		return nil, fmt.Errorf("postgres: list firings: %w", err)
	}
	return fs, nil
}

// SetFiringRun queues the record of a firing's run, after its run's
// insert.
func (t *tx) SetFiringRun(f store.Firing) error {
	return t.queue(op{
		sql:  "UPDATE schedule_firings SET run_id = $1 WHERE tenant = $2 AND repo = $3 AND file = $4 AND schedule = $5 AND at = $6",
		args: []any{f.RunID, f.Tenant, f.Repo, f.File, f.Schedule, schema.EncTime(f.At)},
		what: func() string { return "record the firing of run " + f.RunID },
	})
}

// ListAllRepos returns the repositories of every tenant.
func (s *Store) ListAllRepos(ctx context.Context) ([]store.Repo, error) {
	rs, err := query(ctx, s.pool, scanRepo, "SELECT "+repoCols+" FROM repos ORDER BY tenant, name")
	if err != nil {
		return nil, fmt.Errorf("postgres: list all repos: %w", err)
	}
	return rs, nil
}
