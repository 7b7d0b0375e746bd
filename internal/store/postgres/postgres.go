// Package postgres is the implementation of store.Store on PostgreSQL, for a
// server whose state lives outside its own disk. It uses the driver
// github.com/jackc/pgx/v5 (pure Go) and its connection pool, pgxpool.
//
// # Connections
//
// A Store holds one pool (pgxpool); its size is pgxpool's default (the
// larger of 4 and the number of CPUs) unless the URL says otherwise
// (pool_max_conns=N, see pgxpool.ParseConfig). Reads take any connection of
// the pool and run in parallel with each other and with a write; PostgreSQL's
// MVCC lets them read the last committed state without waiting on a writer.
// ActiveRuns reads in one REPEATABLE READ, read-only transaction, so its runs
// and jobs come from the same snapshot. Each connection prepares and caches
// the statements it runs (pgx's default exec mode).
//
// # Writes: one round trip per Update
//
// The orchestrator batches many changes into one Update (group commit:
// hundreds of job updates, attempts and log chunks per commit), which is what
// keeps commits few. Here the Tx of an Update does not talk to the server:
// each call checks its arguments and queues its statement. When fn returns
// nil, Update sends the whole queue as one pgx batch, a pipeline that
// PostgreSQL runs as one implicit transaction, so an Update costs one round
// trip however many changes it carries, and either all of them commit or none
// does. The price is that the errors of the database (store.ErrConflict,
// store.ErrNotFound, a lost connection) come from Update, not from the Tx
// call that queued the failing statement; fn sees them as Update's result,
// and the orchestrator treats any failed Update as a whole anyway.
//
// Updates of one Store are serialised by a mutex, as the store contract says.
// Updates of several Stores (several processes) on one database can still
// meet: every statement writes rows by their key and reads nothing, so the
// database's default READ COMMITTED isolation gives the result a serial order
// would, and the only failures that concurrency can cause are a deadlock
// (40P01) between two batches that lock the same rows in different orders,
// or a serialization failure (40001) where the database runs a stricter
// default isolation. Both roll the batch back whole, and because fn has
// already run and the queue holds plain statements, Update sends the same
// queue again (up to maxTries times, with a short random backoff) without
// running fn twice. Nothing like SQLite's "database is locked" exists here.
//
// # Durability
//
// A commit returns once PostgreSQL has made it durable by its own settings
// (synchronous_commit, fsync): the store asks for nothing weaker.
//
// # Encoding
//
// As in the SQLite store: times are BIGINT unix nanoseconds read back in UTC
// (timestamptz keeps only microseconds); 0 stores the zero time.Time. Worker
// labels are a text[]. Run.Source and Job.Spec are BYTEA, stored as given.
// Text columns use the "C" collation, so IDs sort byte by byte whatever the
// database's locale.
//
// # Migrations
//
// The schema is versioned by the numbered files of package migration, the
// same files as the SQLite store's, rendered in the PostgreSQL dialect; Open
// applies those the database lacks, in one transaction, under an advisory
// lock so that servers started together migrate one at a time.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// Store is a store.Store kept in a PostgreSQL database. It is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	name string // the database, for errors

	mu      sync.Mutex   // held by Update: write transactions are serialised
	retries atomic.Int64 // batches sent again after a deadlock or serialization failure

	applied []int // migration versions applied by Open, for tests

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// IsURL reports whether s names a PostgreSQL database (postgres:// or
// postgresql://), as opposed to the SQLite store.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database at url (postgres://user@host:port/db?...,
// the forms pgxpool.ParseConfig accepts) and brings its schema up to date.
// It fails with an error wrapping ErrSchemaTooNew if the database was
// migrated by a newer binary.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err) // pgconn masks the password
	}
	name := cfg.ConnConfig.Database
	ms, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("postgres: open %s: %w", name, storeErr(err))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open %s: %w", name, storeErr(err))
	}
	s := &Store{pool: pool, name: name}
	if s.applied, err = migrate(ctx, pool, ms, time.Now); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", name, storeErr(err))
	}
	return s, nil
}

