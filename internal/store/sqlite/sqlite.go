// Package sqlite is the embedded implementation of store.Store: one SQLite
// database file, opened with the pure-Go driver modernc.org/sqlite so that the
// server builds with CGO_ENABLED=0.
//
// # Connections
//
// A Store holds two connection pools on the same file. The writer is a single
// connection (MaxOpenConns 1): every Update runs on it, so write transactions
// are serialised in Go, inside the process, and never contend with each other
// for SQLite's write lock, which is what makes "database is locked"
// (SQLITE_BUSY) impossible between Updates of one Store. Its transactions
// start with BEGIN IMMEDIATE (the driver's _txlock=immediate), so the write
// lock is taken up front rather than on the first write, where a lost race
// could not be retried. The readers are a separate pool of read-only
// connections (mode=ro). The database is in WAL mode, where readers read the
// last committed snapshot without taking locks that a writer waits on, so
// reads never block behind a long write transaction and vice versa.
//
// # Durability
//
// The database runs with journal_mode=WAL and synchronous=NORMAL. In that
// combination a commit appends to the WAL file with write(2) but does not
// fsync it; the WAL is fsynced when it is checkpointed into the database.
// A committed transaction therefore survives a crash of the process (kill -9,
// a panic, the OOM killer), because its pages are in the operating system's
// page cache, which is what Hodei promises. It may be lost, though never
// corrupted, if the whole machine loses power or the kernel crashes before
// the next checkpoint; synchronous=FULL would cover that at the price of an
// fsync per commit.
//
// OpenWith with Options.NoSync runs the same database with synchronous=OFF:
// nothing is ever fsynced. It is for a data directory thrown away when the
// process ends (`hodei run`), where a power loss loses the directory anyway.
//
// # Encoding
//
// Times are stored as INTEGER unix nanoseconds and read back in UTC; 0 stores
// the zero time.Time (so the instant 1970-01-01T00:00:00Z itself reads back as
// the zero time), and times outside the years 1678 to 2261 cannot be
// represented. Worker labels are a JSON array. Run.Source and Job.Spec are
// BLOBs, stored as given.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	storemigration "github.com/hodei-ci/hodei/internal/store/migration"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection before failing with SQLITE_BUSY. Within one Store that only
// happens in rare moments of WAL bookkeeping; it also covers another process
// (a backup tool, say) holding the database briefly.
const busyTimeout = 10 * time.Second

// walSizeLimit caps the size the WAL file is truncated back to after a
// checkpoint, so that one burst of writes does not leave a huge file behind.
const walSizeLimit = 64 << 20

// Store is a store.Store kept in one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	path string
	w    *sql.DB // one connection; every write transaction
	r    *sql.DB // read-only connections

	wstmt [numWriteStmts]*sql.Stmt // prepared on w, used through tx.Stmt

	getRunStmt       *sql.Stmt
	getJobStmt       *sql.Stmt
	listJobsStmt     *sql.Stmt
	listAttemptsStmt *sql.Stmt
	readLogsStmt     *sql.Stmt
	listWorkersStmt  *sql.Stmt
	countRunsStmt    *sql.Stmt

	applied []int // migration versions applied by Open, for tests

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it and its parent directory if
// they do not exist, and brings its schema up to date. It fails with an error
// wrapping ErrSchemaTooNew if the database was migrated by a newer binary.
func Open(path string) (*Store, error) {
	return OpenWith(path, Options{})
}

// Options are how OpenWith opens a database.
type Options struct {
	// NoSync never fsyncs (synchronous=OFF): a crash of the process still
	// loses nothing committed, a crash of the machine may corrupt the
	// database. Only for a database deleted when its process ends.
	NoSync bool
}

