package artifact_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

func TestCacheScopesOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tr   *store.Trigger
		def  string
		want []string
	}{
		{"no repository", nil, "", []string{""}},
		{"default branch", &store.Trigger{Repo: "app", Ref: "refs/heads/main", Event: "push", Branch: "main"}, "main", []string{"app:refs/heads/main"}},
		{"branch", &store.Trigger{Repo: "app", Ref: "refs/heads/feat", Event: "push", Branch: "feat"}, "main", []string{"app:refs/heads/feat", "app:refs/heads/main"}},
		{"tag", &store.Trigger{Repo: "app", Ref: "refs/tags/v1", Event: "tag", Tag: "v1"}, "main", []string{"app:refs/tags/v1", "app:refs/heads/main"}},
		{"pull request to main", &store.Trigger{Repo: "app", Ref: "refs/pull/7/head", Event: "pull_request", Branch: "main", PR: 7}, "main", []string{"app:pull/7", "app:refs/heads/main"}},
		{"merge request to a branch", &store.Trigger{Repo: "app", Ref: "refs/merge-requests/3/head", Event: "pull_request", Branch: "rel", PR: 3}, "main", []string{"app:pull/3", "app:refs/heads/rel", "app:refs/heads/main"}},
		{"repository removed", &store.Trigger{Repo: "app", Ref: "refs/heads/feat", Event: "push", Branch: "feat"}, "", []string{"app:refs/heads/feat"}},
	} {
		if got := artifact.CacheScopes(tc.tr, tc.def); !slices.Equal(got, tc.want) {
			t.Errorf("%s: CacheScopes = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCacheScopesPerBranch runs the caches of one repository's runs through
// the service: a branch reads the default branch's caches but saves to its
// own scope, which the default branch never reads; a pull request saves
// only to its own scope, so the key it writes over is still the default
// branch's own for the runs of the default branch (no cache poisoning); a
// run without a repository keeps the tenant's scope, apart from both.
func TestCacheScopesPerBranch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, artifact.Limits{}, "wa")
	ctx := context.Background()
	if err := f.st.CreateRepo(ctx, store.Repo{Tenant: "acme", Name: "app", URL: "https://git.example/app.git", Forge: "git", DefaultBranch: "main", CreatedAt: f.clock()}); err != nil {
		t.Fatal(err)
	}
	spec := pipeline.JobSpec{Cache: []pipeline.Cache{{Key: "go-x", Paths: []string{"~/.cache"}}}}
	n := 0
	// runOn makes a running job in a run of tr (nil: without repository)
	// and returns its attempt.
	runOn := func(tr *store.Trigger) artifact.AttemptRef {
		n++
		id := "run-" + string(rune('a'+n))
		f.addRun(t, id, "acme", job{id: id + ".j", key: "build", worker: "wa", st: state.JobRunning, spec: spec})
		if tr != nil {
			tr.RunID = id
			if err := f.st.Update(ctx, func(tx store.Tx) error { return tx.InsertTrigger(*tr) }); err != nil {
				t.Fatal(err)
			}
		}
		return artifact.AttemptRef{JobID: id + ".j", Attempt: 1}
	}
	c, _, _ := f.agent(t, "wa")
	save := func(ref artifact.AttemptRef, key, content string) {
		t.Helper()
		r := artifact.Roots{Workspace: t.TempDir(), Home: t.TempDir()}
		if err := os.MkdirAll(filepath.Join(r.Home, ".cache"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.Home, ".cache/mod"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := upload(t, c, ref, store.KindCache, key, r, "~/.cache"); err != nil {
			t.Fatalf("save %s (%s): %v", key, content, err)
		}
		f.advance(time.Second)
	}
	// restored looks key up (with restore keys) and returns what the
	// entry found holds, "" for a miss.
	restored := func(ref artifact.AttemptRef, key string, restore ...string) string {
		t.Helper()
		r, err := c.LookupCache(ctx, ref, key, restore)
		if err != nil {
			t.Fatal(err)
		}
		if r.Entry == nil {
			return ""
		}
		dst := artifact.Roots{Workspace: t.TempDir(), Home: t.TempDir()}
		if err := c.Download(ctx, ref, *r.Entry, dst, -1); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dst.Home, ".cache/mod"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	push := func(branch string) *store.Trigger {
		return &store.Trigger{Repo: "app", Commit: "c0ffee", Ref: "refs/heads/" + branch, Event: "push", Branch: branch}
	}

	main1 := runOn(push("main"))
	save(main1, "go-1", "main")

	feat := runOn(push("feat"))
	if got := restored(feat, "go-1"); got != "main" {
		t.Errorf("a branch restores %q of the default branch's go-1, want main", got)
	}
	save(feat, "go-2", "feat")
	if got := restored(feat, "go-2"); got != "feat" {
		t.Errorf("a branch restores %q of its own go-2, want feat", got)
	}

	pr := runOn(&store.Trigger{Repo: "app", Commit: "bad", Ref: "refs/pull/7/head", Event: "pull_request", Branch: "main", PR: 7})
	if got := restored(pr, "go-1"); got != "main" {
		t.Errorf("a pull request restores %q of go-1, want the default branch's, main", got)
	}
	// The pull request saves go-1 (and a newer go-3): in its own scope.
	save(pr, "go-1", "poisoned")
	save(pr, "go-3", "poisoned")
	if got := restored(pr, "go-1"); got != "poisoned" {
		t.Errorf("a pull request restores %q of its own go-1, want its own", got)
	}

	main2 := runOn(push("main"))
	if got := restored(main2, "go-1"); got != "main" {
		t.Errorf("the default branch restores %q of go-1 after a pull request saved it, want main", got)
	}
	for _, key := range []string{"go-2", "go-3"} {
		if got := restored(main2, key); got != "" {
			t.Errorf("the default branch restores %q for %s, a key only a branch or pull request saved", got, key)
		}
	}
	if got := restored(main2, "go-9", "go-"); got != "main" {
		t.Errorf("the default branch's restore key gives %q, want its own newest go- entry (main)", got)
	}
	other := runOn(push("other"))
	if got := restored(other, "go-2"); got != "" {
		t.Errorf("a branch restores %q of another branch's go-2", got)
	}

	local := runOn(nil)
	if got := restored(local, "go-1", "go-"); got != "" {
		t.Errorf("a run without a repository restores %q of the repository's caches", got)
	}
	save(local, "go-1", "local")
	if got := restored(local, "go-1"); got != "local" {
		t.Errorf("a run without a repository restores %q of its tenant's go-1", got)
	}
	if got := restored(runOn(push("main")), "go-1"); got != "main" {
		t.Errorf("the default branch restores %q of go-1 after a run without a repository saved it", got)
	}
}
