package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// The statements of a write transaction, prepared once on the writer
// connection by Open and bound to each transaction with tx.Stmt.
const (
	stmtInsertRun = iota
	stmtUpdateRun
	stmtInsertJob
	stmtUpdateJob
	stmtUpdateJobState
	stmtUpsertAttempt
	stmtInsertLog
	stmtUpsertWorker
	numWriteStmts
)

var writeSQL = [numWriteStmts]string{
	stmtInsertRun: `INSERT INTO runs (` + schema.RunCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stmtUpdateRun: `UPDATE runs SET pipeline = ?, file = ?, tenant = ?, priority = ?, state = ?, source = ?,
		created_at = ?, started_at = ?, finished_at = ?, error = ?, concurrency_group = ?, concurrency_limit = ?, inputs = ?, includes = ? WHERE id = ?`,
	stmtInsertJob: `INSERT INTO jobs (` + schema.JobCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stmtUpdateJob: `UPDATE jobs SET run_id = ?, job_key = ?, name = ?, idx = ?, state = ?, spec = ?, attempt = ?,
		max_attempts = ?, worker_id = ?, queued_at = ?, started_at = ?, finished_at = ?, exit_code = ?, error = ?, infra_lost = ?, outputs = ?,
		approval_deadline = ?, decision = ?, decided_by = ?, decided_at = ?, decision_comment = ?
		WHERE id = ?`,
	// stmtUpdateJobState is stmtUpdateJob for the usual case, where the
	// job's run, key and index are those it was inserted with: it leaves
	// them out of the SET list, so SQLite does not delete and reinsert the
	// job's entry in index jobs_run_idx on every update.
	stmtUpdateJobState: `UPDATE jobs SET name = ?, state = ?, spec = ?, attempt = ?, max_attempts = ?, worker_id = ?,
		queued_at = ?, started_at = ?, finished_at = ?, exit_code = ?, error = ?, infra_lost = ?, outputs = ?,
		approval_deadline = ?, decision = ?, decided_by = ?, decided_at = ?, decision_comment = ?
		WHERE id = ? AND run_id = ? AND job_key = ? AND idx = ?`,
	stmtUpsertAttempt: `INSERT INTO attempts (` + schema.AttemptCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, n) DO UPDATE SET worker_id = excluded.worker_id, state = excluded.state,
		assigned_at = excluded.assigned_at, started_at = excluded.started_at, finished_at = excluded.finished_at,
		exit_code = excluded.exit_code, error = excluded.error, reason = excluded.reason,
		peak_memory = excluded.peak_memory, cpu_time = excluded.cpu_time`,
	stmtInsertLog: `INSERT INTO log_chunks (` + schema.LogCols + `) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, attempt, seq) DO NOTHING`,
	stmtUpsertWorker: `INSERT INTO workers (` + schema.WorkerCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET pool = excluded.pool, state = excluded.state, labels = excluded.labels,
		cpu_milli = excluded.cpu_milli, memory_bytes = excluded.memory_bytes, gpu = excluded.gpu,
		boot_id = excluded.boot_id, first_seen = excluded.first_seen, last_seen = excluded.last_seen`,
}

// errTxDone is returned by a Tx used after its Update returned.
var errTxDone = errors.New("transaction used after Update returned")

// Update runs fn in one write transaction (BEGIN IMMEDIATE on the writer
// connection) and commits it if fn returns nil. If fn returns an error,
// every change it made is rolled back and Update returns that error
// unchanged; if fn panics, the changes are rolled back and the panic goes on.
// Updates are serialised; fn must not call Update itself, which
// would wait forever, but may call the read methods, which do not see its
// uncommitted changes.
//
// If ctx ends, the transaction is rolled back and the Tx fails from then on.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	t := &tx{ctx: ctx, tx: sqlTx, prepared: &s.wstmt}
	committed := false
	defer func() {
		t.done = true
		if !committed {
			_ = sqlTx.Rollback() // fn's error (or panic) is what matters
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("sqlite: commit: %w: %w", ctxErr, err)
		}
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	committed = true
	return nil
}

// tx is the store.Tx of one Update. It is not safe for concurrent use.
type tx struct {
	ctx      context.Context // the Update's; checked before each statement
	tx       *sql.Tx
	prepared *[numWriteStmts]*sql.Stmt
	stmts    [numWriteStmts]*sql.Stmt // prepared bound to tx, made on first use
	done     bool
}

// exec runs write statement i with args. The statement runs without the
// Update's context: the driver watches a cancellable context with a goroutine
// per statement, too dear for statements run thousands of times a second.
// Cancellation still works, between statements: database/sql rolls the
// transaction back when the context ends, and exec checks it first.
func (t *tx) exec(i int, args ...any) (sql.Result, error) {
	if t.done {
		return nil, errTxDone
	}
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	st := t.stmts[i]
	if st == nil {
		st = t.tx.Stmt(t.prepared[i])
		t.stmts[i] = st
	}
	return st.Exec(args...)
}

// affected returns store.ErrNotFound if res changed no row.
func affected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// InsertRun inserts r, or fails with an error wrapping store.ErrConflict if a
// run with its ID exists.
func (t *tx) InsertRun(r store.Run) error {
	_, err := t.exec(stmtInsertRun, r.ID, r.Pipeline, r.File, r.Tenant, r.Priority, string(r.State), r.Source,
		schema.EncTime(r.CreatedAt), schema.EncTime(r.StartedAt), schema.EncTime(r.FinishedAt), r.Error, r.ConcurrencyGroup, r.ConcurrencyLimit, schema.EncodeInputs(r.Inputs), schema.EncodeIncludes(r.Includes))
	if err != nil {
		return fmt.Errorf("sqlite: insert run %s: %w", r.ID, constraintErr(err))
	}
	return nil
}

