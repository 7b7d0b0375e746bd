package orchestrator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

// TestIdempotencyKeyMakesOneRun: submissions with one key in one tenant,
// sent together (one batch or several) and again after the run is stored,
// all get the run the first made; the key in another tenant makes another
// run; a submission without a key always makes a new run.
func TestIdempotencyKeyMakesOneRun(t *testing.T) {
	h := newHarness(t, Config{})
	send := func(tenant, key string) (store.Run, error) { return h.trySubmit(trueJob, tenant, key) }
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

// TestActiveRunsOfATenantAreBounded: past MaxActiveRuns runs that have not
// ended, a tenant's submissions are refused with ErrTooManyRuns, naming the
// tenant, while other tenants still submit and a retried submission (its
// idempotency key) still gets its run; a run that ends makes room; a new
// orchestrator on the same store counts the runs it recovers.
func TestActiveRunsOfATenantAreBounded(t *testing.T) {
	h := newHarness(t, Config{MaxActiveRuns: 2})
	send := func(tenant, key string) (store.Run, error) { return h.trySubmit(trueJob, tenant, key) }
	// No worker: the runs stay queued.
	first, err := send("acme", "k1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send("acme", ""); err != nil {
		t.Fatal(err)
	}
	_, err = send("acme", "")
	if !errors.Is(err, ErrTooManyRuns) || !strings.Contains(err.Error(), "tenant acme has 2 runs") {
		t.Fatalf("third active run of acme: %v, want ErrTooManyRuns naming the tenant and the count", err)
	}
	if again, err := send("acme", "k1"); err != nil || again.ID != first.ID {
		t.Fatalf("retried submission: run %s, %v; want the first run %s", again.ID, err, first.ID)
	}
	if _, err := send("other", ""); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.o.Cancel(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	third, err := send("acme", "")
	if err != nil {
		t.Fatalf("after one of acme's runs ended: %v", err)
	}

	// A new orchestrator on the same store and bus recovers acme's two
	// active runs, and so refuses a third.
	h.o.Stop()
	o2, err := New(Config{Store: h.st, NC: h.nc, Hub: h.o.cfg.Hub, Logger: h.o.cfg.Logger, Metrics: h.o.cfg.Metrics, MaxActiveRuns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := o2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o2.Stop)
	h.restarted(o2)
	if _, err := send("acme", ""); !errors.Is(err, ErrTooManyRuns) {
		t.Fatalf("after a restart, a third active run of acme: %v, want ErrTooManyRuns", err)
	}
	if err := h.o.Cancel(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := send("acme", ""); err != nil {
		t.Fatalf("after a restart and a cancel: %v", err)
	}
}

// trueJob is a pipeline of one job that succeeds.
const trueJob = "name: k\njobs:\n  a:\n    steps: [{run: 'true'}]\n"
