package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
	"github.com/hodei-ci/hodei/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t)
	})
}

// openTemp opens a new database in a temporary directory. The caller closes
// it.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "data", "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustClose(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

func testRun(id string, st state.RunState) store.Run {
	return store.Run{ID: id, Pipeline: "p", File: "p.yaml", Tenant: "t", State: st, Source: []byte("src"), CreatedAt: t0}
}

func testJob(runID string, i int) store.Job {
	return store.Job{
		ID: fmt.Sprintf("%s.j%d", runID, i), RunID: runID, Key: fmt.Sprintf("j%d", i), Name: "job", Index: i,
		State: state.JobQueued, Spec: []byte(`{"steps":[]}`), MaxAttempts: 1, QueuedAt: t0,
	}
}

type migrationRow struct {
	version   int
	appliedAt int64
}

func migrationRows(t *testing.T, path string) []migrationRow {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT version, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.version, &r.appliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrationsIdempotent(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, m := range ms {
		all = append(all, m.Version)
	}

	path := filepath.Join(t.TempDir(), "hodei.db")
	s := mustOpen(t, path)
	if !slices.Equal(s.applied, all) {
		t.Errorf("first Open applied %v, want %v", s.applied, all)
	}
	mustClose(t, s)
	first := migrationRows(t, path)
	if len(first) != len(ms) {
		t.Fatalf("schema_migrations has %v, want versions %v", first, all)
	}
	for _, r := range first {
		if r.appliedAt == 0 {
			t.Errorf("migration %d recorded without applied_at", r.version)
		}
	}

	for range 2 {
		s = mustOpen(t, path)
		if len(s.applied) != 0 {
			t.Errorf("reopening applied %v, want nothing", s.applied)
		}
		mustClose(t, s)
	}
	if again := migrationRows(t, path); !slices.Equal(again, first) {
		t.Errorf("schema_migrations changed on reopen: %v, was %v", again, first)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hodei.db")
	mustClose(t, mustOpen(t, path))
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	newer := ms[len(ms)-1].Version + 1

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)", newer); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(newer)) {
		t.Errorf("error %q does not name the database's version %d", err, newer)
	}
	if rows := migrationRows(t, path); len(rows) != len(ms)+1 {
		t.Errorf("a refused Open changed schema_migrations: %v", rows)
	}
}

func TestParseMigrations(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("CREATE TABLE x (a INTEGER);")}
	for _, tc := range []struct {
		name  string
		files []string
		want  []int // nil: an error
	}{
		{"ordered", []string{"m/0002_b.sql", "m/0001_a.sql", "m/0003_c.sql", "m/README.md"}, []int{1, 2, 3}},
		{"gap", []string{"m/0001_a.sql", "m/0003_c.sql"}, []int{1, 3}},
		{"duplicate", []string{"m/0001_a.sql", "m/0001_b.sql"}, nil},
		{"not starting at 1", []string{"m/0002_a.sql"}, nil},
		{"bad name", []string{"m/0001_a.sql", "m/two_b.sql"}, nil},
		{"no underscore", []string{"m/0001.sql"}, nil},
		{"empty", []string{"m/README.md"}, nil},
	} {
		fsys := fstest.MapFS{}
		for _, f := range tc.files {
			fsys[f] = sql
		}
		ms, err := parseMigrations(fsys, "m")
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: parsed %v, want an error", tc.name, ms)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []int
		for _, m := range ms {
			got = append(got, m.Version)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: versions %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hodei.db")
	s := mustOpen(t, path)
	run := testRun("run-1", state.RunRunning)
	job := testJob(run.ID, 0)
	att := store.Attempt{JobID: job.ID, N: 1, WorkerID: "w-1", State: state.AttemptRunning, AssignedAt: t0}
	chunk := store.LogChunk{JobID: job.ID, Attempt: 1, Seq: 1, Step: 0, Data: []byte("hello\n"), At: t0}
	worker := store.Worker{ID: "w-1", Pool: "p", State: state.WorkerBusy, Labels: []string{"a"}, FirstSeen: t0, LastSeen: t0}
	storetest.Update(t, s, func(tx store.Tx) error {
		return errors.Join(tx.InsertRun(run), tx.InsertJobs([]store.Job{job}), tx.UpsertAttempt(att),
			tx.AppendLogs([]store.LogChunk{chunk}), tx.UpsertWorker(worker))
	})
	mustClose(t, s)

	s = mustOpen(t, path)
	defer mustClose(t, s)
	if got, err := s.GetRun(ctx, run.ID); err != nil || got.State != run.State || !got.CreatedAt.Equal(t0) {
		t.Errorf("GetRun after reopen = %+v, %v", got, err)
	}
	if got, err := s.GetJob(ctx, job.ID); err != nil || got.Key != job.Key {
		t.Errorf("GetJob after reopen = %+v, %v", got, err)
	}
	if got, err := s.ListAttempts(ctx, job.ID); err != nil || len(got) != 1 {
		t.Errorf("ListAttempts after reopen = %+v, %v", got, err)
	}
	if got, err := s.ReadLogs(ctx, job.ID, 0, 0, 10); err != nil || len(got) != 1 || string(got[0].Data) != "hello\n" {
		t.Errorf("ReadLogs after reopen = %+v, %v", got, err)
	}
	if got, err := s.ListWorkers(ctx); err != nil || len(got) != 1 || !slices.Equal(got[0].Labels, worker.Labels) {
		t.Errorf("ListWorkers after reopen = %+v, %v", got, err)
	}
}

func TestConnectionSettings(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer mustClose(t, s)
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "synchronous", "1"}, // NORMAL
		{s.w, "foreign_keys", "1"},
		{s.w, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
		{s.r, "journal_mode", "wal"},
		{s.r, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
	} {
		var got string
		if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
		}
	}
	if _, err := s.r.ExecContext(ctx, "INSERT INTO workers (id, pool, state, labels, cpu_milli, memory_bytes, gpu, boot_id, first_seen, last_seen) VALUES ('w', '', '', '[]', 0, 0, 0, '', 0, 0)"); err == nil {
		t.Error("a write through the read pool succeeded")
	}
}