// UpdateRun replaces the run with r's ID, or fails with an error wrapping
// store.ErrNotFound.
func (t *tx) UpdateRun(r store.Run) error {
	res, err := t.exec(stmtUpdateRun, r.Pipeline, r.File, r.Tenant, r.Priority, string(r.State), r.Source,
		schema.EncTime(r.CreatedAt), schema.EncTime(r.StartedAt), schema.EncTime(r.FinishedAt), r.Error, r.ConcurrencyGroup, r.ConcurrencyLimit, schema.EncodeInputs(r.Inputs), schema.EncodeIncludes(r.Includes), r.ID)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update run %s: %w", r.ID, err)
	}
	return nil
}

// InsertJobs inserts jobs. A job whose ID exists fails with an error wrapping
// store.ErrConflict; one whose run does not exist, with store.ErrNotFound.
func (t *tx) InsertJobs(jobs []store.Job) error {
	for _, j := range jobs {
		_, err := t.exec(stmtInsertJob, j.ID, j.RunID, j.Key, j.Name, j.Index, string(j.State), j.Spec, j.Attempt,
			j.MaxAttempts, j.WorkerID, schema.EncTime(j.QueuedAt), schema.EncTime(j.StartedAt), schema.EncTime(j.FinishedAt), j.ExitCode, j.Error, j.InfraLost, schema.EncodeInputs(j.Outputs),
			schema.EncTime(j.ApprovalDeadline), j.Decision, j.DecidedBy, schema.EncTime(j.DecidedAt), j.DecisionComment)
		if err != nil {
			return fmt.Errorf("sqlite: insert job %s of run %s: %w", j.ID, j.RunID, constraintErr(err))
		}
	}
	return nil
}

// UpdateJob replaces the job with j's ID, or fails with an error wrapping
// store.ErrNotFound.
func (t *tx) UpdateJob(j store.Job) error {
	queued, started, finished := schema.EncTime(j.QueuedAt), schema.EncTime(j.StartedAt), schema.EncTime(j.FinishedAt)
	outputs := schema.EncodeInputs(j.Outputs)
	res, err := t.exec(stmtUpdateJobState, j.Name, string(j.State), j.Spec, j.Attempt, j.MaxAttempts, j.WorkerID,
		queued, started, finished, j.ExitCode, j.Error, j.InfraLost, outputs,
		schema.EncTime(j.ApprovalDeadline), j.Decision, j.DecidedBy, schema.EncTime(j.DecidedAt), j.DecisionComment, j.ID, j.RunID, j.Key, j.Index)
	if err == nil {
		err = affected(res)
	}
	if errors.Is(err, store.ErrNotFound) {
		// Missing, or its run, key or index changed: replace everything.
		res, err = t.exec(stmtUpdateJob, j.RunID, j.Key, j.Name, j.Index, string(j.State), j.Spec, j.Attempt,
			j.MaxAttempts, j.WorkerID, queued, started, finished, j.ExitCode, j.Error, j.InfraLost, outputs,
			schema.EncTime(j.ApprovalDeadline), j.Decision, j.DecidedBy, schema.EncTime(j.DecidedAt), j.DecisionComment, j.ID)
		if err == nil {
			err = affected(res)
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: update job %s: %w", j.ID, constraintErr(err))
	}
	return nil
}

// UpsertAttempt inserts or replaces attempt (JobID, N). It fails with an
// error wrapping store.ErrNotFound if the job does not exist.
func (t *tx) UpsertAttempt(a store.Attempt) error {
	_, err := t.exec(stmtUpsertAttempt, a.JobID, a.N, a.WorkerID, string(a.State),
		schema.EncTime(a.AssignedAt), schema.EncTime(a.StartedAt), schema.EncTime(a.FinishedAt), a.ExitCode, a.Error, a.Reason,
		a.PeakMemory, int64(a.CPUTime))
	if err != nil {
		return fmt.Errorf("sqlite: upsert attempt %d of job %s: %w", a.N, a.JobID, constraintErr(err))
	}
	return nil
}

// AppendLogs stores chunks, skipping those already stored. It fails with an
// error wrapping store.ErrNotFound if a chunk's job does not exist.
func (t *tx) AppendLogs(chunks []store.LogChunk) error {
	for _, c := range chunks {
		_, err := t.exec(stmtInsertLog, c.JobID, c.Attempt, c.Seq, c.Step, c.Data, schema.EncTime(c.At))
		if err != nil {
			return fmt.Errorf("sqlite: append log chunk %d/%d of job %s: %w", c.Attempt, c.Seq, c.JobID, constraintErr(err))
		}
	}
	return nil
}

// UpsertWorker inserts or replaces the worker with w's ID.
func (t *tx) UpsertWorker(w store.Worker) error {
	labels, err := encLabels(w.Labels)
	if err == nil {
		_, err = t.exec(stmtUpsertWorker, w.ID, w.Pool, string(w.State), labels, w.CPUMilli, w.MemoryBytes, w.GPU,
			w.BootID, schema.EncTime(w.FirstSeen), schema.EncTime(w.LastSeen))
	}
	if err != nil {
		return fmt.Errorf("sqlite: upsert worker %s: %w", w.ID, err)
	}
	return nil
}
