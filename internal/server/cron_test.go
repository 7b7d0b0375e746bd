package server

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// testClock is the schedules' clock of a test: it moves only when the
// test sets it.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(s string) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

const nightlyPipeline = `name: nightly
on:
  push: {branches: [main]}
  schedule:
    - {cron: "0 3 * * *", branch: main, timezone: Europe/Madrid}
    - {cron: "30 3 * * *", timezone: Europe/Madrid, missed: skip}
    - {cron: "0 4 * * *", branch: nobranch}
jobs:
  report:
    steps:
      - run: echo "EVENT=$HODEI_EVENT EXPR=${{ hodei.event }} BRANCH=${{ hodei.branch }} HEAD=$(git rev-parse HEAD)"
`

// cronServer starts a server on dataDir and storeURL whose schedules the
// test drives (Server.Cron.Tick) with clock.
func cronServer(t *testing.T, dataDir, storeURL string, clock *testClock) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir:           dataDir,
		Store:             storeURL,
		NATSListen:        "none",
		HTTPAddr:          "127.0.0.1:0",
		LocalWorkers:      1,
		WorkerTTL:         2 * time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
		CronTick:          -1,
		CronNow:           clock.Now,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitForWorkers(ctx, 1); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

// scheduleRuns returns the runs made by schedules, oldest first, with
// their triggers.
func scheduleRuns(t *testing.T, s *Server) ([]store.Run, map[string]store.Trigger) {
	t.Helper()
	ctx := context.Background()
	runs, err := s.Store.ListRuns(ctx, store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	trs, err := s.Store.GetTriggers(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Run
	for i := len(runs) - 1; i >= 0; i-- {
		if trs[runs[i].ID].Event == "schedule" {
			out = append(out, runs[i])
		}
	}
	return out, trs
}

// TestCronFiresOnceAcrossRestart: each firing of a schedule makes one run,
// whose jobs see event schedule in HODEI_EVENT and hodei.event; a tick
// again, a second Cron on the same store (a second try) and a restart make
// nothing more; a firing claimed before the server stopped, whose run was
// never made, is made once at the restart; firings missed while no server
// ran make one run (missed: run_once) or none (missed: skip); a firing on a
// branch that does not exist records why and makes no run. On SQLite and
// on PostgreSQL.
func TestCronFiresOnceAcrossRestart(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			storeURL := ""
			if backend == "postgres" {
				storeURL = pgtest.DB(t)
			}
			testCronAcrossRestart(t, storeURL)
		})
	}
}

