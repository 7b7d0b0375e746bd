package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// The statements of a write transaction.
const (
	insertRunSQL = `INSERT INTO runs (` + schema.RunCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`
	updateRunSQL = `UPDATE runs SET pipeline = $2, file = $3, tenant = $4, priority = $5, state = $6, source = $7,
		created_at = $8, started_at = $9, finished_at = $10, error = $11, concurrency_group = $12, concurrency_limit = $13, inputs = $14, includes = $15
		WHERE id = $1`
	insertJobSQL = `INSERT INTO jobs (` + schema.JobCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`
	updateJobSQL = `UPDATE jobs SET run_id = $2, job_key = $3, name = $4, idx = $5, state = $6, spec = $7, attempt = $8,
		max_attempts = $9, worker_id = $10, queued_at = $11, started_at = $12, finished_at = $13, exit_code = $14,
		error = $15, infra_lost = $16, outputs = $17, approval_deadline = $18, decision = $19, decided_by = $20, decided_at = $21,
		decision_comment = $22
		WHERE id = $1`
	upsertAttemptSQL = `INSERT INTO attempts (` + schema.AttemptCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (job_id, n) DO UPDATE SET worker_id = excluded.worker_id, state = excluded.state,
		assigned_at = excluded.assigned_at, started_at = excluded.started_at, finished_at = excluded.finished_at,
		exit_code = excluded.exit_code, error = excluded.error, reason = excluded.reason,
		peak_memory = excluded.peak_memory, cpu_time = excluded.cpu_time`
	insertLogSQL = `INSERT INTO log_chunks (` + schema.LogCols + `) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (job_id, attempt, seq) DO NOTHING`
	upsertWorkerSQL = `INSERT INTO workers (` + schema.WorkerCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET pool = excluded.pool, state = excluded.state, labels = excluded.labels,
		cpu_milli = excluded.cpu_milli, memory_bytes = excluded.memory_bytes, gpu = excluded.gpu,
		boot_id = excluded.boot_id, first_seen = excluded.first_seen, last_seen = excluded.last_seen`
)

// maxTries is how many times Update sends a batch that failed on a deadlock
// or a serialization failure before it gives up.
const maxTries = 8

// errTxDone is returned by a Tx used after its Update returned.
var errTxDone = errors.New("transaction used after Update returned")

// Update runs fn, which queues its changes on tx, then sends them to the
// database in one batch that commits as one transaction (see the package
// doc). If fn returns an error, nothing is sent and Update returns that
// error unchanged; if fn panics, nothing is sent and the panic goes on.
// Updates are serialised; fn must not call Update itself, which would wait
// forever, but may call the read methods, which do not see its changes.
//
// With an epoch in ctx (store.WithEpoch), the batch begins with
// hodei_fence (migration 0080): if another leader has bumped the epoch,
// nothing is committed and the error wraps store.ErrFenced.
//
// An error of a statement (a duplicate ID, a missing row) comes back from
// Update, wrapping store.ErrConflict or store.ErrNotFound, and nothing of the
// batch is committed. A batch that lost a deadlock or a serialization
// failure is sent again. If ctx ends, the transaction is rolled back.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{}
	defer func() { t.done = true }()
	if err := fn(t); err != nil {
		return err
	}
	t.done = true
	if len(t.ops) == 0 {
		return nil
	}
	if epoch, ok := store.EpochOf(ctx); ok {
		// A leader's batch commits only while its epoch is current.
		t.ops = append([]op{{sql: fenceSQL, args: []any{epoch},
			what: func() string { return fmt.Sprintf("check epoch %d", epoch) }}}, t.ops...)
	}
	for try := 1; ; try++ {
		err := s.send(ctx, t.ops)
		if err == nil || try == maxTries || !retryable(err) {
			return err
		}
		s.retries.Add(1)
		// A random pause, growing with the tries, so that two writers that
		// deadlocked do not meet again at once.
		pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(try, 6)))
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("postgres: commit: %w (after %w)", ctx.Err(), storeErr(err))
		case <-timer.C:
		}
	}
}

// send runs ops as one batch, in the implicit transaction of a pipeline, and
// returns the first error, mapped to the errors of package store.
func (s *Store) send(ctx context.Context, ops []op) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres: commit: %w", storeErr(err))
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(ops))}
	for _, o := range ops {
		b.Queue(o.sql, o.args...)
	}
	br := s.pool.SendBatch(ctx, b)
	for _, o := range ops {
		tag, err := br.Exec()
		if err == nil && o.mustChange && tag.RowsAffected() == 0 {
			err = store.ErrNotFound
		}
		if err != nil {
			_ = br.Close() // err is the one that matters
			return fmt.Errorf("postgres: %s: %w", o.what(), storeErr(ctxErr(ctx, err)))
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("postgres: commit: %w", storeErr(ctxErr(ctx, err)))
	}
	return nil
}

// ctxErr adds ctx's error to err when ctx has ended, so that errors.Is finds
// context.Canceled in the error of a batch that a cancellation interrupted.
func ctxErr(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("%w: %w", ce, err)
	}
	return err
}

// retryable reports whether err is a deadlock (40P01) or a serialization
// failure (40001): the transaction was rolled back and may succeed if sent
// again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// op is one queued statement.
type op struct {
	sql        string
	args       []any
	mustChange bool          // no row changed means store.ErrNotFound
	what       func() string // what the statement does, for errors
}

