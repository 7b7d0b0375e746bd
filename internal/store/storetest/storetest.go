// Package storetest is the conformance suite of store.Store: every
// implementation runs it from its own tests, so that they all behave alike.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := Open(filepath.Join(t.TempDir(), "hodei.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Run runs the conformance suite. open is called once per subtest and must
// return a new, empty store; the suite closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"RunInsertGet", testRunInsertGet},
		{"RunInsertConflict", testRunInsertConflict},
		{"RunUpdate", testRunUpdate},
		{"NotFound", testNotFound},
		{"ListRunsOrderAndFilters", testListRunsOrderAndFilters},
		{"ListRunsPagination", testListRunsPagination},
		{"ListRunsLimits", testListRunsLimits},
		{"Jobs", testJobs},
		{"JobsOtherRun", testJobsOtherRun},
		{"JobApproval", testJobApproval},
		{"JobInsertConflict", testJobInsertConflict},
		{"Attempts", testAttempts},
		{"AppendLogsIdempotent", testAppendLogsIdempotent},
		{"ReadLogsPagination", testReadLogsPagination},
		{"ActiveRuns", testActiveRuns},
		{"CountRuns", testCountRuns},
		{"RecentDurations", testRecentDurations},
		{"Workers", testWorkers},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"ReadsDuringWrite", testReadsDuringWrite},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"MissingParents", testMissingParents},
		{"FailedStatementRollsBackTheBatch", testFailedStatementRollsBackTheBatch},
		{"TxAfterUpdate", testTxAfterUpdate},
		{"UpdatePanicRollsBack", testUpdatePanicRollsBack},
		{"UpdateCanceledContext", testUpdateCanceledContext},
		{"CloseTwice", testCloseTwice},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Repos", testRepos},
		{"Deliveries", testDeliveries},
		{"Triggers", testTriggers},
		{"StatusReports", testStatusReports},
		{"Firings", testFirings},
		{"Reruns", testReruns},
		{"Artifacts", testArtifacts},
		{"JobOutputs", testJobOutputs},
		{"RunIncludes", testRunIncludes},
		{"RunKeys", testRunKeys},
		{"EpochOnSingleServer", testEpochOnSingleServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// base is the time fixtures are made from: nanoseconds, and not UTC, so that
// a store that drops either fails.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+1", 3600))

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

func runID(i int) string { return fmt.Sprintf("run-%05d", i) }

// newRun returns a run with every field set.
func newRun(id string, st state.RunState, tenant string) store.Run {
	r := store.Run{
		ID:        id,
		Pipeline:  "build",
		File:      "pipelines/build.yaml",
		Tenant:    tenant,
		Priority:  3,
		State:     st,
		Source:    []byte("name: build\njobs: {}\n"),
		CreatedAt: at(1),

		ConcurrencyGroup: "deploy-" + tenant,
		ConcurrencyLimit: 2,
		Inputs:           map[string]string{"env": "prod", "note": "a \"quoted\" value"},
	}
	if st != state.RunQueued {
		r.StartedAt = at(2)
	}
	if st.Final() {
		r.FinishedAt = at(3)
		r.Error = "boom"
	}
	return r
}

// newJob returns a job of run with every field set.
func newJob(runID, key string, index int, st state.JobState) store.Job {
	return store.Job{
		ID:          runID + "." + key,
		RunID:       runID,
		Key:         key,
		Name:        "job " + key,
		Index:       index,
		State:       st,
		Spec:        []byte(`{"image":"alpine","steps":[{"run":"make"}]}`),
		Attempt:     1,
		MaxAttempts: 3,
		WorkerID:    "w-1",
		QueuedAt:    at(10),
		StartedAt:   at(11),
		FinishedAt:  at(12),
		ExitCode:    2,
		Error:       "exit status 2",
		InfraLost:   1,
	}
}

func newWorker(id string) store.Worker {
	return store.Worker{
		ID:          id,
		Pool:        "default",
		State:       state.WorkerIdle,
		Labels:      []string{"linux", "amd64", "gpu=a100"},
		CPUMilli:    4000,
		MemoryBytes: 8 << 30,
		GPU:         1,
		BootID:      "boot-" + id,
		FirstSeen:   at(20),
		LastSeen:    at(21),
	}
}

func chunk(jobID string, attempt int, seq int64) store.LogChunk {
	return store.LogChunk{
		JobID:   jobID,
		Attempt: attempt,
		Seq:     seq,
		Step:    int(seq % 3),
		Data:    []byte(fmt.Sprintf("%s attempt %d line %d\n", jobID, attempt, seq)),
		At:      at(int(seq)),
	}
}

// Update runs fn in one s.Update and fails the test if it fails: for the
// stores' own tests too.
func Update(t testing.TB, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func insertRuns(t *testing.T, s store.Store, runs ...store.Run) {
	t.Helper()
	Update(t, s, func(tx store.Tx) error {
		for _, r := range runs {
			if err := tx.InsertRun(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// equal fails the test if got and want differ once normalised: times compared
// as instants, nil and empty slices alike.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(normalize(reflect.ValueOf(got)).Interface(), normalize(reflect.ValueOf(want)).Interface()) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

var timeType = reflect.TypeFor[time.Time]()

func normalize(v reflect.Value) reflect.Value {
	if v.Type() == timeType {
		tm := v.Interface().(time.Time)
		if tm.IsZero() {
			return reflect.ValueOf(time.Time{})
		}
		return reflect.ValueOf(tm.Round(0).UTC())
	}
	switch v.Kind() {
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			n.Field(i).Set(normalize(v.Field(i)))
		}
		return n
	case reflect.Slice:
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			n.Index(i).Set(normalize(v.Index(i)))
		}
		return n
	}
	return v
}

func runIDs(runs []store.Run) []string {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

func jobIDs(jobs []store.Job) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

func chunkKeys(cs []store.LogChunk) []string {
	keys := make([]string, len(cs))
	for i, c := range cs {
		keys[i] = fmt.Sprintf("%s/%d/%d", c.JobID, c.Attempt, c.Seq)
	}
	return keys
}

func testRunInsertGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	want := []store.Run{
		newRun(runID(1), state.RunQueued, "acme"),
		newRun(runID(2), state.RunRunning, "acme"),
		newRun(runID(3), state.RunFailed, "globex"),
	}
	want[0].Source = nil
	insertRuns(t, s, want...)
	for _, w := range want {
		got, err := s.GetRun(ctx, w.ID)
		if err != nil {
			t.Fatalf("GetRun(%s): %v", w.ID, err)
		}
		equal(t, "GetRun("+w.ID+")", got, w)
	}
}

func testRunInsertConflict(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunQueued, "acme")
	insertRuns(t, s, r)

	dup := newRun(runID(1), state.RunRunning, "other")
	err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertRun(dup) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("InsertRun of an existing ID: got %v, want ErrConflict", err)
	}
	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "run after a conflicting insert", got, r)
}

func testRunUpdate(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunQueued, "acme")
	other := newRun(runID(2), state.RunQueued, "acme")
	insertRuns(t, s, r, other)

	r.State = state.RunFailed
	r.StartedAt = at(100)
	r.FinishedAt = at(200)
	r.Error = "job build failed"
	r.Priority = 9
	r.Source = []byte("changed")
	Update(t, s, func(tx store.Tx) error { return tx.UpdateRun(r) })

	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "updated run", got, r)
	got, err = s.GetRun(ctx, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "other run", got, other)

	// Back to zero values: an update replaces the whole record.
	r.StartedAt, r.FinishedAt, r.Error, r.Source = time.Time{}, time.Time{}, "", nil
	Update(t, s, func(tx store.Tx) error { return tx.UpdateRun(r) })
	got, err = s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "run updated to zero values", got, r)
	if !got.StartedAt.IsZero() || !got.FinishedAt.IsZero() {
		t.Errorf("zero times read back as %v, %v", got.StartedAt, got.FinishedAt)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	insertRuns(t, s, newRun(runID(1), state.RunQueued, "acme"))

	if _, err := s.GetRun(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun(missing): got %v, want ErrNotFound", err)
	}
	if _, err := s.GetJob(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob(missing): got %v, want ErrNotFound", err)
	}
	err := s.Update(ctx, func(tx store.Tx) error { return tx.UpdateRun(newRun("missing", state.RunRunning, "acme")) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRun(missing): got %v, want ErrNotFound", err)
	}
	err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateJob(newJob(runID(1), "missing", 0, state.JobQueued)) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateJob(missing): got %v, want ErrNotFound", err)
	}
	jobs, err := s.ListJobs(ctx, "missing")
	if err != nil || len(jobs) != 0 {
		t.Errorf("ListJobs(missing) = %v, %v; want none, nil", jobs, err)
	}
	as, err := s.ListAttempts(ctx, "missing")
	if err != nil || len(as) != 0 {
		t.Errorf("ListAttempts(missing) = %v, %v; want none, nil", as, err)
	}
	cs, err := s.ReadLogs(ctx, "missing", 0, 0, 10)
	if err != nil || len(cs) != 0 {
		t.Errorf("ReadLogs(missing) = %v, %v; want none, nil", cs, err)
	}
}

func testListRunsOrderAndFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Inserted out of order; listed newest (highest ID) first.
	runs := []store.Run{
		newRun(runID(3), state.RunRunning, "acme"),
		newRun(runID(1), state.RunQueued, "acme"),
		newRun(runID(5), state.RunQueued, "globex"),
		newRun(runID(2), state.RunSucceeded, "globex"),
		newRun(runID(4), state.RunQueued, "acme"),
	}
	insertRuns(t, s, runs...)

	for _, tc := range []struct {
		f    store.RunFilter
		want []string
	}{
		{store.RunFilter{}, []string{runID(5), runID(4), runID(3), runID(2), runID(1)}},
		{store.RunFilter{State: state.RunQueued}, []string{runID(5), runID(4), runID(1)}},
		{store.RunFilter{Tenant: "acme"}, []string{runID(4), runID(3), runID(1)}},
		{store.RunFilter{State: state.RunQueued, Tenant: "acme"}, []string{runID(4), runID(1)}},
		{store.RunFilter{State: state.RunCanceled}, nil},
		{store.RunFilter{Tenant: "nobody"}, nil},
		{store.RunFilter{Before: runID(4)}, []string{runID(3), runID(2), runID(1)}},
		{store.RunFilter{Before: runID(4), State: state.RunQueued}, []string{runID(1)}},
		{store.RunFilter{Before: runID(1)}, nil},
		{store.RunFilter{Limit: 2}, []string{runID(5), runID(4)}},
		{store.RunFilter{Limit: 2, Tenant: "globex"}, []string{runID(5), runID(2)}},
	} {
		got, err := s.ListRuns(ctx, tc.f)
		if err != nil {
			t.Fatalf("ListRuns(%+v): %v", tc.f, err)
		}
		if ids := runIDs(got); !slices.Equal(ids, tc.want) {
			t.Errorf("ListRuns(%+v) = %v, want %v", tc.f, ids, tc.want)
		}
	}

	// Listed runs are complete.
	got, err := s.ListRuns(ctx, store.RunFilter{State: state.RunSucceeded})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListRuns(succeeded) = %v, %v", got, err)
	}
	equal(t, "listed run", got[0], runs[3])
}

func testListRunsPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []string
	var runs []store.Run
	for i := 1; i <= 23; i++ {
		runs = append(runs, newRun(runID(i), state.RunQueued, "acme"))
		want = append([]string{runID(i)}, want...)
	}
	insertRuns(t, s, runs...)

	var got []string
	f := store.RunFilter{Limit: 5}
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatalf("pagination does not end; got %v", got)
		}
		rs, err := s.ListRuns(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 5 {
			t.Fatalf("page of %d runs with Limit 5", len(rs))
		}
		if len(rs) == 0 {
			break
		}
		got = append(got, runIDs(rs)...)
		f.Before = rs[len(rs)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %v, want %v", got, want)
	}
}

func testListRunsLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 1005
	runs := make([]store.Run, n)
	for i := range runs {
		runs[i] = newRun(runID(i), state.RunQueued, "acme")
		runs[i].Source = nil
	}
	insertRuns(t, s, runs...)

	for _, tc := range []struct{ limit, want int }{
		{0, 50},
		{-1, 50},
		{7, 7},
		{1000, 1000},
		{1001, 1000},
		{100000, 1000},
	} {
		got, err := s.ListRuns(ctx, store.RunFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("ListRuns(Limit %d) returned %d runs, want %d", tc.limit, len(got), tc.want)
		}
		if len(got) > 0 && got[0].ID != runID(n-1) {
			t.Errorf("ListRuns(Limit %d) starts at %s, want %s", tc.limit, got[0].ID, runID(n-1))
		}
	}
}

func testJobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1 := newRun(runID(1), state.RunRunning, "acme")
	r2 := newRun(runID(2), state.RunQueued, "acme")
	// Inserted out of index order; listed by Index.
	jobs1 := []store.Job{
		newJob(r1.ID, "test", 2, state.JobPending),
		newJob(r1.ID, "build", 0, state.JobRunning),
		newJob(r1.ID, "lint", 1, state.JobQueued),
		newJob(r1.ID, "deploy", 3, state.JobPending),
	}
	jobs1[2].Spec = nil
	jobs2 := []store.Job{newJob(r2.ID, "build", 0, state.JobQueued)}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r1); err != nil {
			return err
		}
		if err := tx.InsertRun(r2); err != nil {
			return err
		}
		if err := tx.InsertJobs(jobs1); err != nil {
			return err
		}
		return tx.InsertJobs(jobs2)
	})

	got, err := s.ListJobs(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Job{jobs1[1], jobs1[2], jobs1[0], jobs1[3]}
	equal(t, "ListJobs", got, want)

	for _, j := range append(jobs1, jobs2...) {
		g, err := s.GetJob(ctx, j.ID)
		if err != nil {
			t.Fatalf("GetJob(%s): %v", j.ID, err)
		}
		equal(t, "GetJob("+j.ID+")", g, j)
	}

	// UpdateJob replaces the whole record, and only that record.
	j := jobs1[1]
	j.State = state.JobSucceeded
	j.Attempt = 2
	j.WorkerID = "w-9"
	j.StartedAt = at(50)
	j.FinishedAt = at(60)
	j.ExitCode = 0
	j.Error = ""
	Update(t, s, func(tx store.Tx) error { return tx.UpdateJob(j) })
	g, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "updated job", g, j)
	g, err = s.GetJob(ctx, jobs1[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "job next to the updated one", g, jobs1[2])

	// Every field is replaced, even those that normally never change.
	moved := jobs1[3]
	moved.RunID = r2.ID
	moved.Key = "deploy-2"
	moved.Index = 1
	moved.Spec = []byte(`{}`)
	Update(t, s, func(tx store.Tx) error { return tx.UpdateJob(moved) })
	g, err = s.GetJob(ctx, moved.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "job with a new run, key and index", g, moved)
	got, err = s.ListJobs(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ids := jobIDs(got); !slices.Equal(ids, []string{j.ID, jobs1[2].ID, jobs1[0].ID}) {
		t.Errorf("ListJobs after a job moved away = %v", ids)
	}
	got, err = s.ListJobs(ctx, r2.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListJobs of the run a job moved to", got, []store.Job{jobs2[0], moved})
}

// testJobApproval checks that a job waiting for an approval keeps its
// deadline through an insert, and its decision, who made it, when and why
// through an update, and that ActiveRuns (what a restart reloads) returns
// them.
func testJobApproval(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunRunning, "acme")
	j := newJob(r.ID, "deploy", 0, state.JobWaitingApproval)
	j.ApprovalDeadline = at(3600)
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r); err != nil {
			return err
		}
		return tx.InsertJobs([]store.Job{j})
	})
	_, jobs, err := s.ActiveRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "waiting job after a restart", jobs, []store.Job{j})

	j.State = state.JobQueued
	j.Decision = store.DecisionApproved
	j.DecidedBy = "alice (user:alice)"
	j.DecidedAt = at(120)
	j.DecisionComment = "release 1.2, ticket OPS-7"
	Update(t, s, func(tx store.Tx) error { return tx.UpdateJob(j) })
	g, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "decided job", g, j)
	if g.Decision != store.DecisionApproved || g.DecidedBy == "" || !g.DecidedAt.Equal(at(120)) {
		t.Errorf("decision = %q by %q at %v", g.Decision, g.DecidedBy, g.DecidedAt)
	}
}