func testCronAcrossRestart(t *testing.T, storeURL string) {
	const token, secret = "ghs_cronT0ken", "cron hook secret"
	ctx := context.Background()
	g := newGitServer(t, forge.GitHub, token)
	w := newWorkRepo(t, g)
	commit := w.commit(t, "nightly", map[string]string{".hodei.yaml": nightlyPipeline})
	w.push(t, "main")

	dataDir := t.TempDir()
	clock := &testClock{}
	clock.set("2026-12-07T01:00:00Z") // 02:00 in Madrid
	a := cronServer(t, dataDir, storeURL, clock)
	aClosed := false
	defer func() {
		if !aClosed {
			a.Close()
		}
	}()
	addRepo(t, a, g, forge.GitHub, token, secret)

	// First sight of the schedules: counted from now, no run.
	a.Cron.Tick(ctx)
	if runs, _ := scheduleRuns(t, a); len(runs) != 0 {
		t.Fatalf("first tick made %d runs, want none", len(runs))
	}

	// 03:00:20 in Madrid (CET, UTC+1): the first schedule fires.
	sub := a.Hub.Subscribe("", 1<<16)
	defer sub.Close()
	clock.set("2026-12-07T02:00:20Z")
	a.Cron.Tick(ctx)
	clock.set("2026-12-07T02:00:50Z")
	a.Cron.Tick(ctx)
	(&repos.Cron{Svc: a.Repos, Now: clock.Now}).Tick(ctx) // a second try
	runs, trs := scheduleRuns(t, a)
	if len(runs) != 1 {
		t.Fatalf("the 03:00 firing made %d runs, want 1", len(runs))
	}
	first := runs[0]
	if tr := trs[first.ID]; tr.Commit != commit || tr.Branch != "main" || tr.Ref != "refs/heads/main" {
		t.Errorf("trigger of the scheduled run = %+v, want commit %s on main", tr, commit)
	}
	st, logs := runLogs(t, a, sub, first.ID)
	if st != state.RunSucceeded {
		t.Fatalf("scheduled run %s, logs:\n%s", st, logs)
	}
	if want := "EVENT=schedule EXPR=schedule BRANCH=main HEAD=" + commit; !strings.Contains(logs, want) {
		t.Errorf("logs of the scheduled run lack %q:\n%s", want, logs)
	}

	// A re-run of the scheduled run keeps its trigger: the same commit
	// checked out, the same event.
	again, err := a.Rerun(ctx, first.ID, false, "")
	if err != nil {
		t.Fatal(err)
	}
	st, logs = runLogs(t, a, sub, again.ID)
	if want := "EVENT=schedule EXPR=schedule BRANCH=main HEAD=" + commit; st != state.RunSucceeded || !strings.Contains(logs, want) {
		t.Errorf("re-run of the scheduled run: %s, logs lack %q:\n%s", st, want, logs)
	}
	if trs, err := a.Store.GetTriggers(ctx, []string{again.ID}); err != nil || trs[again.ID].Commit != commit || trs[again.ID].Event != "schedule" || trs[again.ID].Delivery != "rerun:"+first.ID {
		t.Errorf("trigger of the re-run = %+v, %v", trs[again.ID], err)
	}

	// The next day's firing is claimed, and the server stops before its
	// run is made (as a crash between the two would leave it).
	claimed := store.Firing{Tenant: "default", Repo: "app", File: ".hodei.yaml", Schedule: "0 3 * * *|main|Europe/Madrid",
		At: time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC), Kind: store.FiringRun, RecordedAt: time.Date(2026, 12, 8, 2, 0, 1, 0, time.UTC)}
	if ok, err := a.Store.ClaimFiring(ctx, claimed); err != nil || !ok {
		t.Fatalf("claim the next firing: %v, %v", ok, err)
	}
	// Its maker may still be making it: a tick 30 s later leaves it be
	// (and the firing being claimed, makes nothing of it either).
	clock.set("2026-12-08T02:00:31Z")
	a.Cron.Tick(ctx)
	if runs, _ := scheduleRuns(t, a); len(runs) != 2 {
		t.Fatalf("a tick 30 s after the claim: %d scheduled runs, want 2", len(runs))
	}
	a.Close()
	aClosed = true

	// The restart, 3 minutes later: the firing claimed (longer than
	// repos.DefaultCronResumeAfter ago) makes its one run; the second
	// schedule's 03:30 of the day before was missed and is skipped.
	clock.set("2026-12-08T02:03:00Z")
	b := cronServer(t, dataDir, storeURL, clock)
	defer b.Close()
	b.Cron.Tick(ctx)
	b.Cron.Tick(ctx)
	runs, _ = scheduleRuns(t, b)
	if len(runs) != 3 { // the re-run's trigger is a schedule's too
		t.Fatalf("after the restart: %d scheduled runs, want 3", len(runs))
	}
	last, err := b.Store.LastFiring(ctx, "default", "app", ".hodei.yaml", claimed.Schedule)
	if err != nil || last.RunID != runs[2].ID || !last.At.Equal(claimed.At) {
		t.Errorf("the claimed firing = %+v (%v), want run %s", last, err, runs[2].ID)
	}

	// Down for two days: two firings of each schedule missed; the first
	// schedule makes one run for them, the second none.
	clock.set("2026-12-10T09:00:00Z")
	b.Cron.Tick(ctx)
	b.Cron.Tick(ctx)
	runs, _ = scheduleRuns(t, b)
	if len(runs) != 4 {
		t.Fatalf("after two days down: %d scheduled runs, want 4", len(runs))
	}
	firings, err := b.Store.ListFirings(ctx, "default", "app")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range firings {
		line := f.At.Format("01-02T15:04") + " " + f.Kind + " " + strings.Join(strings.Fields(f.Schedule)[:2], " ")
		if f.Error != "" {
			line += " error"
			if !strings.Contains(f.Error, "nobranch") {
				t.Errorf("the error of a firing on a missing branch does not name it: %s", f.Error)
			}
		}
		got = append(got, line)
	}
	want := []string{
		"12-07T01:00 seen 0 3", "12-07T01:00 seen 0 4", "12-07T01:00 seen 30 3",
		"12-07T02:00 run 0 3",
		"12-07T02:30 skipped 30 3",  // seen missed on the 8th
		"12-07T04:00 run 0 4 error", // missed, run once: its branch does not exist
		"12-08T02:00 run 0 3",
		"12-10T02:00 run 0 3",
		"12-10T02:30 skipped 30 3",
		"12-10T04:00 run 0 4 error",
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("firings:\n got %v\nwant %v", got, want)
	}
}
