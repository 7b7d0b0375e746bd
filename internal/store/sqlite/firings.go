package sqlite

import (
	"context"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// ClaimFiring records f unless a firing with its key was recorded.
func (s *Store) ClaimFiring(ctx context.Context, f store.Firing) (bool, error) {
	res, err := s.w.ExecContext(ctx, schema.ClaimFiringSQL, schema.FiringArgs(f)...)
	if err != nil {
		return false, fmt.Errorf("sqlite: claim firing %s %s: %w", f.File, f.At, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// LastFiring returns the latest firing of a schedule.
func (s *Store) LastFiring(ctx context.Context, tenant, repo, file, schedule string) (store.Firing, error) {
	f, err := schema.ScanFiring(s.r.QueryRowContext(ctx, schema.LastFiringSQL, tenant, repo, file, schedule))
	if err != nil {
		return store.Firing{}, fmt.Errorf("sqlite: last firing of %s %s: %w", file, schedule, notFound(err))
	}
	return f, nil
}

// PendingFirings returns the claimed firings whose run was not made.
func (s *Store) PendingFirings(ctx context.Context) ([]store.Firing, error) {
	fs, err := query(ctx, s.r, schema.ScanFiring, schema.PendingFiringsSQL)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending firings: %w", err)
	}
	return fs, nil
}

// SetFiringError records why a firing made no run.
func (s *Store) SetFiringError(ctx context.Context, f store.Firing, msg string) error {
	res, err := s.w.ExecContext(ctx, schema.SetFiringErrorSQL, schema.FiringKey(msg, f)...)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: firing error %s %s: %w", f.File, f.At, err)
	}
	return nil
}

// ListFirings returns the firings of a repository, oldest first.
func (s *Store) ListFirings(ctx context.Context, tenant, repo string) ([]store.Firing, error) {
	fs, err := query(ctx, s.r, schema.ScanFiring, schema.ListFiringsSQL, tenant, repo)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list firings: %w", err)
	}
	return fs, nil
}

// SetFiringRun records the run of a firing, in the run's transaction.
func (t *tx) SetFiringRun(f store.Firing) error {
	if t.done {
		return errTxDone
	}
	_, err := t.tx.ExecContext(t.ctx, schema.SetFiringRunSQL, schema.FiringKey(f.RunID, f)...)
	if err != nil {
		return fmt.Errorf("sqlite: firing of run %s: %w", f.RunID, err)
	}
	return nil
}

// ListAllRepos returns the repositories of every tenant.
func (s *Store) ListAllRepos(ctx context.Context) ([]store.Repo, error) {
	rs, err := query(ctx, s.r, schema.ScanRepo, "SELECT "+schema.RepoCols+" FROM repos ORDER BY tenant, name")
	if err != nil {
		return nil, fmt.Errorf("sqlite: list all repos: %w", err)
	}
	return rs, nil
}