// Close closes the pool, after the queries in progress return. Calling it
// again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// The queries of schema, in PostgreSQL's placeholders.
var (
	getRunSQL         = schema.Rebind(schema.GetRunSQL)
	getJobSQL         = schema.Rebind(schema.GetJobSQL)
	listJobsSQL       = schema.Rebind(schema.ListJobsSQL)
	listAttemptsSQL   = schema.Rebind(schema.ListAttemptsSQL)
	readLogsSQL       = schema.Rebind(schema.ReadLogsSQL)
	claimFiringSQL    = schema.Rebind(schema.ClaimFiringSQL)
	lastFiringSQL     = schema.Rebind(schema.LastFiringSQL)
	listFiringsSQL    = schema.Rebind(schema.ListFiringsSQL)
	setFiringErrorSQL = schema.Rebind(schema.SetFiringErrorSQL)
	setFiringRunSQL   = schema.Rebind(schema.SetFiringRunSQL)
)

func scanWorker(row schema.Scanner) (store.Worker, error) {
	var w store.Worker
	var first, last int64
	err := row.Scan(&w.ID, &w.Pool, &w.State, &w.Labels, &w.CPUMilli, &w.MemoryBytes, &w.GPU, &w.BootID, &first, &last)
	w.FirstSeen, w.LastSeen = schema.DecTime(first), schema.DecTime(last)
	if len(w.Labels) == 0 {
		w.Labels = nil
	}
	return w, err
}

// query runs q with args on the pool and scans every row with scan.
func query[T any](ctx context.Context, q pgxQuerier, scan func(schema.Scanner) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, rowTo(scan))
}

// rowTo makes a scan function of the schema package a pgx.RowToFunc.
func rowTo[T any](scan func(schema.Scanner) (T, error)) pgx.RowToFunc[T] {
	return func(row pgx.CollectableRow) (T, error) { return scan(row) }
}

// pgxQuerier is what query needs of a pool or a transaction.
type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// getOne runs a query expected to return at most one row; no row is an error
// wrapping store.ErrNotFound.
func getOne[T any](ctx context.Context, s *Store, scan func(schema.Scanner) (T, error), sql, what, id string) (T, error) {
	rows, err := s.pool.Query(ctx, sql, id)
	if err == nil {
		var v T
		v, err = pgx.CollectExactlyOneRow(rows, rowTo(scan))
		if err == nil {
			return v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("postgres: get %s %s: %w", what, id, storeErr(notFound(err)))
}

// GetRun returns the run with the given ID, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id string) (store.Run, error) {
	return getOne(ctx, s, schema.ScanRun, getRunSQL, "run", id)
}

// GetJob returns the job with the given ID, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	return getOne(ctx, s, schema.ScanJob, getJobSQL, "job", id)
}

// ListRuns returns the runs that match f, newest (highest ID) first.
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, error) {
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if f.State != "" {
		arg("state =", f.State)
	}
	if f.Tenant != "" {
		arg("tenant =", f.Tenant)
	}
	if f.Before != "" {
		arg("id <", f.Before)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = schema.DefaultRunLimit
	}
	args = append(args, min(limit, schema.MaxRunLimit))

	q := "SELECT " + schema.RunCols + " FROM runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	runs, err := query(ctx, s.pool, schema.ScanRun, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", storeErr(err))
	}
	return runs, nil
}

// ListJobs returns the jobs of a run ordered by Index; none if the run does
// not exist.
func (s *Store) ListJobs(ctx context.Context, runID string) ([]store.Job, error) {
	jobs, err := query(ctx, s.pool, schema.ScanJob, listJobsSQL, runID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list jobs of run %s: %w", runID, storeErr(err))
	}
	return jobs, nil
}

