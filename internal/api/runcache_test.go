package api

import (
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// TestRunCacheKeepsOnlyFinishedRunsForAWhile: a run is kept only when it
// and every job of it are final (the orchestrator changes nothing of it
// any more), and only for the time to live; its encoded answer goes with
// it.
func TestRunCacheKeepsOnlyFinishedRunsForAWhile(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newRunCache()
	c.now = func() time.Time { return now }
	done := []store.Job{{ID: "j1", State: state.JobSucceeded}, {ID: "j2", State: state.JobFailed}}
	c.put(store.Run{ID: "active", State: state.RunRunning}, done)
	c.put(store.Run{ID: "job-running", State: state.RunFailed}, []store.Job{{ID: "j", State: state.JobRunning}})
	c.put(store.Run{ID: "finished", State: state.RunFailed}, done)
	for _, id := range []string{"active", "job-running"} {
		if _, _, ok := c.get(id); ok {
			t.Errorf("run %s kept: it may still change", id)
		}
	}
	if r, jobs, ok := c.get("finished"); !ok || r.ID != "finished" || len(jobs) != 2 {
		t.Fatalf("finished run not kept: %v %+v %d jobs", ok, r, len(jobs))
	}
	c.keepAnswer("finished", []byte("{}\n"))
	c.keepAnswer("active", []byte("{}\n"))
	if _, ok := c.answer("active"); ok {
		t.Error("an answer kept for a run the cache does not hold")
	}
	if b, ok := c.answer("finished"); !ok || string(b) != "{}\n" {
		t.Errorf("answer %q %v", b, ok)
	}
	now = now.Add(runCacheTTL)
	if _, _, ok := c.get("finished"); ok {
		t.Error("kept past its time to live")
	}
	if _, ok := c.answer("finished"); ok {
		t.Error("answer kept past its time to live")
	}
}
