package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

// testArtifacts checks the artifact index: conflicts on the same ID, the
// filters (kind, tenant, scope, run, name prefix, expiry), newest first,
// the bytes per tenant and deletion.
func testArtifacts(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	recs := []store.Artifact{
		{ID: "a1", Kind: store.KindArtifact, Tenant: "acme", RunID: "r1", JobID: "j1", JobKey: "build", Attempt: 1, Name: "bin", Object: "o1", Size: 100, Files: []byte(`[{"path":"x"}]`), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{ID: "c1", Kind: store.KindCache, Tenant: "acme", Scope: "repo@main", Name: "go-aaa", Object: "o2", Size: 10, Files: []byte(`[]`), CreatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(2 * time.Hour)},
		{ID: "c2", Kind: store.KindCache, Tenant: "acme", Scope: "repo@main", Name: "go-bbb", Object: "o3", Size: 20, Files: []byte(`[]`), CreatedAt: t0.Add(2 * time.Second), ExpiresAt: t0.Add(3 * time.Hour)},
		{ID: "c3", Kind: store.KindCache, Tenant: "globex", Scope: "repo@main", Name: "go-ccc", Object: "o4", Size: 1000, Files: []byte(`[]`), CreatedAt: t0.Add(3 * time.Second), ExpiresAt: t0.Add(3 * time.Hour)},
	}
	for _, r := range recs {
		if err := s.PutArtifact(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutArtifact(ctx, recs[1]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second record with one ID: %v, want ErrConflict", err)
	}
	ids := func(f store.ArtifactFilter) []string {
		t.Helper()
		as, err := s.ListArtifacts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", name, got, want)
			}
		}
	}
	check("run", ids(store.ArtifactFilter{RunID: "r1"}), "a1")
	check("caches of acme, newest first", ids(store.ArtifactFilter{Kind: store.KindCache, Tenant: "acme", Scope: "repo@main", NamePrefix: "go-"}), "c2", "c1")
	check("exact prefix", ids(store.ArtifactFilter{Kind: store.KindCache, Tenant: "acme", NamePrefix: "go-a"}), "c1")
	check("expired", ids(store.ArtifactFilter{ExpiredAt: t0.Add(2 * time.Hour)}), "c1", "a1")
	check("limit", ids(store.ArtifactFilter{Limit: 1}), "c3")
	as, err := s.ListArtifacts(ctx, store.ArtifactFilter{RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	if a.JobKey != "build" || a.Attempt != 1 || a.Object != "o1" || a.Size != 100 || string(a.Files) != `[{"path":"x"}]` || !a.CreatedAt.Equal(t0) || !a.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("record read back as %+v", a)
	}
	if n, err := s.ArtifactBytes(ctx, "acme"); err != nil || n != 130 {
		t.Fatalf("bytes of acme = %d, %v; want 130", n, err)
	}
	if err := s.DeleteArtifact(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	check("after delete", ids(store.ArtifactFilter{Tenant: "acme"}), "c2", "a1")
	if n, _ := s.ArtifactBytes(ctx, "nobody"); n != 0 {
		t.Fatalf("bytes of a tenant without artifacts = %d", n)
	}
}