// ListAttempts returns the attempts of a job ordered by N.
func (s *Store) ListAttempts(ctx context.Context, jobID string) ([]store.Attempt, error) {
	as, err := query(ctx, s.pool, schema.ScanAttempt, listAttemptsSQL, jobID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list attempts of job %s: %w", jobID, storeErr(err))
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
	cs, err := query(ctx, s.pool, schema.ScanLog, readLogsSQL, jobID, afterAttempt, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read logs of job %s: %w", jobID, storeErr(err))
	}
	return cs, nil
}

// ActiveRuns returns the runs that are not final, oldest first, and all their
// jobs, ordered by run then Index. Both come from one snapshot of the
// database.
func (s *Store) ActiveRuns(ctx context.Context) ([]store.Run, []store.Job, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: active runs: %w", storeErr(err))
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only; nothing to undo

	runs, err := query(ctx, tx, schema.ScanRun, schema.ActiveRunsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: active runs: %w", storeErr(err))
	}
	jobs, err := query(ctx, tx, schema.ScanJob, schema.ActiveJobsSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: active runs: jobs: %w", storeErr(err))
	}
	return runs, jobs, nil
}

// CountRuns returns the number of runs per state. States without runs are
// absent from the map.
func (s *Store) CountRuns(ctx context.Context) (map[state.RunState]int, error) {
	type count struct {
		state state.RunState
		n     int
	}
	cs, err := query(ctx, s.pool, func(row schema.Scanner) (count, error) {
		var c count
		return c, row.Scan(&c.state, &c.n)
	}, schema.CountRunsSQL)
	if err != nil {
		return nil, fmt.Errorf("postgres: count runs: %w", storeErr(err))
	}
	counts := make(map[state.RunState]int, len(cs))
	for _, c := range cs {
		counts[c.state] = c.n
	}
	return counts, nil
}

const recentDurationsSQL = `SELECT r.pipeline, j.job_key, j.started_at, j.finished_at
	FROM jobs j JOIN runs r ON r.id = j.run_id
	WHERE j.state = $1 AND j.started_at > 0 AND j.finished_at >= j.started_at
	ORDER BY j.finished_at DESC LIMIT $2`

// RecentDurations returns the run times of the most recently finished
// succeeded jobs, oldest first.
func (s *Store) RecentDurations(ctx context.Context, limit int) ([]store.Duration, error) {
	if limit <= 0 {
		limit = 1000
	}
	out, err := query(ctx, s.pool, func(row schema.Scanner) (store.Duration, error) {
		var d store.Duration
		var started, finished int64
		err := row.Scan(&d.Pipeline, &d.JobKey, &started, &finished)
		d.Ran = time.Duration(finished - started)
		d.FinishedAt = schema.DecTime(finished)
		return d, err
	}, recentDurationsSQL, state.JobSucceeded, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: recent durations: %w", storeErr(err))
	}
	slices.Reverse(out)
	return out, nil
}

// ListWorkers returns every worker ordered by ID.
func (s *Store) ListWorkers(ctx context.Context) ([]store.Worker, error) {
	ws, err := query(ctx, s.pool, scanWorker, schema.ListWorkersSQL)
	if err != nil {
		return nil, fmt.Errorf("postgres: list workers: %w", storeErr(err))
	}
	return ws, nil
}

// notFound is err, but store.ErrNotFound for a query that found no row.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// storeErr maps the errors of PostgreSQL to the errors of package store: a
// duplicate key (23505) to store.ErrConflict, a missing parent row (a foreign
// key, 23503) to store.ErrNotFound, a fenced epoch to store.ErrFenced, and a
// database that cannot be reached now (unavailable) to store.ErrUnavailable.
// Other errors are returned as they are.
func storeErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case "23503":
			return fmt.Errorf("%w: %w", store.ErrNotFound, err)
		case fencedCode:
			return fmt.Errorf("%w: %w", store.ErrFenced, err)
		}
	}
	if unavailable(err) && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// unavailable reports whether err says that the database cannot be reached
// now, rather than that the statement was wrong: a connection that failed or
// was refused, lost, or closed; a server shutting down, starting or out of
// connections (SQLSTATE 57P01-57P03, 53300, class 08).
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin, crash shutdown; cannot connect now
			pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}
