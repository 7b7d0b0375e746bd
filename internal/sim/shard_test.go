package sim

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
)

// runOpts simulates w under o with checks on and returns the result and the
// sim; the tests of every file of the package run their sims with it.
func runOpts(t *testing.T, w *Workload, o Options) (*Result, *Sim) {
	t.Helper()
	o.Check = true
	s, err := NewSim(w, o)
	if err != nil {
		t.Fatal(err)
	}
	for s.Step() {
	}
	r, err := s.Result()
	if err != nil {
		t.Fatalf("%s, %d shards by %q: %v", o.Policy, o.Shards, o.ShardBy, err)
	}
	return r, s
}

// timeless clears what depends on the wall clock.
func timeless(r *Result) Result {
	c := *r
	c.WallS, c.DecisionsPerSec, c.PeakRSSMB, c.Detail.PlanWallS = 0, 0, 0, 0
	return c
}

// One shard is the unsharded run: the same result and every job started at
// the same instant on the same worker, under every policy and either way of
// sharding.
func TestOneShardIsUnsharded(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 5000, Workers: 50, Seed: 11, Variant: Variant{Hetero: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		base, bs := runOpts(t, w, Options{Policy: p})
		for _, by := range []string{ShardByPool, ShardByTenant} {
			r, s := runOpts(t, w, Options{Policy: p, Shards: 1, ShardBy: by})
			if !reflect.DeepEqual(timeless(base), timeless(r)) {
				t.Errorf("%s by %s: one shard gives %+v, unsharded %+v", p, by, timeless(r), timeless(base))
			}
			if !reflect.DeepEqual(bs.start, s.start) || !reflect.DeepEqual(bs.worker, s.worker) {
				t.Errorf("%s by %s: one shard started jobs at other instants or on other workers", p, by)
			}
			if len(r.Shards) != 0 {
				t.Errorf("%s by %s: one shard reports %d shards", p, by, len(r.Shards))
			}
		}
	}
}