// tx is the store.Tx of one Update: it queues statements. It is not safe for
// concurrent use.
type tx struct {
	ops  []op
	done bool
}

func (t *tx) queue(o op) error {
	if t.done {
		return errTxDone
	}
	t.ops = append(t.ops, o)
	return nil
}

// InsertRun queues the insert of r; a run with its ID makes Update fail
// with an error wrapping store.ErrConflict.
func (t *tx) InsertRun(r store.Run) error {
	return t.queue(op{
		sql: insertRunSQL,
		args: []any{r.ID, r.Pipeline, r.File, r.Tenant, r.Priority, r.State, r.Source,
			schema.EncTime(r.CreatedAt), schema.EncTime(r.StartedAt), schema.EncTime(r.FinishedAt), r.Error, r.ConcurrencyGroup, r.ConcurrencyLimit, schema.EncodeInputs(r.Inputs), schema.EncodeIncludes(r.Includes)},
		what: func() string { return "insert run " + r.ID },
	})
}

// UpdateRun queues the replacement of the run with r's ID; a missing run
// makes Update fail with an error wrapping store.ErrNotFound.
func (t *tx) UpdateRun(r store.Run) error {
	return t.queue(op{
		sql: updateRunSQL,
		args: []any{r.ID, r.Pipeline, r.File, r.Tenant, r.Priority, r.State, r.Source,
			schema.EncTime(r.CreatedAt), schema.EncTime(r.StartedAt), schema.EncTime(r.FinishedAt), r.Error, r.ConcurrencyGroup, r.ConcurrencyLimit, schema.EncodeInputs(r.Inputs), schema.EncodeIncludes(r.Includes)},
		mustChange: true,
		what:       func() string { return "update run " + r.ID },
	})
}

// InsertJobs queues the insert of jobs. A job whose ID exists makes Update
// fail with an error wrapping store.ErrConflict; one whose run does not
// exist, with store.ErrNotFound.
func (t *tx) InsertJobs(jobs []store.Job) error {
	for _, j := range jobs {
		err := t.queue(op{
			sql: insertJobSQL,
			args: []any{j.ID, j.RunID, j.Key, j.Name, j.Index, j.State, j.Spec, j.Attempt, j.MaxAttempts, j.WorkerID,
				schema.EncTime(j.QueuedAt), schema.EncTime(j.StartedAt), schema.EncTime(j.FinishedAt), j.ExitCode, j.Error, j.InfraLost, schema.EncodeInputs(j.Outputs),
				schema.EncTime(j.ApprovalDeadline), j.Decision, j.DecidedBy, schema.EncTime(j.DecidedAt), j.DecisionComment},
			what: func() string { return fmt.Sprintf("insert job %s of run %s", j.ID, j.RunID) },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// UpdateJob queues the replacement of the job with j's ID; a missing job
// makes Update fail with an error wrapping store.ErrNotFound.
func (t *tx) UpdateJob(j store.Job) error {
	return t.queue(op{
		sql: updateJobSQL,
		args: []any{j.ID, j.RunID, j.Key, j.Name, j.Index, j.State, j.Spec, j.Attempt, j.MaxAttempts, j.WorkerID,
			schema.EncTime(j.QueuedAt), schema.EncTime(j.StartedAt), schema.EncTime(j.FinishedAt), j.ExitCode, j.Error, j.InfraLost, schema.EncodeInputs(j.Outputs),
			schema.EncTime(j.ApprovalDeadline), j.Decision, j.DecidedBy, schema.EncTime(j.DecidedAt), j.DecisionComment},
		mustChange: true,
		what:       func() string { return "update job " + j.ID },
	})
}

// UpsertAttempt queues the insert or replacement of attempt (JobID, N); a
// missing job makes Update fail with an error wrapping store.ErrNotFound.
func (t *tx) UpsertAttempt(a store.Attempt) error {
	return t.queue(op{
		sql: upsertAttemptSQL,
		args: []any{a.JobID, a.N, a.WorkerID, a.State, schema.EncTime(a.AssignedAt), schema.EncTime(a.StartedAt), schema.EncTime(a.FinishedAt),
			a.ExitCode, a.Error, a.Reason, a.PeakMemory, int64(a.CPUTime)},
		what: func() string { return fmt.Sprintf("upsert attempt %d of job %s", a.N, a.JobID) },
	})
}

// AppendLogs queues the insert of chunks, skipping those already stored; a
// chunk whose job does not exist makes Update fail with an error wrapping
// store.ErrNotFound.
func (t *tx) AppendLogs(chunks []store.LogChunk) error {
	for _, c := range chunks {
		err := t.queue(op{
			sql:  insertLogSQL,
			args: []any{c.JobID, c.Attempt, c.Seq, c.Step, c.Data, schema.EncTime(c.At)},
			what: func() string { return fmt.Sprintf("append log chunk %d/%d of job %s", c.Attempt, c.Seq, c.JobID) },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// UpsertWorker queues the insert or replacement of the worker with w's ID.
func (t *tx) UpsertWorker(w store.Worker) error {
	labels := w.Labels
	if labels == nil {
		labels = []string{} // the column is NOT NULL
	}
	return t.queue(op{
		sql: upsertWorkerSQL,
		args: []any{w.ID, w.Pool, w.State, labels, w.CPUMilli, w.MemoryBytes, w.GPU, w.BootID,
			schema.EncTime(w.FirstSeen), schema.EncTime(w.LastSeen)},
		what: func() string { return "upsert worker " + w.ID },
	})
}
