package sqlite

import (
	"context"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// PutArtifact records an object; store.ErrConflict if its ID exists.
func (s *Store) PutArtifact(ctx context.Context, a store.Artifact) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO artifacts (`+schema.ArtifactCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		schema.ArtifactArgs(a)...)
	if err != nil {
		return fmt.Errorf("sqlite: put artifact %s: %w", a.ID, constraintErr(err))
	}
	return nil
}

// ListArtifacts returns the records that match f, newest first.
func (s *Store) ListArtifacts(ctx context.Context, f store.ArtifactFilter) ([]store.Artifact, error) {
	where, args := schema.ArtifactWhere(f, func(int) string { return "?" }, schema.EncTime(f.ExpiredAt))
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	out, err := query(ctx, s.r, schema.ScanArtifact, `SELECT `+schema.ArtifactCols+` FROM artifacts`+where+` ORDER BY created_at DESC, id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list artifacts: %w", err)
	}
	return out, nil
}

// DeleteArtifact removes a record.
func (s *Store) DeleteArtifact(ctx context.Context, id string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM artifacts WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete artifact %s: %w", id, err)
	}
	return nil
}

// ArtifactBytes is the size of every object of a tenant.
func (s *Store) ArtifactBytes(ctx context.Context, tenant string) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE tenant = ?`, tenant).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: artifact bytes of %s: %w", tenant, err)
	}
	return n, nil
}
