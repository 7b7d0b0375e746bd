package scheduler

import (
	"strings"
	"testing"
)

// TestEngineWhy checks each reason a queued job gets, and that asking
// changes no placement.
func TestEngineWhy(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	single(e, "t", "early", res(2000, 1, 0), 0, e0)
	if got := e.Why("early"); got.Code != ReasonNoWorkers {
		t.Fatalf("empty fleet: %+v, want %s", got, ReasonNoWorkers)
	}
	e.UpsertWorker(WorkerSpec{ID: "w1", Labels: []string{"linux"}, Capacity: res(2000, 4, 0)})
	e.UpsertWorker(WorkerSpec{ID: "w2", Labels: []string{"docker"}, Capacity: res(1000, 8, 0)})
	if got := e.Why("early"); got != (Reason{}) {
		t.Fatalf("fits an idle worker: %+v, want none", got)
	}
	if as := e.Plan(e0); len(as) != 1 {
		t.Fatalf("placed %v", as)
	}
	// early takes all of w1; filler all of w2.
	single(e, "t", "filler", res(1000, 1, 0), 0, e0)
	e.Plan(e0)

	single(e, "t", "labels", res(500, 1, 0), 0, e0, "docker", "gpu-box")
	single(e, "t", "both", res(500, 1, 0), 0, e0, "docker", "linux")
	single(e, "t", "cpu", res(64000, 1, 0), 0, e0, "linux")
	single(e, "t", "mem", res(1000, 6, 0), 0, e0, "linux")
	single(e, "t", "gpu", res(1000, 1, 1), 0, e0)
	single(e, "t", "busy", res(1000, 1, 0), 0, e0)
	before := e.Plan(e0)
	if len(before) != 0 {
		t.Fatalf("placed %v on a full fleet", before)
	}
	tests := []struct {
		job    string
		code   ReasonCode
		detail string
	}{
		{"labels", ReasonLabels, "no worker has the label gpu-box"},
		{"both", ReasonLabels, "no worker has all the labels"},
		{"cpu", ReasonTooLarge, "asks 64 cpu, the largest worker has 2"},
		{"mem", ReasonTooLarge, "asks 6Gi memory, the largest worker has 4Gi"},
		{"gpu", ReasonTooLarge, "asks 1 gpu, the largest worker has 0"},
		{"busy", ReasonBusy, "2 worker(s) can run it"},
	}
	for _, tc := range tests {
		got := e.Why(tc.job)
		if got.Code != tc.code || !strings.Contains(got.Detail, tc.detail) {
			t.Errorf("%s: %+v, want %s %q", tc.job, got, tc.code, tc.detail)
		}
		if got.Never() != (tc.code != ReasonBusy) {
			t.Errorf("%s: Never() = %v", tc.job, got.Never())
		}
	}
	if got := e.Why("early"); got != (Reason{}) {
		t.Errorf("placed job: %+v, want none", got)
	}
	if got := e.Why("unknown"); got != (Reason{}) {
		t.Errorf("unknown job: %+v, want none", got)
	}
	mustCheck(t, e)
	// A worker large enough joins: the cpu job is placed, Why changed nothing.
	e.UpsertWorker(WorkerSpec{ID: "big", Labels: []string{"linux"}, Capacity: res(64000, 8, 0)})
	if m := placedOn(e.Plan(e0)); m["cpu"] != "big" {
		t.Fatalf("after the big worker joined: %v", m)
	}
}

// TestEngineWhyPriorityAndFairShare checks the reasons a job that waits for
// busy workers gets under the hodei policy: its tenant over its fair share,
// or queued jobs of a higher priority; fifo says only that workers are busy.
func TestEngineWhyPriorityAndFairShare(t *testing.T) {
	t.Parallel()
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO} {
		e := NewEngine(Config{Policy: policy})
		e.UpsertWorker(WorkerSpec{ID: "w1", Capacity: res(2000, 4, 0)})
		e.UpsertWorker(WorkerSpec{ID: "w2", Capacity: res(2000, 4, 0)})
		// Tenant a takes both workers; b then queues, and so does a again.
		single(e, "a", "a1", res(2000, 1, 0), 0, e0)
		single(e, "a", "a2", res(2000, 1, 0), 0, e0)
		if as := e.Plan(e0); len(as) != 2 {
			t.Fatalf("%s: placed %v", policy, as)
		}
		single(e, "b", "b1", res(2000, 1, 0), 0, e0)
		single(e, "a", "a3", res(2000, 1, 0), 0, e0)
		single(e, "b", "b2", res(1000, 1, 0), 5, e0)
		e.Plan(e0)
		want := map[string]ReasonCode{"a3": ReasonFairShare, "b1": ReasonPriority, "b2": ReasonBusy}
		if policy != PolicyHodei {
			want = map[string]ReasonCode{"a3": ReasonBusy, "b1": ReasonBusy, "b2": ReasonBusy}
		}
		for job, code := range want {
			got := e.Why(job)
			if got.Code != code || !strings.Contains(got.Detail, "2 worker(s) can run it, all busy") || got.Never() {
				t.Errorf("%s: %s: %+v, want %s", policy, job, got, code)
			}
		}
		if policy == PolicyHodei {
			if d := e.Why("a3").Detail; !strings.Contains(d, "tenant a holds 100% of the fleet, its fair share is 50%") {
				t.Errorf("fair share detail %q", d)
			}
			if d := e.Why("b1").Detail; !strings.Contains(d, "1 queued job(s) of higher priority") {
				t.Errorf("priority detail %q", d)
			}
		}
		mustCheck(t, e)
	}
}

