// Package schema holds what the SQL stores (sqlite, postgres) know alike of
// the tables their migrations create: the column lists, the read queries and
// the scan functions that read their rows, the encoding of times, and the
// condition that selects the runs that
// are not final, spelled as the partial index runs_active spells it (both
// databases use a partial index only for a query whose condition matches
// the index's).
package schema

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Limits of ListRuns, as documented on store.RunFilter.
const (
	DefaultRunLimit = 50
	MaxRunLimit     = 1000
)

// DefaultLogLimit is the number of chunks ReadLogs returns when its limit is
// not positive.
const DefaultLogLimit = 1000

// Column lists, in the order the stores' scan functions read them.
const (
	RunCols     = "id, pipeline, file, tenant, priority, state, source, created_at, started_at, finished_at, error, concurrency_group, concurrency_limit, inputs, includes"
	JobCols     = "id, run_id, job_key, name, idx, state, spec, attempt, max_attempts, worker_id, queued_at, started_at, finished_at, exit_code, error, infra_lost, outputs, approval_deadline, decision, decided_by, decided_at, decision_comment"
	AttemptCols = "job_id, n, worker_id, state, assigned_at, started_at, finished_at, exit_code, error, reason, peak_memory, cpu_time"
	LogCols     = "job_id, attempt, seq, step, data, at"
	WorkerCols  = "id, pool, state, labels, cpu_milli, memory_bytes, gpu, boot_id, first_seen, last_seen"
)

// ActiveRunsWhere selects the runs that are not final. It spells the final
// states as literals, in the order of state.RunStates, as the WHERE clause
// of the partial index runs_active in both stores' 0001_init.sql does.
var ActiveRunsWhere = func() string {
	var final []string
	for _, s := range state.RunStates {
		if s.Final() {
			final = append(final, "'"+strings.ReplaceAll(string(s), "'", "''")+"'")
		}
	}
	return "state NOT IN (" + strings.Join(final, ", ") + ")"
}()

// PrefixCols qualifies every column of a comma-separated list with prefix
// ("j." for a join).
func PrefixCols(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}

// The queries of the read methods both stores serve alike, with ? for each
// argument (Rebind turns them into PostgreSQL's $1, $2...).
const (
	GetRunSQL       = "SELECT " + RunCols + " FROM runs WHERE id = ?"
	GetJobSQL       = "SELECT " + JobCols + " FROM jobs WHERE id = ?"
	ListJobsSQL     = "SELECT " + JobCols + " FROM jobs WHERE run_id = ? ORDER BY idx"
	ListAttemptsSQL = "SELECT " + AttemptCols + " FROM attempts WHERE job_id = ? ORDER BY n"
	ReadLogsSQL     = "SELECT " + LogCols + " FROM log_chunks WHERE job_id = ? AND (attempt, seq) > (?, ?) ORDER BY attempt, seq LIMIT ?"
	ListWorkersSQL  = "SELECT " + WorkerCols + " FROM workers ORDER BY id"
	CountRunsSQL    = "SELECT state, count(*) FROM runs GROUP BY state"
)

// The queries of ActiveRuns; both use the partial index runs_active.
var (
	ActiveRunsSQL = "SELECT " + RunCols + " FROM runs WHERE " + ActiveRunsWhere + " ORDER BY id"
	ActiveJobsSQL = "SELECT " + PrefixCols("j.", JobCols) + " FROM runs r JOIN jobs j ON j.run_id = r.id WHERE r." +
		ActiveRunsWhere + " ORDER BY r.id, j.idx"
)

