package repos

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/backoff"
	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/sqlite"
)

// fakeForge records the states posted, per commit; it answers code.
type fakeForge struct {
	*httptest.Server
	mu     sync.Mutex
	states map[string][]string
	code   int
	got    chan struct{}
}

func newFakeForge(t *testing.T) *fakeForge {
	f := &fakeForge{states: map[string][]string{}, code: http.StatusCreated, got: make(chan struct{}, 16)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		_ = json.NewDecoder(r.Body).Decode(&b)
		sha := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		f.mu.Lock()
		f.states[sha] = append(f.states[sha], b["state"])
		code := f.code
		f.mu.Unlock()
		w.WriteHeader(code)
		f.got <- struct{}{}
	}))
	t.Cleanup(f.Close)
	return f
}

func openStore(t *testing.T) store.Store {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func addRun(t *testing.T, s store.Store, id string, st state.RunState, commit string) store.Trigger {
	tr := store.Trigger{RunID: id, Repo: "app", Commit: commit, Ref: "refs/heads/main", Event: "push", Branch: "main"}
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertRun(store.Run{ID: id, Pipeline: "ci", File: ".hodei.yaml", Tenant: "default", State: st, CreatedAt: time.Now()}); err != nil {
			return err
		}
		return tx.InsertTrigger(tr)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func waitReports(t *testing.T, s store.Store, runID string, n int) []store.StatusReport {
	t.Helper()
	// The reporter posts in the background: poll the store, with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		reps, err := s.ListStatusReports(context.Background(), runID)
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) >= n {
			return reps
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %d status reports, want %d", runID, len(reps), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReporterNeverPostsPendingAfterTheEnd: a run that ends before its
// pending status is sent ends with its final status on the forge.
func TestReporterNeverPostsPendingAfterTheEnd(t *testing.T) {
	s := openStore(t)
	f := newFakeForge(t)
	repo := store.Repo{Tenant: "default", Name: "app", URL: f.URL + "/o/app.git", Forge: "gitea"}
	if err := s.CreateRepo(context.Background(), repo); err != nil {
		t.Fatal(err)
	}
	r := &Reporter{Store: s, PublicURL: "https://ci"}
	defer r.Close()
	tr := addRun(t, s, "r1", state.RunSucceeded, "c1")
	r.Report(repo, tr, ".hodei.yaml", forge.StateSuccess)
	r.Report(repo, tr, ".hodei.yaml", forge.StatePending)
	// Either order of the two goroutines: [success] (pending skipped) or
	// [pending, success]; never success then pending.
	reps := waitReports(t, s, "r1", 1)
	if reps[0].State == forge.StatePending {
		reps = waitReports(t, s, "r1", 2)
	}
	r.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.states["c1"]; len(got) == 0 || got[len(got)-1] != "success" {
		t.Errorf("states posted: %v; want success last", got)
	}
	if reps[len(reps)-1].State != forge.StateSuccess {
		t.Errorf("reports: %+v", reps)
	}
}

// TestReporterCatchesUpAndRecordsFailures: a run that ended while nobody
// watched gets its final status when Watch starts; a status the forge
// refuses is recorded with its error.
func TestReporterCatchesUpAndRecordsFailures(t *testing.T) {
	s := openStore(t)
	f := newFakeForge(t)
	f.code = http.StatusUnauthorized
	repo := store.Repo{Tenant: "default", Name: "app", URL: f.URL + "/o/app.git", Forge: "github"}
	if err := s.CreateRepo(context.Background(), repo); err != nil {
		t.Fatal(err)
	}
	addRun(t, s, "r1", state.RunFailed, "c1")
	addRun(t, s, "r2", state.RunRunning, "c2")
	r := &Reporter{Store: s, PublicURL: "https://ci", Poster: &forge.Poster{Backoff: backoff.Backoff{Base: time.Millisecond, Max: time.Millisecond}}}
	defer r.Close()
	h := hub.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(ctx, h) }()
	reps := waitReports(t, s, "r1", 1)
	if reps[0].State != forge.StateFailure || !strings.Contains(reps[0].Error, "401") {
		t.Errorf("report of r1: %+v; want failure not posted, 401", reps[0])
	}
	// r2 ends: the hub says so.
	f.mu.Lock()
	f.code = http.StatusCreated
	f.mu.Unlock()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.UpdateRun(store.Run{ID: "r2", Pipeline: "ci", File: ".hodei.yaml", Tenant: "default", State: state.RunCanceled, CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Watch subscribes before it catches up: publish until it has
	// seen the end (the subscription may not exist yet).
	for posted := false; !posted; {
		h.Publish(hub.Note{Kind: hub.KindRun, RunID: "r2", RunState: state.RunCanceled})
		select {
		case <-f.got:
			posted = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	waitReports(t, s, "r2", 1)
	cancel()
	<-done
	r.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.states["c2"]; len(got) == 0 || got[0] != "error" {
		t.Errorf("github states of a canceled run: %v, want error", got)
	}
}

func mustReports(t *testing.T, s store.Store, runID string) []store.StatusReport {
	reps, err := s.ListStatusReports(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

func TestPrepareSetsCheckoutAndEnvironment(t *testing.T) {
	repo := store.Repo{Name: "app", URL: "https://git.example/o/app.git", Forge: "gitlab", TokenSecret: "TOK"}
	tr := store.Trigger{Commit: "abc", Ref: "refs/merge-requests/3/head", Event: "pull_request", Branch: "main", PR: 3}
	specs := []pipeline.JobSpec{{Key: "a"}, {Key: "b", Checkout: &pipeline.Checkout{Disabled: true}}, {Key: "c", Checkout: &pipeline.Checkout{Depth: 0}, Env: map[string]string{"X": "1"}}}
	Prepare(repo, tr, specs)
	a := specs[0].Checkout
	if a == nil || a.URL != repo.URL || a.Commit != "abc" || a.Depth != 1 || a.TokenSecret != "TOK" || a.AuthUser != "oauth2" {
		t.Errorf("default checkout: %+v", a)
	}
	if b := specs[1].Checkout; !b.Disabled || b.URL != "" || b.TokenSecret != "" {
		t.Errorf("checkout: false: %+v", b)
	}
	if c := specs[2].Checkout; c.Depth != 0 || c.URL == "" {
		t.Errorf("depth 0: %+v", c)
	}
	if n := specs[1].SecretNames(); len(n) != 0 {
		t.Errorf("a job without checkout asks for %v", n)
	}
	if n := specs[0].SecretNames(); len(n) != 1 || n[0] != "TOK" {
		t.Errorf("a job with checkout asks for %v", n)
	}
	env := specs[2].Env
	if env["X"] != "1" || env["HODEI_EVENT"] != "pull_request" || env["HODEI_PR"] != "3" || env["HODEI_BRANCH"] != "main" || env["HODEI_COMMIT"] != "abc" || env["HODEI_REPO"] != "app" {
		t.Errorf("env: %v", env)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		r  store.Repo
		ok bool
	}{
		{store.Repo{Name: "app", URL: "https://github.com/o/app.git", Forge: "github"}, true},
		{store.Repo{Name: "../x", URL: "https://github.com/o/app.git", Forge: "github"}, false},
		{store.Repo{Name: "app", URL: "https://github.com/app", Forge: "github"}, false},
		{store.Repo{Name: "app", URL: "git@github.com:o/app.git", Forge: "git"}, true},
		{store.Repo{Name: "app", URL: "https://x/o/app.git", Forge: "svn"}, false},
		{store.Repo{Name: "app", URL: "https://x/o/app.git", Forge: "gitea", TokenSecret: "not-a-name"}, false},
	} {
		r := c.r
		if err := Check(&r); (err == nil) != c.ok {
			t.Errorf("Check(%+v) = %v", c.r, err)
		} else if err == nil && r.DefaultBranch != "main" {
			t.Errorf("default branch %q", r.DefaultBranch)
		}
	}
}
