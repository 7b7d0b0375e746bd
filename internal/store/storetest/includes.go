package storetest

import (
	"context"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// testRunIncludes checks that the files a run's pipeline includes
// (migration 0062) are kept byte for byte by insert and update, read back
// by GetRun and ListRuns, and that a run without any reads back none.
func testRunIncludes(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRun(runID(1), state.RunQueued, "acme")
	r.Includes = map[string][]byte{
		"ci/common.yaml": []byte("jobs:\n  test:\n    steps: [{run: make test}]\n"),
		"ci/odd.yaml":    {0xff, 0xfe, 'x', 0, '\n'},
	}
	plain := newRun(runID(2), state.RunQueued, "acme")
	insertRuns(t, s, r, plain)
	g, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "includes inserted", g.Includes, r.Includes)
	g, err = s.GetRun(ctx, plain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Includes != nil {
		t.Errorf("a run without includes reads back %v", g.Includes)
	}
	r.State = state.RunRunning
	r.Includes["ci/deploy.yaml"] = []byte("jobs: {}\n")
	Update(t, s, func(tx store.Tx) error { return tx.UpdateRun(r) })
	runs, err := s.ListRuns(ctx, store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range runs {
		if got.ID == r.ID {
			equal(t, "includes after an update", got, r)
		}
	}
}
