package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

func newRepo(tenant, name string) store.Repo {
	return store.Repo{Tenant: tenant, Name: name, URL: "https://git.example/" + name + ".git", Forge: "gitea",
		APIURL: "https://git.example/api/v1", TokenSecret: "TOKEN", WebhookSecret: "HOOK", DefaultBranch: "main", CreatedAt: at(1)}
}

func testRepos(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, r := range []store.Repo{newRepo("acme", "web"), newRepo("acme", "api"), newRepo("other", "web")} {
		if err := s.CreateRepo(ctx, r); err != nil {
			t.Fatalf("CreateRepo(%s/%s): %v", r.Tenant, r.Name, err)
		}
	}
	if err := s.CreateRepo(ctx, newRepo("acme", "web")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateRepo twice: got %v, want ErrConflict", err)
	}
	got, err := s.GetRepo(ctx, "acme", "web")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "GetRepo", got, newRepo("acme", "web"))
	list, err := s.ListRepos(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListRepos names", []string{list[0].Name, list[1].Name}, []string{"api", "web"})
	if len(list) != 2 {
		t.Fatalf("ListRepos(acme) = %d repos, want 2 (another tenant's left out)", len(list))
	}
	if err := s.DeleteRepo(ctx, "acme", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRepo(ctx, "acme", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRepo after delete: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteRepo(ctx, "acme", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteRepo twice: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetRepo(ctx, "other", "web"); err != nil {
		t.Errorf("another tenant's repository of the same name: %v", err)
	}
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	d := store.Delivery{Tenant: "acme", Repo: "web", ID: "d-1", At: at(2)}
	got, fresh, err := s.ClaimDelivery(ctx, d)
	if err != nil || !fresh {
		t.Fatalf("first ClaimDelivery = %v, %v; want fresh", fresh, err)
	}
	equal(t, "claimed", got, d)
	if err := s.SetDeliveryRuns(ctx, "acme", "web", "d-1", []string{"r1", "r2"}); err != nil {
		t.Fatal(err)
	}
	again, fresh, err := s.ClaimDelivery(ctx, store.Delivery{Tenant: "acme", Repo: "web", ID: "d-1", At: at(9)})
	if err != nil || fresh {
		t.Fatalf("redelivery: fresh = %v, err = %v; want the earlier record", fresh, err)
	}
	equal(t, "redelivery", again, store.Delivery{Tenant: "acme", Repo: "web", ID: "d-1", RunIDs: []string{"r1", "r2"}, At: at(2)})
	// The same id for another repository is another delivery.
	if _, fresh, err := s.ClaimDelivery(ctx, store.Delivery{Tenant: "acme", Repo: "api", ID: "d-1", At: at(3)}); err != nil || !fresh {
		t.Errorf("same id, other repository: fresh = %v, err = %v", fresh, err)
	}
	if err := s.SetDeliveryRuns(ctx, "acme", "web", "missing", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetDeliveryRuns(missing): got %v, want ErrNotFound", err)
	}
}

func testTriggers(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1, r2 := newRun(runID(1), state.RunQueued, "acme"), newRun(runID(2), state.RunQueued, "acme")
	tr := store.Trigger{RunID: r1.ID, Repo: "web", Commit: "abc", Ref: "refs/pull/7/head", Event: "pull_request", Branch: "main", PR: 7, Delivery: "d-1"}
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(r1); err != nil {
			return err
		}
		if err := tx.InsertRun(r2); err != nil {
			return err
		}
		return tx.InsertTrigger(tr)
	})
	got, err := s.GetTriggers(ctx, []string{r1.ID, r2.ID, "missing"})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "GetTriggers", got, map[string]store.Trigger{r1.ID: tr})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.InsertTrigger(tr) })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("second trigger of a run: got %v, want ErrConflict", err)
	}
	err = s.Update(ctx, func(tx store.Tx) error { return tx.InsertTrigger(store.Trigger{RunID: "missing"}) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("trigger of a missing run: got %v, want ErrNotFound", err)
	}
	if got, err := s.GetTriggers(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("GetTriggers(nil) = %v, %v", got, err)
	}
}

func testStatusReports(t *testing.T, s store.Store) {
	ctx := context.Background()
	insertRuns(t, s, newRun(runID(1), state.RunQueued, "acme"), newRun(runID(2), state.RunQueued, "acme"))
	want := []store.StatusReport{
		{RunID: runID(1), State: "pending", At: at(1)},
		{RunID: runID(1), State: "success", Error: "post success status: 502 Bad Gateway", At: at(2)},
		{RunID: runID(1), State: "success", At: at(3)},
	}
	for _, r := range append(want, store.StatusReport{RunID: runID(2), State: "pending", At: at(1)}) {
		if err := s.AddStatusReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListStatusReports(ctx, runID(1))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "ListStatusReports", got, want)
	if err := s.AddStatusReport(ctx, store.StatusReport{RunID: "missing", State: "pending", At: at(1)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("report of a missing run: got %v, want ErrNotFound", err)
	}
}
