package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"time"

	storemigration "github.com/hodei-ci/hodei/internal/store/migration"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// ErrSchemaTooNew is wrapped by the error of Open when the database has a
// schema version newer than this binary knows: it was written by a newer
// Hodei, and this one must not touch it.
var ErrSchemaTooNew = storemigration.ErrSchemaTooNew

// loadMigrations returns the stores' migrations (package migration) in the
// SQLite dialect, ordered by version.
func loadMigrations() ([]storemigration.Migration, error) {
	return storemigration.Load(storemigration.SQLite)
}

// parseMigrations reads the migrations in dir of fsys in the SQLite dialect.
func parseMigrations(fsys fs.FS, dir string) ([]storemigration.Migration, error) {
	return storemigration.Parse(fsys, dir, storemigration.SQLite)
}

// migrate applies the migrations of ms that db lacks (by version, not only
// those above its highest), in order, in one
// transaction, recording each in schema_migrations; so a database is either
// fully migrated or left as it was. It returns the versions it applied.
func migrate(ctx context.Context, db *sql.DB, ms []storemigration.Migration, now func() time.Time) (applied []int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the error that made us roll back matters more
		}
	}()

	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	done, err := appliedVersions(ctx, tx)
	if err != nil {
		return nil, err
	}
	pending, err := storemigration.Pending(ms, done)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, m := range pending {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", m.Version, schema.EncTime(now())); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("migrate: commit: %w", err)
	}
	return applied, nil
}

// appliedVersions reads the versions recorded in schema_migrations.
func appliedVersions(ctx context.Context, tx *sql.Tx) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return done, nil
}
