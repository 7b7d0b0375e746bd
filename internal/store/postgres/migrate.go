package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hodei-ci/hodei/internal/store/migration"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// ErrSchemaTooNew is wrapped by the error of Open when the database has a
// schema version newer than this binary knows: it was written by a newer
// Hodei, and this one must not touch it.
var ErrSchemaTooNew = migration.ErrSchemaTooNew

// migrateLockKey is the key of the advisory lock that migrate holds, so that
// servers started together against one database migrate it one at a time.
const migrateLockKey = 0x686f646569 // "hodei"

// loadMigrations returns the stores' migrations (package migration) in the
// PostgreSQL dialect, ordered by version.
func loadMigrations() ([]migration.Migration, error) {
	return migration.Load(migration.PostgreSQL)
}

// migrate applies the migrations of ms that the database lacks (by version,
// not only those above its highest), in order, in one transaction, recording
// each in schema_migrations; so a database is either fully migrated or left
// as it was. It returns the versions it applied.
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration.Migration, now func() time.Time) (applied []int, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx) // the error that made us roll back matters more
		}
	}()

	// Held until the transaction ends: a second server waits here, then
	// finds every migration applied.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockKey)); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at BIGINT  NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	done := map[int]bool{}
	for _, v := range versions {
		done[v] = true
	}
	pending, err := migration.Pending(ms, done)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, m := range pending {
		// Exec without arguments runs the file with the simple protocol,
		// which accepts several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", m.Version, schema.EncTime(now())); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrate: commit: %w", err)
	}
	return applied, nil
}