// OpenWith is Open with options.
func OpenWith(path string, o Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ms, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	s := &Store{path: abs}
	if err := s.open(ms, o); err != nil {
		_ = s.closeAll() // the error of open is the one to report
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// dsn returns a file: URI for path with the given query, escaping the path so
// that characters such as '?' and '#' in directory names survive.
func dsn(path string, q url.Values) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // file:///C:/dir/hodei.db on Windows
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

func (s *Store) open(ms []storemigration.Migration, o Options) error {
	ctx := context.Background()
	busy := fmt.Sprint(busyTimeout.Milliseconds())

	wq := url.Values{}
	wq.Set("mode", "rwc")
	wq.Set("_txlock", "immediate")
	wq.Set("_busy_timeout", busy)
	wq.Set("_journal_mode", "WAL")
	wq.Set("_synchronous", "NORMAL")
	if o.NoSync {
		wq.Set("_synchronous", "OFF")
		// Also before journal_mode=WAL, which the driver sets first and
		// which writes a new database through a rollback journal.
		wq.Add("_pragma", "synchronous(OFF)")
	}
	wq.Set("_foreign_keys", "on")
	wq.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walSizeLimit))
	w, err := sql.Open("sqlite", dsn(s.path, wq))
	if err != nil {
		return err
	}
	s.w = w
	// One connection, kept for the life of the Store: prepared statements stay
	// on it, and no two write transactions ever compete for the lock.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal (does the file system support shared memory?)", mode)
	}

	if s.applied, err = migrate(ctx, w, ms, time.Now); err != nil {
		return err
	}

	// Readers are opened after the writer has put the database in WAL mode
	// and migrated it: a read-only connection can do neither.
	rq := url.Values{}
	rq.Set("mode", "ro")
	rq.Set("_busy_timeout", busy)
	r, err := sql.Open("sqlite", dsn(s.path, rq))
	if err != nil {
		return err
	}
	s.r = r
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(5 * time.Minute)

	for i, q := range writeSQL {
		if s.wstmt[i], err = w.PrepareContext(ctx, q); err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
	}
	reads := []struct {
		stmt **sql.Stmt
		q    string
	}{
		{&s.getRunStmt, schema.GetRunSQL},
		{&s.getJobStmt, schema.GetJobSQL},
		{&s.listJobsStmt, schema.ListJobsSQL},
		{&s.listAttemptsStmt, schema.ListAttemptsSQL},
		{&s.readLogsStmt, schema.ReadLogsSQL},
		{&s.listWorkersStmt, schema.ListWorkersSQL},
		{&s.countRunsStmt, schema.CountRunsSQL},
	}
	for _, rd := range reads {
		if *rd.stmt, err = r.PrepareContext(ctx, rd.q); err != nil {
			return fmt.Errorf("prepare %q: %w", rd.q, err)
		}
	}
	return nil
}

// Close closes the database. Updates and reads in progress finish first.
// Calling Close again returns the result of the first call.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.w != nil {
			// Let SQLite refresh the statistics of the query planner, as the
			// SQLite documentation recommends doing when a connection closes.
			// It is cheap and only a hint, so its error does not matter.
			_, _ = s.w.Exec("PRAGMA optimize")
		}
		s.closeErr = s.closeAll()
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close %s: %w", s.path, s.closeErr)
		}
	})
	return s.closeErr
}

// closeAll closes the statements and both pools, readers first so that the
// writer, the last connection, checkpoints the WAL into the database.
func (s *Store) closeAll() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.getRunStmt, s.getJobStmt, s.listJobsStmt, s.listAttemptsStmt, s.readLogsStmt, s.listWorkersStmt, s.countRunsStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	for _, st := range s.wstmt {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

func scanWorker(sc schema.Scanner) (store.Worker, error) {
	var w store.Worker
	var st, labels string
	var first, last int64
	err := sc.Scan(&w.ID, &w.Pool, &st, &labels, &w.CPUMilli, &w.MemoryBytes, &w.GPU, &w.BootID, &first, &last)
	if err != nil {
		return w, err
	}
	w.State = state.WorkerState(st)
	w.FirstSeen, w.LastSeen = schema.DecTime(first), schema.DecTime(last)
	w.Labels, err = decLabels(labels)
	return w, err
}

// encLabels encodes labels as a JSON array; nil and empty both become "[]".
func encLabels(labels []string) (string, error) {
	if len(labels) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(labels)
	return string(b), err
}

// decLabels decodes a JSON array of labels; an empty array becomes nil.
func decLabels(s string) ([]string, error) {
	if s == "" || s == "[]" || s == "null" {
		return nil, nil
	}
	var labels []string
	if err := json.Unmarshal([]byte(s), &labels); err != nil {
		return nil, fmt.Errorf("labels %q: %w", s, err)
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}

// constraintErr maps the constraint violations of SQLite to the errors of
// package store: a duplicate key to store.ErrConflict and a missing parent row
// (a foreign key) to store.ErrNotFound. Other errors are returned as they are.
func constraintErr(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return err
}

// GetRun returns the run with the given ID, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := schema.ScanRun(s.getRunStmt.QueryRowContext(ctx, id))
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run %s: %w", id, notFound(err))
	}
	return r, nil
}

