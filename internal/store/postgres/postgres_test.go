package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
	"github.com/hodei-ci/hodei/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, pgtest.DB(t))
	})
}

func mustOpen(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// twoStores opens two Stores on one new database, as two server
// processes would; they are closed when t ends.
func twoStores(t testing.TB) (a, b *Store) {
	t.Helper()
	url := pgtest.DB(t)
	a, b = mustOpen(t, url), mustOpen(t, url)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// openTemp opens a store on a new database; it is closed when t ends.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s := mustOpen(t, pgtest.DB(t))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

func testRun(id string, st state.RunState) store.Run {
	return store.Run{ID: id, Pipeline: "p", File: "p.yaml", Tenant: "t", State: st, Source: []byte("name: p"), CreatedAt: t0}
}

func testJob(runID string, i int) store.Job {
	return store.Job{
		ID: fmt.Sprintf("%s.j%d", runID, i), RunID: runID, Key: fmt.Sprintf("j%d", i), Name: fmt.Sprintf("j%d", i),
		Index: i, State: state.JobPending, Spec: []byte(`{}`), MaxAttempts: 1,
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	url := pgtest.DB(t)
	s := mustOpen(t, url)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, m := range ms {
		all = append(all, m.Version)
	}
	if !slices.Equal(s.applied, all) {
		t.Errorf("first Open applied %v, want %v", s.applied, all)
	}
	storetest.Update(t, s, func(tx store.Tx) error { return tx.InsertRun(testRun("run-1", state.RunQueued)) })
	s.Close()

	s = mustOpen(t, url)
	defer s.Close()
	if len(s.applied) != 0 {
		t.Errorf("second Open applied %v, want none", s.applied)
	}
	if _, err := s.GetRun(context.Background(), "run-1"); err != nil {
		t.Errorf("run written before the reopen: %v", err)
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations WHERE applied_at > 0").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Errorf("schema_migrations has %d rows with applied_at, want %d", n, len(all))
	}
}

// TestOpenTogether: servers started at once against an empty database
// migrate it one at a time (the advisory lock), and all of them open.
func TestOpenTogether(t *testing.T) {
	url := pgtest.DB(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), url)
		}()
	}
	wg.Wait()
	applied := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		if len(stores[i].applied) > 0 {
			applied++
		}
		stores[i].Close()
	}
	if applied != 1 {
		t.Errorf("%d of %d Opens applied migrations, want 1", applied, n)
	}
}

func TestSchemaTooNew(t *testing.T) {
	url := pgtest.DB(t)
	s := mustOpen(t, url)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	newer := ms[len(ms)-1].Version + 1
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 1)", newer); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(context.Background(), url); !errors.Is(err, ErrSchemaTooNew) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a database with schema version %d: %v, want ErrSchemaTooNew", newer, err)
	}
}

