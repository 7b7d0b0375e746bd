package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// testFirings: a firing is claimed once per key, its run id is recorded
// in the run's transaction (and rolled back with it), and the claimed
// firings without a run or an error are pending.
func testFirings(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.Firing{Tenant: "acme", Repo: "web", File: ".hodei.yaml", Schedule: "0 3 * * *|main|UTC"}
	seen := key
	seen.At, seen.Kind, seen.RecordedAt = at(0), store.FiringSeen, at(0)
	fire := key
	fire.At, fire.Kind, fire.RecordedAt = at(60), store.FiringRun, at(61)

	if _, err := s.LastFiring(ctx, "acme", "web", key.File, key.Schedule); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LastFiring of a new schedule: got %v, want ErrNotFound", err)
	}
	for _, f := range []store.Firing{seen, fire} {
		if ok, err := s.ClaimFiring(ctx, f); err != nil || !ok {
			t.Fatalf("ClaimFiring(%s at %v) = %v, %v; want claimed", f.Kind, f.At, ok, err)
		}
	}
	again := fire
	again.RecordedAt = at(90)
	if ok, err := s.ClaimFiring(ctx, again); err != nil || ok {
		t.Fatalf("second ClaimFiring of the same firing = %v, %v; want not claimed", ok, err)
	}
	// The same time for another schedule or file is another firing.
	other := fire
	other.Schedule = "0 3 * * *|release|UTC"
	if ok, err := s.ClaimFiring(ctx, other); err != nil || !ok {
		t.Fatalf("ClaimFiring of another schedule = %v, %v", ok, err)
	}
	last, err := s.LastFiring(ctx, "acme", "web", key.File, key.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "LastFiring", last, fire)
	pending, err := s.PendingFirings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "PendingFirings", pending, []store.Firing{fire, other})

	// A batch that fails takes the firing's run id with it.
	r1 := newRun(runID(1), state.RunQueued, "acme")
	withRun := fire
	withRun.RunID = r1.ID
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertRun(r1); err != nil {
			return err
		}
		if err := tx.SetFiringRun(withRun); err != nil {
			return err
		}
		return tx.InsertRun(r1) // a conflict: the batch rolls back
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("failed batch: got %v, want ErrConflict", err)
	}
	if last, _ := s.LastFiring(ctx, "acme", "web", key.File, key.Schedule); last.RunID != "" {
		t.Fatalf("a rolled back batch recorded run %q on the firing", last.RunID)
	}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r1); err != nil {
			return err
		}
		return tx.SetFiringRun(withRun)
	})
	if err := s.SetFiringError(ctx, other, "no such file"); err != nil {
		t.Fatal(err)
	}
	pending, err = s.PendingFirings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "PendingFirings after the run and the error", len(pending), 0)
	all, err := s.ListFirings(ctx, "acme", "web")
	if err != nil {
		t.Fatal(err)
	}
	otherErr := other
	otherErr.Error = "no such file"
	equal(t, "ListFirings", all, []store.Firing{seen, withRun, otherErr})
	missing := fire
	missing.At = at(999)
	if err := s.SetFiringError(ctx, missing, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetFiringError of an unknown firing: got %v, want ErrNotFound", err)
	}

	// ListAllRepos spans tenants; deleting a repository drops its firings.
	for _, r := range []store.Repo{newRepo("acme", "web"), newRepo("beta", "api"), newRepo("acme", "api")} {
		if err := s.CreateRepo(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	repos, err := s.ListAllRepos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range repos {
		names = append(names, r.Tenant+"/"+r.Name)
	}
	equal(t, "ListAllRepos", names, []string{"acme/api", "acme/web", "beta/api"})
	if err := s.DeleteRepo(ctx, "acme", "web"); err != nil {
		t.Fatal(err)
	}
	if all, err := s.ListFirings(ctx, "acme", "web"); err != nil || len(all) != 0 {
		t.Errorf("firings after the repository's removal = %v, %v", all, err)
	}
}