// TestEngineWhyWithPools checks the reasons the pools add: a job that no
// running worker takes now waits for a pool that can still grow, says that
// the pools it fits are at their max, or says that no pool fits it either
// (and then nothing can ever run it).
func TestEngineWhyWithPools(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	single(e, "t", "lonely", res(1000, 1, 0), 0, e0, "small")
	small := Pool{Name: "small", Labels: []string{"linux", "small"}, Capacity: res(1000, 2, 0), Size: 0, Max: 1}
	// No worker at all: the pool adds one, or cannot.
	if got := e.WhyWith("lonely", []Pool{small}); got.Code != ReasonPoolScaling || !strings.Contains(got.Detail, "pool small adds a worker for it (0 of max 1)") {
		t.Errorf("pool below max: %+v", got)
	}
	small.Size, small.Starting = 1, 1
	if got := e.WhyWith("lonely", []Pool{small}); got.Code != ReasonPoolScaling || !strings.Contains(got.Detail, "pool small is starting 1 worker(s) (1 of max 1)") {
		t.Errorf("pool at max, starting a worker: %+v", got)
	}
	small.Starting = 0
	if got := e.WhyWith("lonely", []Pool{small}); got.Code != ReasonPoolAtMax || !strings.HasPrefix(got.Detail, "pool small is at its max of 1 workers; no worker has joined") || got.Never() {
		t.Errorf("pool at max: %+v", got)
	}
	// Its worker joins and takes one job; the next waits for it.
	e.UpsertWorker(WorkerSpec{ID: "s1", Pool: "small", Labels: []string{"linux", "small"}, Capacity: res(1000, 2, 0)})
	if as := e.Plan(e0); len(as) != 1 {
		t.Fatalf("placed %v", as)
	}
	single(e, "t", "second", res(1000, 1, 0), 0, e0, "small")
	single(e, "t", "huge", res(10_000_000, 1, 0), 0, e0)
	single(e, "t", "gpu", res(100, 1, 0), 0, e0, "gpu")
	e.Plan(e0)
	got := e.WhyWith("second", []Pool{small})
	if got.Code != ReasonPoolAtMax || got.Detail != "pool small is at its max of 1 workers; 1 worker(s) can run it, all busy" {
		t.Errorf("busy pool at max: %+v", got)
	}
	// Without pools the same job only waits for busy workers.
	if got := e.Why("second"); got.Code != ReasonBusy {
		t.Errorf("without pools: %+v", got)
	}
	for job, code := range map[string]ReasonCode{"huge": ReasonTooLarge, "gpu": ReasonLabels} {
		got := e.WhyWith(job, []Pool{small})
		if got.Code != code || !strings.HasSuffix(got.Detail, "; no pool's shape fits it") || !got.Never() {
			t.Errorf("%s: %+v, want %s that no pool fits", job, got, code)
		}
	}
	// With no worker joined, what fits no pool is never runnable either.
	e2 := NewEngine(Config{})
	single(e2, "t", "gpu", res(100, 1, 0), 0, e0, "gpu")
	single(e2, "t", "huge", res(10_000_000, 1, 0), 0, e0, "small")
	if got := e2.WhyWith("gpu", []Pool{small}); got.Code != ReasonLabels || !got.Never() ||
		got.Detail != "no worker has joined, and no pool's workers have the labels gpu" {
		t.Errorf("no worker, no pool with the label: %+v", got)
	}
	if got := e2.WhyWith("huge", []Pool{small}); got.Code != ReasonTooLarge || !got.Never() ||
		!strings.HasPrefix(got.Detail, "no worker has joined, and no pool's shape is large enough: asks 10000 cpu, the largest pool's workers have 1") {
		t.Errorf("no worker, no pool large enough: %+v", got)
	}
	mustCheck(t, e)
	mustCheck(t, e2)
}

// TestEngineWhyWithContainerPools: an image job carries docker and its
// container's label; a pool is never asked for the container label, and a
// pool that makes a worker per container (Kubernetes) not for docker
// either, so the job waits for that pool instead of failing at once.
func TestEngineWhyWithContainerPools(t *testing.T) {
	t.Parallel()
	e := NewEngine(Config{})
	single(e, "t", "img", res(500, 1, 0), 0, e0, "docker", "container:abc")
	kube := Pool{Name: "kube", Labels: []string{"linux"}, Capacity: res(1000, 2, 0), Max: 2, Containers: true}
	if got := e.WhyWith("img", []Pool{kube}); got.Code != ReasonPoolScaling || got.Never() {
		t.Errorf("pool of container workers: %+v, want %s", got, ReasonPoolScaling)
	}
	dockers := Pool{Name: "dockers", Labels: []string{"linux", "docker"}, Capacity: res(1000, 2, 0), Max: 2}
	if got := e.WhyWith("img", []Pool{dockers}); got.Code != ReasonPoolScaling || got.Never() {
		t.Errorf("pool of docker agents: %+v, want %s", got, ReasonPoolScaling)
	}
	plain := Pool{Name: "plain", Labels: []string{"linux"}, Capacity: res(1000, 2, 0), Max: 2}
	if got := e.WhyWith("img", []Pool{plain}); !got.Never() {
		t.Errorf("pool without docker or containers: %+v, want a reason that never ends", got)
	}
}
