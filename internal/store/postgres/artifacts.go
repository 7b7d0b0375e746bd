package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// PutArtifact records an object; store.ErrConflict if its ID exists.
func (s *Store) PutArtifact(ctx context.Context, a store.Artifact) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO artifacts (`+schema.ArtifactCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		schema.ArtifactArgs(a)...)
	if err != nil {
		return fmt.Errorf("postgres: put artifact %s: %w", a.ID, storeErr(err))
	}
	return nil
}

// ListArtifacts returns the records that match f, newest first.
func (s *Store) ListArtifacts(ctx context.Context, f store.ArtifactFilter) ([]store.Artifact, error) {
	where, args := schema.ArtifactWhere(f, func(n int) string { return "$" + strconv.Itoa(n) }, schema.EncTime(f.ExpiredAt))
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	args = append(args, limit)
	q := `SELECT ` + schema.ArtifactCols + ` FROM artifacts` + where + ` ORDER BY created_at DESC, id LIMIT $` + strconv.Itoa(len(args))
	out, err := query(ctx, s.pool, schema.ScanArtifact, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list artifacts: %w", storeErr(err))
	}
	return out, nil
}

// DeleteArtifact removes a record.
func (s *Store) DeleteArtifact(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM artifacts WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete artifact %s: %w", id, storeErr(err))
	}
	return nil
}

// ArtifactBytes is the size of every object of a tenant.
func (s *Store) ArtifactBytes(ctx context.Context, tenant string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(SUM(size), 0)::BIGINT FROM artifacts WHERE tenant = $1`, tenant).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: artifact bytes of %s: %w", tenant, storeErr(err))
	}
	return n, nil
}