// ListRuns returns the runs that match f, newest (highest ID) first.
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, error) {
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Tenant != "" {
		where = append(where, "tenant = ?")
		args = append(args, f.Tenant)
	}
	if f.Before != "" {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = schema.DefaultRunLimit
	}
	limit = min(limit, schema.MaxRunLimit)
	args = append(args, limit)

	q := "SELECT " + schema.RunCols + " FROM runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"

	runs, err := query(ctx, s.r, schema.ScanRun, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	return runs, nil
}

// ListJobs returns the jobs of a run ordered by Index; none if the run does
// not exist.
func (s *Store) ListJobs(ctx context.Context, runID string) ([]store.Job, error) {
	jobs, err := queryStmt(ctx, s.listJobsStmt, schema.ScanJob, runID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list jobs of run %s: %w", runID, err)
	}
	return jobs, nil
}

// GetJob returns the job with the given ID, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	j, err := schema.ScanJob(s.getJobStmt.QueryRowContext(ctx, id))
	if err != nil {
		return store.Job{}, fmt.Errorf("sqlite: get job %s: %w", id, notFound(err))
	}
	return j, nil
}

// ListAttempts returns the attempts of a job ordered by N.
func (s *Store) ListAttempts(ctx context.Context, jobID string) ([]store.Attempt, error) {
	as, err := queryStmt(ctx, s.listAttemptsStmt, schema.ScanAttempt, jobID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list attempts of job %s: %w", jobID, err)
	}
	return as, nil
}

// ReadLogs returns up to limit chunks of a job that come after (afterAttempt,
// afterSeq), ordered by attempt then seq. A limit that is not positive means
// 1000.
func (s *Store) ReadLogs(ctx context.Context, jobID string, afterAttempt int, afterSeq int64, limit int) ([]store.LogChunk, error) {
	if limit <= 0 {
		limit = schema.DefaultLogLimit
	}
	cs, err := queryStmt(ctx, s.readLogsStmt, schema.ScanLog, jobID, afterAttempt, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read logs of job %s: %w", jobID, err)
	}
	return cs, nil
}

// ActiveRuns returns the runs that are not final, oldest first, and all their
// jobs, ordered by run then Index. Both come from one snapshot of the
// database.
func (s *Store) ActiveRuns(ctx context.Context) ([]store.Run, []store.Job, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: active runs: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo

	runs, err := query(ctx, tx, schema.ScanRun, schema.ActiveRunsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: active runs: %w", err)
	}

	jobs, err := query(ctx, tx, schema.ScanJob, schema.ActiveJobsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: active runs: jobs: %w", err)
	}
	return runs, jobs, nil
}

// CountRuns returns the number of runs per state. States without runs are
// absent from the map.
func (s *Store) CountRuns(ctx context.Context) (map[state.RunState]int, error) {
	rows, err := s.countRunsStmt.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count runs: %w", err)
	}
	defer rows.Close()
	counts := make(map[state.RunState]int)
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count runs: %w", err)
		}
		counts[state.RunState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count runs: %w", err)
	}
	return counts, nil
}

const recentDurationsSQL = `SELECT r.pipeline, j.job_key, j.started_at, j.finished_at
	FROM jobs j JOIN runs r ON r.id = j.run_id
	WHERE j.state = ? AND j.started_at > 0 AND j.finished_at >= j.started_at
	ORDER BY j.finished_at DESC LIMIT ?`

// RecentDurations returns the run times of the most recently finished
// succeeded jobs, oldest first.
func (s *Store) RecentDurations(ctx context.Context, limit int) ([]store.Duration, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.r.QueryContext(ctx, recentDurationsSQL, string(state.JobSucceeded), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: recent durations: %w", err)
	}
	defer rows.Close()
	var out []store.Duration
	for rows.Next() {
		var d store.Duration
		var started, finished int64
		if err := rows.Scan(&d.Pipeline, &d.JobKey, &started, &finished); err != nil {
			return nil, fmt.Errorf("sqlite: recent durations: %w", err)
		}
		d.Ran = time.Duration(finished - started)
		d.FinishedAt = schema.DecTime(finished)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: recent durations: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// ListWorkers returns every worker ordered by ID.
func (s *Store) ListWorkers(ctx context.Context) ([]store.Worker, error) {
	ws, err := queryStmt(ctx, s.listWorkersStmt, scanWorker)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list workers: %w", err)
	}
	return ws, nil
}

// collect scans every row with scan and closes rows.
// notFound is err, but store.ErrNotFound for a query that found no row.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// query runs q with args on db (the database or a transaction) and scans
// every row with scan.
func query[T any](ctx context.Context, db interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, scan func(schema.Scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

// queryStmt runs the prepared statement st with args and scans every row
// with scan.
func queryStmt[T any](ctx context.Context, st *sql.Stmt, scan func(schema.Scanner) (T, error), args ...any) ([]T, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

func collect[T any](rows *sql.Rows, scan func(schema.Scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, rows.Close()
}