// testJobsOtherRun checks that ListJobs does not mix runs.
func testJobsOtherRun(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1 := newRun(runID(1), state.RunRunning, "acme")
	r2 := newRun(runID(2), state.RunQueued, "acme")
	jobs1 := []store.Job{newJob(r1.ID, "build", 0, state.JobRunning), newJob(r1.ID, "test", 1, state.JobPending)}
	jobs2 := []store.Job{newJob(r2.ID, "build", 0, state.JobQueued)}
	Update(t, s, func(tx store.Tx) error {
		return errors.Join(tx.InsertRun(r1), tx.InsertRun(r2), tx.InsertJobs(jobs1), tx.InsertJobs(jobs2))
	})
	got, err := s.ListJobs(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListJobs of the first run", got, jobs1)
	got, err = s.ListJobs(ctx, r2.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListJobs of the other run", got, jobs2)
}

func testJobInsertConflict(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunQueued, "acme")
	j := newJob(r.ID, "build", 0, state.JobQueued)
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r); err != nil {
			return err
		}
		return tx.InsertJobs([]store.Job{j})
	})
	dup := j
	dup.Name = "other"
	err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertJobs([]store.Job{dup}) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("InsertJobs of an existing ID: got %v, want ErrConflict", err)
	}
	got, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "job after a conflicting insert", got, j)
}

func setupJob(t *testing.T, s store.Store, jobIDs ...string) {
	t.Helper()
	r := newRun(runID(1), state.RunRunning, "acme")
	var jobs []store.Job
	for i, id := range jobIDs {
		j := newJob(r.ID, id, i, state.JobRunning)
		j.ID = id
		jobs = append(jobs, j)
	}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r); err != nil {
			return err
		}
		return tx.InsertJobs(jobs)
	})
}

func testAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	setupJob(t, s, "job-a", "job-b")
	a1 := store.Attempt{JobID: "job-a", N: 1, WorkerID: "w-1", State: state.AttemptAssigned, AssignedAt: at(1)}
	a2 := store.Attempt{JobID: "job-a", N: 2, WorkerID: "w-2", State: state.AttemptRunning, AssignedAt: at(5), StartedAt: at(6)}
	b1 := store.Attempt{JobID: "job-b", N: 1, WorkerID: "w-3", State: state.AttemptRunning, AssignedAt: at(1)}
	Update(t, s, func(tx store.Tx) error {
		for _, a := range []store.Attempt{a2, a1, b1} {
			if err := tx.UpsertAttempt(a); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.ListAttempts(ctx, "job-a")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListAttempts", got, []store.Attempt{a1, a2})

	// Upserting an existing attempt replaces it.
	a1.State = state.AttemptFailed
	a1.StartedAt = at(2)
	a1.FinishedAt = at(3)
	a1.ExitCode = 137
	a1.Error = "worker lost"
	a1.Reason = "lost: worker silent"
	a1.PeakMemory = 123 << 20
	a1.CPUTime = 1500*time.Millisecond + 7*time.Microsecond
	Update(t, s, func(tx store.Tx) error { return tx.UpsertAttempt(a1) })
	got, err = s.ListAttempts(ctx, "job-a")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListAttempts after upsert", got, []store.Attempt{a1, a2})
	got, err = s.ListAttempts(ctx, "job-b")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListAttempts of the other job", got, []store.Attempt{b1})
}

func appendLogs(t *testing.T, s store.Store, cs ...store.LogChunk) {
	t.Helper()
	Update(t, s, func(tx store.Tx) error { return tx.AppendLogs(cs) })
}

func testAppendLogsIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	setupJob(t, s, "job-a")
	c1, c2, c3, c4 := chunk("job-a", 1, 1), chunk("job-a", 1, 2), chunk("job-a", 1, 3), chunk("job-a", 1, 4)
	c4.Step = -1
	c4.Data = nil
	appendLogs(t, s, c1, c2)
	c2again := c2
	c2again.Data = []byte("a second copy must not replace the first")
	appendLogs(t, s, c2again, c3)
	appendLogs(t, s, c4, c4, c1) // twice in one call, and once more an old one

	got, err := s.ReadLogs(ctx, "job-a", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ReadLogs", got, []store.LogChunk{c1, c2, c3, c4})
}

func testReadLogsPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	setupJob(t, s, "job-a", "job-b")
	var all []store.LogChunk
	for seq := int64(1); seq <= 5; seq++ {
		all = append(all, chunk("job-a", 1, seq))
	}
	for seq := int64(1); seq <= 3; seq++ {
		all = append(all, chunk("job-a", 2, seq))
	}
	// Stored out of order, across attempts, with another job's chunks.
	shuffled := []store.LogChunk{all[6], all[2], all[0], all[7], all[4], all[1], all[5], all[3],
		chunk("job-b", 1, 1), chunk("job-b", 2, 1)}
	appendLogs(t, s, shuffled[:4]...)
	appendLogs(t, s, shuffled[4:]...)

	got, err := s.ReadLogs(ctx, "job-a", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ReadLogs(0, 0, 100)", got, all)

	for _, tc := range []struct {
		attempt int
		seq     int64
		limit   int
		want    []store.LogChunk
	}{
		{0, 0, 3, all[0:3]},
		{1, 3, 3, all[3:6]},
		{2, 1, 3, all[6:8]},
		{2, 3, 3, nil},
		{1, 5, 100, all[5:8]},
		{1, 0, 1, all[0:1]},
		{3, 0, 100, nil},
	} {
		got, err := s.ReadLogs(ctx, "job-a", tc.attempt, tc.seq, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(chunkKeys(got), chunkKeys(tc.want)) {
			t.Errorf("ReadLogs(%d, %d, %d) = %v, want %v", tc.attempt, tc.seq, tc.limit, chunkKeys(got), chunkKeys(tc.want))
		}
	}

	// Paging from (0, 0) by the last chunk read reaches every chunk once.
	var paged []store.LogChunk
	attempt, seq := 0, int64(0)
	for range 10 {
		page, err := s.ReadLogs(ctx, "job-a", attempt, seq, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		last := page[len(page)-1]
		attempt, seq = last.Attempt, last.Seq
	}
	equal(t, "paged ReadLogs", paged, all)
}

func testActiveRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	var runs []store.Run
	var jobs []store.Job
	wantRuns := map[string]bool{}
	for i, st := range state.RunStates {
		r := newRun(runID(i+1), st, "acme")
		runs = append(runs, r)
		for k := range 3 {
			// Active runs hold final jobs too; those must come back as well.
			js := state.JobStates[(i+k)%len(state.JobStates)]
			jobs = append(jobs, newJob(r.ID, fmt.Sprintf("j%d", k), k, js))
		}
		if !st.Final() {
			wantRuns[r.ID] = true
		}
	}
	Update(t, s, func(tx store.Tx) error {
		for _, r := range runs {
			if err := tx.InsertRun(r); err != nil {
				return err
			}
		}
		return tx.InsertJobs(jobs)
	})
	if len(wantRuns) == 0 || len(wantRuns) == len(runs) {
		t.Fatalf("fixture: %d of %d runs active", len(wantRuns), len(runs))
	}

	gotRuns, gotJobs, err := s.ActiveRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.Run{}
	for _, r := range runs {
		byID[r.ID] = r
	}
	seen := map[string]bool{}
	for _, r := range gotRuns {
		if !wantRuns[r.ID] {
			t.Errorf("ActiveRuns returned %s in state %s", r.ID, r.State)
		}
		if seen[r.ID] {
			t.Errorf("ActiveRuns returned %s twice", r.ID)
		}
		seen[r.ID] = true
		equal(t, "active run", r, byID[r.ID])
	}
	if len(seen) != len(wantRuns) {
		t.Errorf("ActiveRuns returned %v, want the runs %v", runIDs(gotRuns), wantRuns)
	}

	var wantJobs []store.Job
	for _, j := range jobs {
		if wantRuns[j.RunID] {
			wantJobs = append(wantJobs, j)
		}
	}
	sortJobs := func(js []store.Job) {
		sort.Slice(js, func(a, b int) bool { return js[a].ID < js[b].ID })
	}
	sortJobs(wantJobs)
	gotJobs = slices.Clone(gotJobs)
	sortJobs(gotJobs)
	equal(t, "jobs of ActiveRuns", gotJobs, wantJobs)

	// A run that becomes final leaves the active set.
	done := byID[runID(1)]
	done.State = state.RunCanceled
	done.FinishedAt = at(99)
	Update(t, s, func(tx store.Tx) error { return tx.UpdateRun(done) })
	gotRuns, gotJobs, err = s.ActiveRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range gotRuns {
		if r.ID == done.ID {
			t.Errorf("ActiveRuns still returns %s after it was canceled", done.ID)
		}
	}
	for _, j := range gotJobs {
		if j.RunID == done.ID {
			t.Errorf("ActiveRuns still returns job %s of canceled run %s", j.ID, done.ID)
		}
	}
	if len(gotRuns) != len(wantRuns)-1 {
		t.Errorf("ActiveRuns returned %v after one run was canceled", runIDs(gotRuns))
	}
}

func testCountRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	counts, err := s.CountRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("empty store: CountRuns()[%s] = %d", st, n)
		}
	}

	want := map[state.RunState]int{state.RunQueued: 3, state.RunRunning: 1, state.RunSucceeded: 2, state.RunCanceled: 1}
	var runs []store.Run
	i := 0
	for _, st := range state.RunStates {
		for range want[st] {
			i++
			runs = append(runs, newRun(runID(i), st, "acme"))
		}
	}
	insertRuns(t, s, runs...)
	counts, err = s.CountRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range state.RunStates {
		if counts[st] != want[st] {
			t.Errorf("CountRuns()[%s] = %d, want %d", st, counts[st], want[st])
		}
	}
	for st := range counts {
		if !slices.Contains(state.RunStates, st) {
			t.Errorf("CountRuns() has unknown state %q", st)
		}
	}
}