// TestTwoStoresContend: two Stores on one database (two server processes)
// update the same rows in opposite orders, each holding its first row when
// it asks for the others: a deadlock, which PostgreSQL breaks by failing one
// of the batches. Update sends that batch again, so both Updates commit, each
// whole.
func TestTwoStoresContend(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	a, b := mustOpen(t, url), mustOpen(t, url)
	defer a.Close()
	defer b.Close()
	const jobs = 10
	storetest.Update(t, a, func(stx store.Tx) error {
		run := testRun("run-1", state.RunRunning)
		var js []store.Job
		for k := range jobs {
			js = append(js, testJob(run.ID, k))
		}
		return errors.Join(stx.InsertRun(run), stx.InsertJobs(js))
	})

	// The gate: an advisory lock that the test holds while both batches
	// take their first row; each batch then waits for it (shared) before
	// taking the others.
	const gate = 4242
	gateConn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer gateConn.Close(ctx)
	if _, err := gateConn.Exec(ctx, "SELECT pg_advisory_lock($1)", gate); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for side, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[side] = s.Update(ctx, func(stx store.Tx) error {
				for i := range jobs {
					k := i
					if side == 1 {
						k = jobs - 1 - i
					}
					j := testJob("run-1", k)
					j.Error = fmt.Sprintf("side %d", side)
					if err := stx.UpdateJob(j); err != nil {
						return err
					}
					if i == 0 {
						q := fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", gate)
						stx.(*tx).ops = append(stx.(*tx).ops, op{sql: q, what: func() string { return "wait at the gate" }})
					}
				}
				return nil
			})
		}()
	}

	// Both batches are in other sessions of the server: poll its lock table
	// until both wait at the gate (each then holds its first row).
	deadline := time.Now().Add(time.Minute)
	for {
		var waiting int
		err := gateConn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, gate).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batches wait at the gate after a minute, want 2", waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := gateConn.Exec(ctx, "SELECT pg_advisory_unlock($1)", gate); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for side, err := range errs {
		if err != nil {
			t.Errorf("Update of side %d: %v", side, err)
		}
	}
	if n := a.retries.Load() + b.retries.Load(); n == 0 {
		t.Error("no batch was sent again: the deadlock did not happen")
	}
	got, err := a.ListJobs(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	// Each batch committed whole: every job carries the mark of the
	// batch that committed last.
	for _, j := range got {
		if j.Error != got[0].Error || j.Error == "" {
			t.Errorf("job %s: %q, job %s: %q: want one batch's mark on all", j.ID, j.Error, got[0].ID, got[0].Error)
		}
	}
}

// TestRetryableErrors: a serialization failure and a deadlock are sent
// again; a conflict is not.
func TestRetryableErrors(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for _, code := range []string{"40001", "40P01"} {
		err := s.pool.QueryRow(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '"+code+"'; END $$").Scan()
		if !retryable(err) {
			t.Errorf("error %s: retryable = false, want true (%v)", code, err)
		}
	}
	err := s.Update(ctx, func(tx store.Tx) error {
		return errors.Join(tx.InsertRun(testRun("run-1", state.RunQueued)), tx.InsertRun(testRun("run-1", state.RunQueued)))
	})
	if retryable(err) || !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate insert: %v, want a conflict that is not retried", err)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("unexpected %v", err)
	}
}

// BenchmarkStore runs the benchmarks every store runs (storetest.Bench).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return mustOpen(b, pgtest.DB(b)) })
}

// TestUnavailableWhileTheDatabaseIsDown: while the database is down (a
// restart, a failover), reads and commits fail with store.ErrUnavailable,
// which the API answers with a 503 and Retry-After; once it is back, the
// same store works again, and an error of the statement itself (a missing
// row, a duplicate) is not taken for an outage.
func TestUnavailableWhileTheDatabaseIsDown(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Private(t)
	s := mustOpen(t, pgtest.NewDB(t, pg.URL()))
	t.Cleanup(func() { _ = s.Close() })
	storetest.Update(t, s, func(tx store.Tx) error { return tx.InsertRun(testRun("run-1", state.RunQueued)) })

	pg.Stop()
	if _, err := s.RunByKey(ctx, "t", "k-1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("read with the database down: %v, want store.ErrUnavailable", err)
	}
	if _, err := s.GetRun(ctx, "run-1"); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("get with the database down: %v, want store.ErrUnavailable only", err)
	}
	err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertRun(testRun("run-2", state.RunQueued)) })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("commit with the database down: %v, want store.ErrUnavailable", err)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunByKey(ctx, "t", "k-1"); !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("read of a missing key with the database back: %v, want store.ErrNotFound only", err)
	}
	err = s.Update(ctx, func(tx store.Tx) error { return tx.InsertRun(testRun("run-1", state.RunQueued)) })
	if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("duplicate insert with the database back: %v, want store.ErrConflict only", err)
	}
	if err := pgx.ErrNoRows; errors.Is(storeErr(err), store.ErrUnavailable) {
		t.Errorf("storeErr(%v) says unavailable", err)
	}
}
