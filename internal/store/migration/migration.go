// Package migration reads the versioned schema migrations that the SQL
// stores embed: files named NNNN_description.sql, applied in order of their
// version. Each store applies them with its own SQL dialect and records them
// in its own schema_migrations table; this package only reads and orders them.
//
// Versions start at 1 and are unique. They may have gaps: branches developed
// side by side each take a number, and a database gets every migration it
// lacks, in order, whatever numbers it already has (so 0004 merged after a
// database took 0005 is still applied). A migration, once released, is never
// edited: changes go into a new file.
package migration

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Parse reads the migrations in dir of fsys (other files than *.sql are
// ignored) and returns them ordered by version. It fails if there are none,
// if a name is not NNNN_description.sql, if two share a version, or if the
// lowest version is not 1.
func Parse(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %s: name is not NNNN_description.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	if len(ms) == 0 {
		return nil, errors.New("migrations: none found")
	}
	if ms[0].Version != 1 {
		return nil, fmt.Errorf("migrations: %s: version %d, want 1 (versions start at 1)", ms[0].Name, ms[0].Version)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations: %s and %s: duplicate version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}
