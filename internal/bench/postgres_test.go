package bench

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// hodei bench fleet --store postgres://...: the server keeps its runs in
// that database, and every job runs once.
func TestBenchFleetOnPostgres(t *testing.T) {
	db := pgtest.DB(t)
	res, ran := runFleet(t, Options{
		Pipelines: 60, Concurrency: 8, Agents: 6, StartParallel: 3, DataDir: t.TempDir(), Store: db,
		HeartbeatInterval: 2 * time.Second,
	})
	if res.Jobs != 60 || res.Failed != 0 {
		t.Fatalf("%d jobs, %d failed runs", res.Jobs, res.Failed)
	}
	for id, n := range ran {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	if len(ran) != 60 {
		t.Errorf("the simulated agents ran %d jobs, want 60", len(ran))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connecting to the benchmark's database: %v", err)
	}
	defer conn.Close(ctx)
	var runs int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&runs); err != nil {
		t.Fatalf("counting runs: %v", err)
	}
	if runs != 60 {
		t.Errorf("the database holds %d runs, want 60", runs)
	}
}
