package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

// runCache keeps, for a short while, runs that have ended with all their
// jobs: reads of a finished run (the most frequent request of dashboards
// and CLIs polling a result) are then served without the store. Only a run
// whose state and every job's state are final is kept: the orchestrator
// no longer changes it. The time to live bounds what a reader could see of
// a change that would still come (none is expected) and lets the memory go.
type runCache struct {
	mu  sync.Mutex
	m   map[string]cachedRun
	ttl time.Duration
	max int
	now func() time.Time
}

type cachedRun struct {
	run     store.Run
	jobs    []store.Job
	expires time.Time
	// body is the answer of GET /api/v1/runs/ID, once encoded: a finished
	// run's answer does not depend on the time.
	body []byte
}

const (
	runCacheTTL = 2 * time.Second
	runCacheMax = 4096
)

func newRunCache() *runCache {
	return &runCache{m: map[string]cachedRun{}, ttl: runCacheTTL, max: runCacheMax, now: time.Now}
}

// get returns a run kept and not expired.
func (c *runCache) get(id string) (store.Run, []store.Job, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return store.Run{}, nil, false
	}
	if !c.now().Before(e.expires) {
		delete(c.m, id)
		return store.Run{}, nil, false
	}
	return e.run, e.jobs, true
}

// put keeps a run if it and all its jobs are final.
func (c *runCache) put(run store.Run, jobs []store.Job) {
	if !run.State.Final() {
		return
	}
	for _, j := range jobs {
		if !j.State.Final() {
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= c.max {
		for id, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, id)
			}
		}
		if len(c.m) >= c.max {
			return
		}
	}
	c.m[run.ID] = cachedRun{run: run, jobs: jobs, expires: now.Add(c.ttl)}
}

// answer returns the encoded answer kept for a run.
func (c *runCache) answer(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || e.body == nil || !c.now().Before(e.expires) {
		return nil, false
	}
	return e.body, true
}

// keepAnswer keeps the encoded answer of a run the cache holds.
func (c *runCache) keepAnswer(id string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		e.body = body
		c.m[id] = e
	}
}

// readRun reads a run: from the cache, from the request (authorizeRun read
// it already), or from the store.
func (a *api) readRun(ctx context.Context, r *http.Request, id string) (store.Run, error) {
	if run, _, ok := a.runs.get(id); ok {
		return run, nil
	}
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok && ri.run != nil && ri.run.ID == id {
		return *ri.run, nil
	}
	run, err := a.d.Store.GetRun(ctx, id)
	if err == nil {
		if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
			ri.run = &run
		}
	}
	return run, err
}

// runWithJobs reads a run and its jobs, from the cache when it has them,
// and keeps a finished run.
func (a *api) runWithJobs(r *http.Request, id string) (store.Run, []store.Job, error) {
	if run, jobs, ok := a.runs.get(id); ok {
		return run, jobs, nil
	}
	run, err := a.readRun(r.Context(), r, id)
	if err != nil {
		return run, nil, err
	}
	jobs, err := a.d.Store.ListJobs(r.Context(), id)
	if err != nil {
		return run, nil, err
	}
	a.runs.put(run, jobs)
	return run, jobs, nil
}

// forgetRun drops the run the request read earlier: the next read goes to
// the store.
func forgetRun(r *http.Request) {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		ri.run = nil
	}
}
