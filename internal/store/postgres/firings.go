package postgres

import (
	"context"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// ClaimFiring records f unless a firing with its key was recorded.
func (s *Store) ClaimFiring(ctx context.Context, f store.Firing) (bool, error) {
	tag, err := s.pool.Exec(ctx, claimFiringSQL, schema.FiringArgs(f)...)
	if err != nil {
		return false, fmt.Errorf("postgres: claim firing %s %s: %w", f.File, f.At, storeErr(err))
	}
	return tag.RowsAffected() == 1, nil
}

// LastFiring returns the latest firing of a schedule.
func (s *Store) LastFiring(ctx context.Context, tenant, repo, file, schedule string) (store.Firing, error) {
	f, err := schema.ScanFiring(s.pool.QueryRow(ctx, lastFiringSQL, tenant, repo, file, schedule))
	if err != nil {
		return store.Firing{}, fmt.Errorf("postgres: last firing of %s %s: %w", file, schedule, storeErr(notFound(err)))
	}
	return f, nil
}

// PendingFirings returns the claimed firings whose run was not made.
func (s *Store) PendingFirings(ctx context.Context) ([]store.Firing, error) {
	fs, err := query(ctx, s.pool, schema.ScanFiring, schema.PendingFiringsSQL)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending firings: %w", storeErr(err))
	}
	return fs, nil
}

// SetFiringError records why a firing made no run.
func (s *Store) SetFiringError(ctx context.Context, f store.Firing, msg string) error {
	tag, err := s.pool.Exec(ctx, setFiringErrorSQL, schema.FiringKey(msg, f)...)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: firing error %s %s: %w", f.File, f.At, storeErr(err))
	}
	return nil
}

// ListFirings returns the firings of a repository, oldest first.
func (s *Store) ListFirings(ctx context.Context, tenant, repo string) ([]store.Firing, error) {
	fs, err := query(ctx, s.pool, schema.ScanFiring, listFiringsSQL, tenant, repo)
	if err != nil {
		return nil, fmt.Errorf("postgres: list firings: %w", storeErr(err))
	}
	return fs, nil
}

// SetFiringRun queues the record of a firing's run, after its run's
// insert.
func (t *tx) SetFiringRun(f store.Firing) error {
	return t.queue(op{
		sql:  setFiringRunSQL,
		args: schema.FiringKey(f.RunID, f),
		what: func() string { return "record the firing of run " + f.RunID },
	})
}

// ListAllRepos returns the repositories of every tenant.
func (s *Store) ListAllRepos(ctx context.Context) ([]store.Repo, error) {
	rs, err := query(ctx, s.pool, schema.ScanRepo, "SELECT "+schema.RepoCols+" FROM repos ORDER BY tenant, name")
	if err != nil {
		return nil, fmt.Errorf("postgres: list all repos: %w", storeErr(err))
	}
	return rs, nil
}