// TestNoSyncTurnsSynchronousOff checks that OpenWith's NoSync reaches the
// writer's connection (synchronous=OFF) and leaves the rest as Open does.
func TestNoSyncTurnsSynchronousOff(t *testing.T) {
	ctx := context.Background()
	s, err := OpenWith(filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, s)
	for pragma, want := range map[string]string{"synchronous": "0", "journal_mode": "wal", "foreign_keys": "1"} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
}

// TestQueryPlans checks that the read queries use the indexes meant for
// them and sort nothing in a temporary B-tree. In particular ActiveRuns must
// use the partial index runs_active, whose WHERE clause lives in the
// migration and must match schema.ActiveRunsWhere exactly.
func TestQueryPlans(t *testing.T) {
	s := openTemp(t)
	defer mustClose(t, s)
	for _, tc := range []struct {
		query string
		args  []any
		uses  []string
	}{
		{schema.GetRunSQL, []any{"r"}, nil},
		{schema.GetJobSQL, []any{"j"}, nil},
		{schema.ListJobsSQL, []any{"r"}, []string{"jobs_run_idx"}},
		{schema.ListAttemptsSQL, []any{"j"}, nil},
		{schema.ReadLogsSQL, []any{"j", 1, 2, 10}, []string{"(job_id=? AND (attempt,seq)>(?,?))"}},
		{schema.CountRunsSQL, nil, []string{"COVERING INDEX runs_state_id"}},
		{schema.ActiveRunsSQL, nil, []string{"runs_active"}},
		{schema.ActiveJobsSQL, nil, []string{"runs_active", "jobs_run_idx"}},
		{recentDurationsSQL, []any{"succeeded", 10}, []string{"jobs_state_finished"}},
		{"SELECT " + schema.RunCols + " FROM runs WHERE state = ? AND id < ? ORDER BY id DESC LIMIT ?", []any{"queued", "r", 5}, []string{"runs_state_id"}},
		{"SELECT " + schema.RunCols + " FROM runs WHERE tenant = ? AND id < ? ORDER BY id DESC LIMIT ?", []any{"t", "r", 5}, []string{"runs_tenant_id"}},
		{"SELECT " + schema.RunCols + " FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?", []any{"r", 5}, nil},
		{schema.PendingFiringsSQL, nil, []string{"schedule_firings_pending"}},
		{schema.LastFiringSQL, []any{"t", "r", "f", "s"}, []string{"sqlite_autoindex_schedule_firings_1 (tenant=? AND repo=? AND file=? AND schedule=?)"}},
	} {
		rows, err := s.r.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n")
		for _, want := range tc.uses {
			if !strings.Contains(text, want) {
				t.Errorf("%s\ndoes not use %s; plan:\n%s", tc.query, want, text)
			}
		}
		if strings.Contains(text, "TEMP B-TREE") {
			t.Errorf("%s\nsorts in a temporary B-tree; plan:\n%s", tc.query, text)
		}
	}
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%20e")
	path := filepath.Join(dir, "hodei.db")
	s := mustOpen(t, path)
	storetest.Update(t, s, func(tx store.Tx) error { return tx.InsertRun(testRun("run-1", state.RunQueued)) })
	if _, err := s.GetRun(context.Background(), "run-1"); err != nil {
		t.Error(err)
	}
	mustClose(t, s)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %s: %v", path, err)
	}
}

// A migration numbered below one the database already has (merged later
// from a branch developed beside it) is still applied, once.
func TestMigrateAppliesAGapFilledLater(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "gap.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	file := func(q string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(q)} }
	first := fstest.MapFS{
		"m/0001_a.sql": file("CREATE TABLE a (x INTEGER);"),
		"m/0003_c.sql": file("CREATE TABLE c (x INTEGER);"),
	}
	later := fstest.MapFS{
		"m/0001_a.sql": first["m/0001_a.sql"],
		"m/0002_b.sql": file("CREATE TABLE b (x INTEGER);"),
		"m/0003_c.sql": first["m/0003_c.sql"],
	}
	now := func() time.Time { return time.Unix(1, 0) }
	for _, step := range []struct {
		fs   fstest.MapFS
		want []int
	}{{first, []int{1, 3}}, {later, []int{2}}, {later, nil}} {
		ms, err := parseMigrations(step.fs, "m")
		if err != nil {
			t.Fatal(err)
		}
		applied, err := migrate(context.Background(), db, ms, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(applied, step.want) {
			t.Fatalf("applied %v, want %v", applied, step.want)
		}
	}
	if _, err := db.Exec("INSERT INTO b (x) VALUES (1)"); err != nil {
		t.Fatalf("table of the late migration: %v", err)
	}
}

// BenchmarkStore runs the benchmarks every store runs (storetest.Bench).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := Open(filepath.Join(b.TempDir(), "hodei.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
