package orchestrator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/store"
)

// TestIdempotencyKeyMakesOneRun: submissions with one key in one tenant,
// sent together (one batch or several) and again after the run is stored,
// all get the run the first made; the key in another tenant makes another
// run; a submission without a key always makes a new run.
func TestIdempotencyKeyMakesOneRun(t *testing.T) {
	h := newHarness(t, Config{})
	const yaml = "name: k\njobs:\n  a:\n    steps: [{run: 'true'}]\n"
	p, err := pipeline.Parse("k.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := pipeline.Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	send := func(tenant, key string) (store.Run, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return h.o.Submit(ctx, SubmitRequest{Pipeline: p, Jobs: specs, Source: []byte(yaml), Tenant: tenant, Key: key})
	}
	submit := func(tenant, key string) store.Run {
		t.Helper()
		r, err := send(tenant, key)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, len(ids))
	for i := range ids {
		wg.Go(func() {
			r, err := send("acme", "key-1")
			ids[i], errs[i] = r.ID, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent submission %d: %v", i, err)
		}
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent submission %d with key-1 got run %s, the first got %s", i, id, ids[0])
		}
	}
	if again := submit("acme", "key-1"); again.ID != ids[0] {
		t.Fatalf("a later submission with key-1 got run %s, want %s", again.ID, ids[0])
	}
	if other := submit("globex", "key-1"); other.ID == ids[0] {
		t.Fatalf("key-1 in another tenant got acme's run %s", other.ID)
	}
	if a, b := submit("acme", ""), submit("acme", ""); a.ID == b.ID {
		t.Fatalf("two submissions without a key got one run %s", a.ID)
	}
	runs, err := h.st.ListRuns(context.Background(), store.RunFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Fatalf("acme has %d runs, want 3 (one for key-1, two without a key)", len(runs))
	}
}