// With several shards every job runs exactly once, on a worker of its own
// shard that has its labels, and every shard gets work.
func TestShardsPlaceEachJobOnceInItsShard(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 6000, Workers: 64, Seed: 5, Variant: Variant{Hetero: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, by := range []string{ShardByPool, ShardByTenant} {
		for _, n := range []int{2, 4, 8} {
			for _, p := range []scheduler.Policy{scheduler.PolicyFIFO, scheduler.PolicyHodei} {
				r, s := runOpts(t, w, Options{Policy: p, Shards: n, ShardBy: by})
				if r.Decisions != uint64(w.NumJobs()) || s.starts != w.NumJobs() {
					t.Errorf("%s, %d by %s: %d decisions, %d starts for %d jobs", p, n, by, r.Decisions, s.starts, w.NumJobs())
				}
				if len(r.Shards) != n {
					t.Fatalf("%s, %d by %s: %d shards reported", p, n, by, len(r.Shards))
				}
				// By tenant, a shard may have no tenant (8 shards, 6
				// tenants) and then no job.
				var jobs, workers, busy int
				for i, sh := range r.Shards {
					if sh.Workers == 0 || sh.Decisions != uint64(sh.Jobs) {
						t.Errorf("%s, %d by %s: shard %d has %d workers, %d jobs, %d decisions", p, n, by, i, sh.Workers, sh.Jobs, sh.Decisions)
					}
					if sh.Jobs > 0 {
						busy++
					}
					jobs += sh.Jobs
					workers += sh.Workers
				}
				if busy < min(n, len(w.Tenants)) {
					t.Errorf("%s, %d by %s: %d shards have jobs", p, n, by, busy)
				}
				if jobs != w.NumJobs() || workers != len(w.Workers) {
					t.Errorf("%s, %d by %s: shards hold %d jobs and %d workers of %d and %d", p, n, by, jobs, workers, w.NumJobs(), len(w.Workers))
				}
				for j := range s.state {
					wi := s.worker[j]
					if s.state[j] != jobDone || wi < 0 {
						t.Fatalf("%s, %d by %s: job %d in state %d on worker %d", p, n, by, j, s.state[j], wi)
					}
					if s.shard.worker[wi] != s.shard.job[j] {
						t.Fatalf("%s, %d by %s: job %d of shard %d ran on worker %s of shard %d", p, n, by, j, s.shard.job[j], w.Workers[wi].ID, s.shard.worker[wi])
					}
				}
			}
		}
	}
}

// By pool, shards get about the same CPU; by tenant, the same share of
// every pool and whole tenants, whose jobs leave their tenant's shard only
// when no worker there can hold them; either way, every job's shard has a
// worker that can hold it.
func TestShardPartition(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 3000, Workers: 40, Seed: 2, Tenants: 8})
	if err != nil {
		t.Fatal(err)
	}
	holds := func(sp *shardPlan, s int32, j int32) bool {
		for i, wk := range w.Workers {
			if sp.worker[i] == s && hasAll(wk.Labels, w.Labels[w.JobLabels[j]]) && int64(w.JobCPU[j]) <= wk.CPUMilli &&
				int64(w.JobMemMiB[j]) <= wk.MemoryMiB && int64(w.JobGPU[j]) <= int64(wk.GPU) {
				return true
			}
		}
		return false
	}
	var largest int64
	for _, wk := range w.Workers {
		largest = max(largest, wk.CPUMilli)
	}
	for _, by := range []string{ShardByPool, ShardByTenant} {
		sp, err := partition(w, 4, by)
		if err != nil {
			t.Fatal(err)
		}
		cpu := make([]int64, 4)
		perPool := map[string][]int{}
		for i, sh := range sp.worker {
			cpu[sh] += w.Workers[i].CPUMilli
			k := strings.Join(w.Workers[i].Labels, ";")
			if perPool[k] == nil {
				perPool[k] = make([]int, 4)
			}
			perPool[k][sh]++
		}
		if slices.Max(cpu)-slices.Min(cpu) > largest {
			t.Errorf("by %s: CPU per shard %v, further apart than the largest worker (%d)", by, cpu, largest)
		}
		for j := range sp.job {
			if !holds(sp, sp.job[j], int32(j)) {
				t.Fatalf("by %s: job %d is in shard %d, where no worker can hold it", by, j, sp.job[j])
			}
		}
		if by != ShardByTenant {
			continue
		}
		for k, c := range perPool {
			if slices.Max(c)-slices.Min(c) > 1 {
				t.Errorf("by tenant: pool %s split %v", k, c)
			}
		}
		used := map[int32]bool{}
		moved := 0
		for _, p := range w.Pipelines {
			home := sp.tenant[p.Tenant]
			used[home] = true
			for j := p.First; j < p.First+p.Jobs; j++ {
				if sp.job[j] != home {
					moved++
					if holds(sp, home, j) {
						t.Fatalf("job %d of tenant %s is in shard %d, though its tenant's shard %d can hold it", j, w.Tenants[p.Tenant], sp.job[j], home)
					}
				}
			}
		}
		if len(used) != 4 {
			t.Errorf("8 tenants by tenant use %d of 4 shards", len(used))
		}
		t.Logf("by tenant: %d of %d jobs outside their tenant's shard (their pool is elsewhere)", moved, len(sp.job))
	}
	if _, err := partition(w, 2, "repo"); err == nil || !strings.Contains(err.Error(), "pool or tenant") {
		t.Errorf("shard by repo: got %v", err)
	}
	if _, err := partition(w, MaxShards+1, ShardByPool); err == nil {
		t.Errorf("%d shards accepted", MaxShards+1)
	}
}

// Sharded runs with worker churn: a lost worker's jobs go back to its
// shard's queue, and every job still ends.
func TestShardsWithChurn(t *testing.T) {
	w, err := Generate(GenOptions{Jobs: 3000, Workers: 32, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, by := range []string{ShardByPool, ShardByTenant} {
		r, _ := runOpts(t, w, Options{Policy: scheduler.PolicyHodei, Shards: 4, ShardBy: by, Churn: 20, ChurnDown: 5 * time.Minute, Seed: 1})
		if r.Detail.WorkerLosses == 0 || r.Detail.Requeued == 0 {
			t.Errorf("by %s: %d losses, %d requeued: want some", by, r.Detail.WorkerLosses, r.Detail.Requeued)
		}
		if r.Decisions != uint64(w.NumJobs()+r.Detail.Requeued) {
			t.Errorf("by %s: %d decisions for %d jobs and %d requeues", by, r.Decisions, w.NumJobs(), r.Detail.Requeued)
		}
	}
}

// A worker that the simulator puts in one shard while another shard's
// engine holds it: the first job placed there is an error.
func TestShardMismatchIsAnError(t *testing.T) {
	w := workload(t, []Worker{worker("a", 1000), worker("b", 1000)},
		one("p1", "t", 0, 0, 10, 1000), one("p2", "t", 0, 1, 10, 1000), one("p3", "t", 0, 2, 10, 1000))
	s, err := NewSim(w, Options{Policy: scheduler.PolicyFIFO, Shards: 2, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	s.shard.worker[0], s.shard.worker[1] = s.shard.worker[1], s.shard.worker[0]
	for s.Step() {
	}
	if s.Err() == nil || !strings.Contains(s.Err().Error(), "of shard") {
		t.Fatalf("got %v, want a shard mismatch", s.Err())
	}
}
