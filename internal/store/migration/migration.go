// Package migration holds the versioned schema migrations of the SQL stores
// and reads them for one dialect: files named NNNN_description.sql in
// migrations/, applied in order of their version. Each store applies them
// with its own driver and records them in its own schema_migrations table
// (by version only); this package reads, renders and orders them, and says
// which of them a database lacks (Pending).
//
// Versions start at 1 and are unique. They may have gaps: branches developed
// side by side each take a number, and a database gets every migration it
// lacks, in order, whatever numbers it already has (so 0004 merged after a
// database took 0005 is still applied). A migration, once released, is never
// edited in what it does to a database: changes go into a new file.
//
// # Dialects
//
// One file serves both stores. Its actions, in the braces of text/template
// (but read by this package: text/template would make the linker keep
// every method of every type in the binary, 38 MB of it), name the few
// things SQLite and PostgreSQL spell differently; everything else is SQL
// that both accept and mean the same by:
//
//	{{key}}       text compared and sorted byte by byte (IDs, names in keys
//	              and indexes): TEXT in SQLite, whose default collation is
//	              binary; TEXT COLLATE "C" in PostgreSQL, whatever the
//	              database's locale
//	{{int64}}     a 64-bit integer (times in nanoseconds, sizes): INTEGER in
//	              SQLite, BIGINT in PostgreSQL
//	{{bytes}}     bytes stored as given: BLOB / BYTEA
//	{{textlist}}  a list of strings: TEXT holding a JSON array in SQLite,
//	              TEXT[] in PostgreSQL
//	{{if sqlite}}...{{end}}, {{if postgres}}...{{end}}
//	              SQL for one dialect only (a table option, a function);
//	              they do not nest
//
// A plain INTEGER, TEXT or BIGINT is written as such and means the same in
// both. Rendering a released file must give the SQL it gave when it was
// released, for each dialect; the stores' tests read back the schema.
package migration

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// ErrSchemaTooNew is wrapped by the error of Pending when the database has a
// schema version newer than this binary knows: it was written by a newer
// Hodei, and this one must not touch it.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Dialect is the SQL dialect a migration is rendered for.
type Dialect int

const (
	// SQLite is the dialect of the embedded store (internal/store/sqlite).
	SQLite Dialect = iota + 1
	// PostgreSQL is the dialect of internal/store/postgres.
	PostgreSQL
)

func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case PostgreSQL:
		return "postgres"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// words are the actions of a migration file that d spells its own way.
func (d Dialect) words() (map[string]string, error) {
	switch d {
	case SQLite:
		return map[string]string{"key": "TEXT", "int64": "INTEGER", "bytes": "BLOB", "textlist": "TEXT"}, nil
	case PostgreSQL:
		return map[string]string{"key": `TEXT COLLATE "C"`, "int64": "BIGINT", "bytes": "BYTEA", "textlist": "TEXT[]"}, nil
	}
	return nil, fmt.Errorf("migrations: unknown dialect %v", d)
}

// Migration is one schema change, rendered for one dialect.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// files holds the migrations of both stores, named NNNN_description.sql.
//
//go:embed migrations/*.sql
var files embed.FS

// Load returns the migrations of the stores rendered for d, ordered by
// version.
func Load(d Dialect) ([]Migration, error) {
	return Parse(files, "migrations", d)
}

// Parse reads the migrations in dir of fsys (other files than *.sql are
// ignored), renders them for d and returns them ordered by version. It fails
// if there are none, if a name is not NNNN_description.sql, if two share a
// version, if the lowest version is not 1, or if a file is not a template of
// the actions in the package doc.
func Parse(fsys fs.FS, dir string, d Dialect) ([]Migration, error) {
	words, err := d.words()
	if err != nil {
		return nil, err
	}
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
		sql, err := render(name, string(b), d, words)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: sql})
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

// render replaces the actions of the migration file text (the package
// doc) by what they are in dialect d, whose words are given.
func render(name, text string, d Dialect, words map[string]string) (string, error) {
	var b strings.Builder
	in, keep := "", true // the dialect of the {{if}} block we are in ("": none)
	for {
		before, rest, found := strings.Cut(text, "{{")
		if keep {
			b.WriteString(before)
		}
		if !found {
			break
		}
		action, after, ok := strings.Cut(rest, "}}")
		if !ok {
			return "", fmt.Errorf("migrations: %s: an action without its }}", name)
		}
		text = after
		switch word, ok := words[action]; {
		case ok:
			if keep {
				b.WriteString(word)
			}
		case action == "if sqlite" || action == "if postgres":
			if in != "" {
				return "", fmt.Errorf("migrations: %s: {{%s}} inside {{if %s}}", name, action, in)
			}
			in = strings.TrimPrefix(action, "if ")
			keep = in == d.String()
		case action == "end":
			if in == "" {
				return "", fmt.Errorf("migrations: %s: {{end}} without {{if}}", name)
			}
			in, keep = "", true
		default:
			return "", fmt.Errorf("migrations: %s: unknown action {{%s}}", name, action)
		}
	}
	if in != "" {
		return "", fmt.Errorf("migrations: %s: {{if %s}} without {{end}}", name, in)
	}
	return b.String(), nil
}

// Pending returns the migrations of ms (ordered by version, as Parse returns
// them) whose versions are not in applied, in order. It fails, wrapping
// ErrSchemaTooNew, if applied has a version that ms does not: the database
// was migrated by a newer binary.
func Pending(ms []Migration, applied map[int]bool) ([]Migration, error) {
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
	}
	for v := range applied {
		if !known[v] {
			return nil, fmt.Errorf("database has schema version %d, which this binary does not know (it knows up to %d): %w", v, ms[len(ms)-1].Version, ErrSchemaTooNew)
		}
	}
	var pending []Migration
	for _, m := range ms {
		if !applied[m.Version] {
			pending = append(pending, m)
		}
	}
	return pending, nil
}