// Rebind numbers the ? placeholders of q as $1, $2... for PostgreSQL. The
// queries it is given have no ? inside literals.
func Rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Scanner is a row of either driver (database/sql's *sql.Row and *sql.Rows,
// pgx's rows).
type Scanner interface{ Scan(dest ...any) error }

// ScanRun reads a row of RunCols.
func ScanRun(sc Scanner) (store.Run, error) {
	var r store.Run
	var st string
	var created, started, finished int64
	var inputs, includes string
	err := sc.Scan(&r.ID, &r.Pipeline, &r.File, &r.Tenant, &r.Priority, &st, &r.Source, &created, &started, &finished, &r.Error, &r.ConcurrencyGroup, &r.ConcurrencyLimit, &inputs, &includes)
	if err == nil {
		r.Inputs, err = DecodeInputs(inputs)
	}
	if err == nil {
		r.Includes, err = DecodeIncludes(includes)
	}
	r.State = state.RunState(st)
	r.CreatedAt, r.StartedAt, r.FinishedAt = DecTime(created), DecTime(started), DecTime(finished)
	return r, err
}

// ScanJob reads a row of JobCols.
func ScanJob(sc Scanner) (store.Job, error) {
	var j store.Job
	var st string
	var queued, started, finished, deadline, decided int64
	var outputs string
	err := sc.Scan(&j.ID, &j.RunID, &j.Key, &j.Name, &j.Index, &st, &j.Spec, &j.Attempt, &j.MaxAttempts, &j.WorkerID, &queued, &started, &finished, &j.ExitCode, &j.Error, &j.InfraLost, &outputs,
		&deadline, &j.Decision, &j.DecidedBy, &decided, &j.DecisionComment)
	if err == nil {
		j.Outputs, err = DecodeInputs(outputs)
	}
	j.State = state.JobState(st)
	j.QueuedAt, j.StartedAt, j.FinishedAt = DecTime(queued), DecTime(started), DecTime(finished)
	j.ApprovalDeadline, j.DecidedAt = DecTime(deadline), DecTime(decided)
	return j, err
}

// ScanAttempt reads a row of AttemptCols.
func ScanAttempt(sc Scanner) (store.Attempt, error) {
	var a store.Attempt
	var st string
	var assigned, started, finished, cpu int64
	err := sc.Scan(&a.JobID, &a.N, &a.WorkerID, &st, &assigned, &started, &finished, &a.ExitCode, &a.Error, &a.Reason, &a.PeakMemory, &cpu)
	a.State = state.AttemptState(st)
	a.AssignedAt, a.StartedAt, a.FinishedAt = DecTime(assigned), DecTime(started), DecTime(finished)
	a.CPUTime = time.Duration(cpu)
	return a, err
}

// ScanLog reads a row of LogCols.
func ScanLog(sc Scanner) (store.LogChunk, error) {
	var c store.LogChunk
	var at int64
	err := sc.Scan(&c.JobID, &c.Attempt, &c.Seq, &c.Step, &c.Data, &at)
	c.At = DecTime(at)
	return c, err
}

// ScanCarriedJob reads a row of job_id, job_key, from_run, from_job,
// from_attempt of carried_jobs.
func ScanCarriedJob(sc Scanner) (store.CarriedJob, error) {
	var c store.CarriedJob
	err := sc.Scan(&c.JobID, &c.JobKey, &c.FromRun, &c.FromJob, &c.FromAttempt)
	return c, err
}

// EncTime encodes t as unix nanoseconds, the zero time as 0: both stores
// keep times as integers, so that they sort and compare alike.
func EncTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// DecTime is the inverse of EncTime; it returns times in UTC.
func DecTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// EncodeIncludes is the includes column of a run: the files its pipeline
// includes, by name, as a JSON object of base64 strings, or "" for none.
func EncodeIncludes(in map[string][]byte) string {
	if len(in) == 0 {
		return ""
	}
	data, err := json.Marshal(in)
	if err != nil {
		return "" // a map of byte slices always encodes
	}
	return string(data)
}

// DecodeIncludes reads the includes column of a run.
func DecodeIncludes(s string) (map[string][]byte, error) {
	if s == "" {
		return nil, nil
	}
	var in map[string][]byte
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("includes: %w", err)
	}
	return in, nil
}

// EncodeInputs is the inputs column of a run (and the outputs column of a
// job): a map of strings as a JSON object, or "" for none.
func EncodeInputs(in map[string]string) string {
	if len(in) == 0 {
		return ""
	}
	data, err := json.Marshal(in)
	if err != nil {
		return "" // a map of strings always encodes
	}
	return string(data)
}

// DecodeInputs reads the inputs column of a run.
func DecodeInputs(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var in map[string]string
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("inputs of a run: %w", err)
	}
	return in, nil
}