func testRecentDurations(t *testing.T, s store.Store) {
	ctx := context.Background()
	got, err := s.RecentDurations(ctx, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	r := newRun(runID(1), state.RunSucceeded, "acme")
	insertRuns(t, s, r)
	var jobs []store.Job
	for i := 1; i <= 4; i++ {
		j := newJob(r.ID, fmt.Sprintf("k%d", i), i, state.JobSucceeded)
		j.StartedAt = at(100 * i)
		j.FinishedAt = at(100*i + i) // ran i seconds, finished in key order
		jobs = append(jobs, j)
	}
	failed := newJob(r.ID, "failed", 5, state.JobFailed)
	jobs = append(jobs, failed)
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertJobs(jobs) }); err != nil {
		t.Fatal(err)
	}
	got, err = s.RecentDurations(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	// The three most recent, oldest first; failed jobs are left out.
	want := []store.Duration{
		{Pipeline: "build", JobKey: "k2", Ran: 2 * time.Second, FinishedAt: at(202)},
		{Pipeline: "build", JobKey: "k3", Ran: 3 * time.Second, FinishedAt: at(303)},
		{Pipeline: "build", JobKey: "k4", Ran: 4 * time.Second, FinishedAt: at(404)},
	}
	if len(got) != len(want) {
		t.Fatalf("RecentDurations = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Pipeline != want[i].Pipeline || got[i].JobKey != want[i].JobKey || got[i].Ran != want[i].Ran || !got[i].FinishedAt.Equal(want[i].FinishedAt) {
			t.Errorf("RecentDurations[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func testWorkers(t *testing.T, s store.Store) {
	ctx := context.Background()
	ws, err := s.ListWorkers(ctx)
	if err != nil || len(ws) != 0 {
		t.Fatalf("ListWorkers on an empty store = %v, %v", ws, err)
	}

	w1, w2 := newWorker("w-1"), newWorker("w-2")
	w2.Labels = nil
	Update(t, s, func(tx store.Tx) error {
		if err := tx.UpsertWorker(w2); err != nil {
			return err
		}
		return tx.UpsertWorker(w1)
	})
	list := func() []store.Worker {
		t.Helper()
		ws, err := s.ListWorkers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ws = slices.Clone(ws)
		sort.Slice(ws, func(a, b int) bool { return ws[a].ID < ws[b].ID })
		return ws
	}
	equal(t, "ListWorkers", list(), []store.Worker{w1, w2})

	// Upserting an existing worker replaces it.
	w1.State = state.WorkerLost
	w1.Labels = []string{"arm64"}
	w1.BootID = "boot-2"
	w1.LastSeen = at(300)
	w1.GPU = 0
	Update(t, s, func(tx store.Tx) error { return tx.UpsertWorker(w1) })
	equal(t, "ListWorkers after upsert", list(), []store.Worker{w1, w2})
}

func testUpdateRollsBack(t *testing.T, s store.Store) {
	ctx := context.Background()
	setupJob(t, s, "job-a")
	before := struct {
		run      store.Run
		jobs     []store.Job
		attempts []store.Attempt
		logs     []store.LogChunk
		workers  []store.Worker
		counts   map[state.RunState]int
	}{}
	snapshot := func() {
		var err error
		if before.run, err = s.GetRun(ctx, runID(1)); err != nil {
			t.Fatal(err)
		}
		if before.jobs, err = s.ListJobs(ctx, runID(1)); err != nil {
			t.Fatal(err)
		}
		if before.attempts, err = s.ListAttempts(ctx, "job-a"); err != nil {
			t.Fatal(err)
		}
		if before.logs, err = s.ReadLogs(ctx, "job-a", 0, 0, 100); err != nil {
			t.Fatal(err)
		}
		if before.workers, err = s.ListWorkers(ctx); err != nil {
			t.Fatal(err)
		}
		if before.counts, err = s.CountRuns(ctx); err != nil {
			t.Fatal(err)
		}
	}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.UpsertAttempt(store.Attempt{JobID: "job-a", N: 1, State: state.AttemptRunning, AssignedAt: at(1)}); err != nil {
			return err
		}
		return tx.AppendLogs([]store.LogChunk{chunk("job-a", 1, 1)})
	})
	snapshot()
	saved := before

	boom := errors.New("boom")
	err := s.Update(ctx, func(tx store.Tx) error {
		r := saved.run
		r.State = state.RunFailed
		if err := tx.UpdateRun(r); err != nil {
			return err
		}
		if err := tx.InsertRun(newRun(runID(2), state.RunQueued, "acme")); err != nil {
			return err
		}
		if err := tx.InsertJobs([]store.Job{newJob(runID(2), "build", 0, state.JobQueued)}); err != nil {
			return err
		}
		j := saved.jobs[0]
		j.State = state.JobFailed
		if err := tx.UpdateJob(j); err != nil {
			return err
		}
		if err := tx.UpsertAttempt(store.Attempt{JobID: "job-a", N: 1, State: state.AttemptFailed}); err != nil {
			return err
		}
		if err := tx.UpsertAttempt(store.Attempt{JobID: "job-a", N: 2, State: state.AttemptAssigned}); err != nil {
			return err
		}
		if err := tx.AppendLogs([]store.LogChunk{chunk("job-a", 1, 2)}); err != nil {
			return err
		}
		if err := tx.UpsertWorker(newWorker("w-1")); err != nil {
			return err
		}
		return fmt.Errorf("fn failed: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}

	snapshot()
	equal(t, "run after rollback", before.run, saved.run)
	equal(t, "jobs after rollback", before.jobs, saved.jobs)
	equal(t, "attempts after rollback", before.attempts, saved.attempts)
	equal(t, "logs after rollback", before.logs, saved.logs)
	equal(t, "workers after rollback", before.workers, saved.workers)
	if !reflect.DeepEqual(before.counts, saved.counts) {
		t.Errorf("CountRuns after rollback = %v, want %v", before.counts, saved.counts)
	}
	if _, err := s.GetRun(ctx, runID(2)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("run inserted by a failed Update: GetRun = %v, want ErrNotFound", err)
	}
	if _, err := s.GetJob(ctx, runID(2)+".build"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("job inserted by a failed Update: GetJob = %v, want ErrNotFound", err)
	}

	// The store still works after a rollback.
	insertRuns(t, s, newRun(runID(3), state.RunQueued, "acme"))
}

// testReadsDuringWrite holds a write transaction open, with uncommitted
// changes, while several goroutines read: every read must complete, without
// error, and see only the committed state.
func testReadsDuringWrite(t *testing.T, s store.Store) {
	ctx := context.Background()
	setupJob(t, s, "job-a")
	appendLogs(t, s, chunk("job-a", 1, 1))
	committed, err := s.GetRun(ctx, runID(1))
	if err != nil {
		t.Fatal(err)
	}

	inTx := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.Update(ctx, func(tx store.Tx) error {
			r := committed
			r.State = state.RunSucceeded
			if err := tx.UpdateRun(r); err != nil {
				return err
			}
			if err := tx.InsertRun(newRun(runID(2), state.RunQueued, "acme")); err != nil {
				return err
			}
			if err := tx.AppendLogs([]store.LogChunk{chunk("job-a", 1, 2)}); err != nil {
				return err
			}
			if err := tx.UpsertWorker(newWorker("w-1")); err != nil {
				return err
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	released := false
	releaseWriter := func() error {
		if released {
			return nil
		}
		released = true
		close(release)
		return <-errc
	}
	defer releaseWriter() //nolint:errcheck // only when the test already failed

	select {
	case <-inTx:
	case err := <-errc:
		t.Fatalf("Update ended before the reads: %v", err)
	}

	// The deadline turns a read that blocks behind the writer into a failure
	// rather than a hung test.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := readCommitted(rctx, s, committed); err != nil {
					errs <- fmt.Errorf("reader %d, round %d: %w", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if err := releaseWriter(); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := s.GetRun(ctx, runID(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.State != state.RunSucceeded {
		t.Errorf("after commit, run state %s, want %s", got.State, state.RunSucceeded)
	}
	if _, err := s.GetRun(ctx, runID(2)); err != nil {
		t.Errorf("after commit, GetRun of the inserted run: %v", err)
	}
}

// readCommitted reads everything while a write transaction is open and checks
// that none of its changes show.
func readCommitted(ctx context.Context, s store.Store, committed store.Run) error {
	var problems []string
	r, err := s.GetRun(ctx, committed.ID)
	if err != nil {
		return fmt.Errorf("GetRun: %w", err)
	}
	if r.State != committed.State {
		problems = append(problems, "GetRun sees an uncommitted state "+string(r.State))
	}
	if _, err := s.GetRun(ctx, runID(2)); !errors.Is(err, store.ErrNotFound) {
		problems = append(problems, fmt.Sprintf("GetRun of an uncommitted run: %v", err))
	}
	runs, err := s.ListRuns(ctx, store.RunFilter{})
	if err != nil {
		return fmt.Errorf("ListRuns: %w", err)
	}
	if len(runs) != 1 {
		problems = append(problems, fmt.Sprintf("ListRuns = %v", runIDs(runs)))
	}
	active, jobs, err := s.ActiveRuns(ctx)
	if err != nil {
		return fmt.Errorf("ActiveRuns: %w", err)
	}
	if len(active) != 1 || len(jobs) != 1 {
		problems = append(problems, fmt.Sprintf("ActiveRuns = %v, %v", runIDs(active), jobIDs(jobs)))
	}
	counts, err := s.CountRuns(ctx)
	if err != nil {
		return fmt.Errorf("CountRuns: %w", err)
	}
	if counts[committed.State] != 1 || counts[state.RunSucceeded] != 0 {
		problems = append(problems, fmt.Sprintf("CountRuns = %v", counts))
	}
	if _, err := s.ListJobs(ctx, committed.ID); err != nil {
		return fmt.Errorf("ListJobs: %w", err)
	}
	if _, err := s.GetJob(ctx, "job-a"); err != nil {
		return fmt.Errorf("GetJob: %w", err)
	}
	if _, err := s.ListAttempts(ctx, "job-a"); err != nil {
		return fmt.Errorf("ListAttempts: %w", err)
	}
	logs, err := s.ReadLogs(ctx, "job-a", 0, 0, 100)
	if err != nil {
		return fmt.Errorf("ReadLogs: %w", err)
	}
	if len(logs) != 1 {
		problems = append(problems, fmt.Sprintf("ReadLogs = %v", chunkKeys(logs)))
	}
	ws, err := s.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("ListWorkers: %w", err)
	}
	if len(ws) != 0 {
		problems = append(problems, fmt.Sprintf("ListWorkers sees %d uncommitted workers", len(ws)))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func testTimeRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now() // local, with a monotonic reading
	tokyo := time.FixedZone("JST", 9*3600)
	times := []time.Time{
		now,
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, tokyo),
		time.Date(2001, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2200, 12, 31, 12, 0, 0, 123, time.FixedZone("", -7*3600-30*60)),
	}
	check := func(what string, got, want time.Time) {
		t.Helper()
		if !got.Equal(want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
		if want.IsZero() != got.IsZero() {
			t.Errorf("%s: got %v, want %v (zero time must round-trip as zero)", what, got, want)
		}
		if !got.IsZero() && got.Location() != time.UTC {
			t.Errorf("%s: got %v in %v, want UTC", what, got, got.Location())
		}
	}

	for i, tm := range times {
		r := newRun(runID(i), state.RunRunning, "acme")
		r.CreatedAt, r.StartedAt, r.FinishedAt = tm, tm.Add(time.Nanosecond), time.Time{}
		j := newJob(r.ID, "build", 0, state.JobRunning)
		j.QueuedAt, j.StartedAt, j.FinishedAt = tm, time.Time{}, tm.Add(-time.Nanosecond)
		a := store.Attempt{JobID: j.ID, N: 1, AssignedAt: tm, StartedAt: time.Time{}, FinishedAt: tm.Add(time.Hour)}
		c := chunk(j.ID, 1, 1)
		c.At = tm
		w := newWorker(fmt.Sprintf("w-%d", i))
		w.FirstSeen, w.LastSeen = time.Time{}, tm
		Update(t, s, func(tx store.Tx) error {
			if err := tx.InsertRun(r); err != nil {
				return err
			}
			if err := tx.InsertJobs([]store.Job{j}); err != nil {
				return err
			}
			if err := tx.UpsertAttempt(a); err != nil {
				return err
			}
			if err := tx.AppendLogs([]store.LogChunk{c}); err != nil {
				return err
			}
			return tx.UpsertWorker(w)
		})

		gr, err := s.GetRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		check("Run.CreatedAt", gr.CreatedAt, r.CreatedAt)
		check("Run.StartedAt", gr.StartedAt, r.StartedAt)
		check("Run.FinishedAt", gr.FinishedAt, r.FinishedAt)

		gj, err := s.GetJob(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		check("Job.QueuedAt", gj.QueuedAt, j.QueuedAt)
		check("Job.StartedAt", gj.StartedAt, j.StartedAt)
		check("Job.FinishedAt", gj.FinishedAt, j.FinishedAt)

		as, err := s.ListAttempts(ctx, j.ID)
		if err != nil || len(as) != 1 {
			t.Fatalf("ListAttempts = %v, %v", as, err)
		}
		check("Attempt.AssignedAt", as[0].AssignedAt, a.AssignedAt)
		check("Attempt.StartedAt", as[0].StartedAt, a.StartedAt)
		check("Attempt.FinishedAt", as[0].FinishedAt, a.FinishedAt)

		cs, err := s.ReadLogs(ctx, j.ID, 0, 0, 10)
		if err != nil || len(cs) != 1 {
			t.Fatalf("ReadLogs = %v, %v", cs, err)
		}
		check("LogChunk.At", cs[0].At, c.At)

		ws, err := s.ListWorkers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, gw := range ws {
			if gw.ID == w.ID {
				found = true
				check("Worker.FirstSeen", gw.FirstSeen, w.FirstSeen)
				check("Worker.LastSeen", gw.LastSeen, w.LastSeen)
			}
		}
		if !found {
			t.Errorf("worker %s not listed", w.ID)
		}
	}
}
