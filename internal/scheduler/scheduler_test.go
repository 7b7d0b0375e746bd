package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func worker(id string, cpu, mem int64, gpu int, labels ...string) Worker {
	return Worker{ID: id, CPUMilli: cpu, Memory: mem, GPU: gpu, Labels: labels, Schedulable: true}
}

func job(id string, cpu, mem int64, gpu int, labels ...string) Job {
	return Job{ID: id, CPUMilli: cpu, Memory: mem, GPU: gpu, Labels: labels, QueuedAt: t0}
}

// at returns j queued d after t0 with sequence number seq.
func at(j Job, d time.Duration, seq uint64) Job {
	j.QueuedAt = t0.Add(d)
	j.Seq = seq
	return j
}

func prio(j Job, p int) Job {
	j.Priority = p
	return j
}

func assigned(p Plan) map[string]string {
	m := map[string]string{}
	for _, a := range p.Assignments {
		m[a.JobID] = a.WorkerID
	}
	return m
}

func jobIDs(p Plan) []string {
	var out []string
	for _, a := range p.Assignments {
		out = append(out, a.JobID)
	}
	return out
}

func TestPlanFIFO(t *testing.T) {
	t.Parallel()
	const gi = int64(1) << 30
	tests := []struct {
		name string
		snap Snapshot
		// want is the exact list of assignments, in order.
		want        []Assignment
		unplaceable []string
	}{
		{
			name: "empty",
			snap: Snapshot{},
		},
		{
			name:        "no workers: every job is unplaceable",
			snap:        Snapshot{Queue: []Job{at(job("a", 100, 0, 0), 0, 1), at(job("b", 0, 0, 0), 0, 2)}},
			unplaceable: []string{"a", "b"},
		},
		{
			name: "cpu capacity",
			snap: Snapshot{
				Workers: []Worker{worker("w", 2000, 8*gi, 0)},
				Queue:   []Job{at(job("a", 1000, 0, 0), 0, 1), at(job("b", 1000, 0, 0), 0, 2), at(job("c", 1000, 0, 0), 0, 3)},
			},
			want: []Assignment{{"a", "w"}, {"b", "w"}},
		},
		{
			name: "cpu already used counts",
			snap: Snapshot{
				Workers: []Worker{func() Worker { w := worker("w", 4000, 8*gi, 0); w.UsedCPUMilli = 3500; return w }()},
				Queue:   []Job{at(job("a", 1000, 0, 0), 0, 1), at(job("b", 500, 0, 0), 0, 2)},
			},
			want: []Assignment{{"b", "w"}},
		},
		{
			name: "memory capacity",
			snap: Snapshot{
				Workers: []Worker{worker("w", 64000, 3*gi, 0)},
				Queue:   []Job{at(job("a", 1, 2*gi, 0), 0, 1), at(job("b", 1, 2*gi, 0), 0, 2), at(job("c", 1, gi, 0), 0, 3)},
			},
			want: []Assignment{{"a", "w"}, {"c", "w"}},
		},
		{
			name: "memory already used counts",
			snap: Snapshot{
				Workers: []Worker{func() Worker { w := worker("w", 64000, 4*gi, 0); w.UsedMemory = 3 * gi; return w }()},
				Queue:   []Job{at(job("a", 1, 2*gi, 0), 0, 1)},
			},
		},
		{
			name: "gpu capacity",
			snap: Snapshot{
				Workers: []Worker{worker("w", 64000, 64*gi, 2)},
				Queue:   []Job{at(job("a", 1, 1, 1), 0, 1), at(job("b", 1, 1, 2), 0, 2), at(job("c", 1, 1, 1), 0, 3), at(job("d", 1, 1, 1), 0, 4)},
			},
			want: []Assignment{{"a", "w"}, {"c", "w"}},
		},
		{
			name: "gpu job never lands on a worker without gpus",
			snap: Snapshot{
				Workers: []Worker{worker("cpu", 64000, 64*gi, 0)},
				Queue:   []Job{at(job("g", 1, 1, 1), 0, 1)},
			},
			unplaceable: []string{"g"},
		},
		{
			name: "gpu already used counts",
			snap: Snapshot{
				Workers: []Worker{func() Worker { w := worker("w", 64000, 64*gi, 2); w.UsedGPU = 2; return w }()},
				Queue:   []Job{at(job("g", 1, 1, 1), 0, 1), at(job("c", 1, 1, 0), 0, 2)},
			},
			want: []Assignment{{"c", "w"}},
		},
		{
			name: "exact fit",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, 1000, 1)},
				Queue:   []Job{at(job("a", 1000, 1000, 1), 0, 1)},
			},
			want: []Assignment{{"a", "w"}},
		},
		{
			name: "every label must be present",
			snap: Snapshot{
				Workers: []Worker{
					worker("big-nolabel", 64000, 64*gi, 0, "linux"),
					worker("small-labels", 2000, 4*gi, 0, "arm64", "linux", "ssd"),
				},
				Queue: []Job{at(job("a", 1000, 0, 0, "linux", "arm64"), 0, 1)},
			},
			want: []Assignment{{"a", "small-labels"}},
		},
		{
			name: "missing label: unplaceable",
			snap: Snapshot{
				Workers: []Worker{worker("w1", 64000, 64*gi, 0, "linux"), worker("w2", 64000, 64*gi, 0, "arm64")},
				Queue:   []Job{at(job("a", 1000, 0, 0, "linux", "arm64"), 0, 1)},
			},
			unplaceable: []string{"a"},
		},
		{
			name: "labels are case sensitive and matched exactly",
			snap: Snapshot{
				Workers: []Worker{worker("w", 64000, 64*gi, 0, "Linux", "linux-x")},
				Queue:   []Job{at(job("a", 1, 0, 0, "linux"), 0, 1)},
			},
			unplaceable: []string{"a"},
		},
		{
			name: "job without labels goes anywhere",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0, "x", "y")},
				Queue:   []Job{at(job("a", 1, 1, 0), 0, 1)},
			},
			want: []Assignment{{"a", "w"}},
		},
		{
			name: "higher priority first even when queued later",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					at(job("low", 1000, 0, 0), 0, 1),
					prio(at(job("high", 1000, 0, 0), time.Hour, 9), 5),
				},
			},
			want: []Assignment{{"high", "w"}},
		},
		{
			name: "negative priority goes after zero",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					prio(at(job("neg", 1000, 0, 0), 0, 1), -1),
					at(job("zero", 1000, 0, 0), time.Hour, 2),
				},
			},
			want: []Assignment{{"zero", "w"}},
		},
		{
			name: "same priority: first queued first",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					at(job("later", 1000, 0, 0), time.Second, 1),
					at(job("earlier", 1000, 0, 0), 0, 2),
				},
			},
			want: []Assignment{{"earlier", "w"}},
		},
		{
			name: "same instant: lower seq first",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					at(job("a-seq7", 1000, 0, 0), 0, 7),
					at(job("z-seq3", 1000, 0, 0), 0, 3),
				},
			},
			want: []Assignment{{"z-seq3", "w"}},
		},
		{
			name: "same instant in another time zone is the same instant",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					func() Job {
						j := at(job("b", 1000, 0, 0), 0, 1)
						j.QueuedAt = j.QueuedAt.In(time.FixedZone("x", 3600))
						return j
					}(),
					at(job("a", 1000, 0, 0), 0, 2),
				},
			},
			want: []Assignment{{"b", "w"}},
		},
		{
			name: "assignments come out in queue order",
			snap: Snapshot{
				Workers: []Worker{worker("w", 64000, 64*gi, 0)},
				Queue: []Job{
					at(job("c", 1, 0, 0), 3*time.Second, 1),
					prio(at(job("p", 1, 0, 0), 9*time.Second, 2), 1),
					at(job("a", 1, 0, 0), 1*time.Second, 3),
					at(job("b", 1, 0, 0), 2*time.Second, 4),
				},
			},
			want: []Assignment{{"p", "w"}, {"a", "w"}, {"b", "w"}, {"c", "w"}},
		},
		{
			name: "big job that fits nowhere now does not block smaller ones",
			snap: Snapshot{
				Workers: []Worker{
					func() Worker { w := worker("w1", 4000, 8*gi, 0); w.UsedCPUMilli = 2000; return w }(),
					func() Worker { w := worker("w2", 4000, 8*gi, 0); w.UsedCPUMilli = 3000; return w }(),
				},
				Queue: []Job{
					prio(at(job("big", 3000, 0, 0), 0, 1), 10),
					at(job("s1", 1000, 0, 0), time.Second, 2),
					at(job("s2", 1000, 0, 0), 2*time.Second, 3),
					at(job("s3", 1000, 0, 0), 3*time.Second, 4),
					at(job("s4", 1000, 0, 0), 4*time.Second, 5),
				},
			},
			// w1 has 2000 free, w2 1000: s1 to w1 (most free), then tie at
			// 1000 broken by id, then both full. big waits, not unplaceable.
			want: []Assignment{{"s1", "w1"}, {"s2", "w1"}, {"s3", "w2"}},
		},
		{
			name: "unplaceable: too big for any worker even empty; waiting jobs are not",
			snap: Snapshot{
				Workers: []Worker{
					func() Worker { w := worker("w", 4000, 8*gi, 1); w.UsedCPUMilli = 4000; return w }(),
				},
				Queue: []Job{
					at(job("cpu-huge", 8000, 0, 0), 0, 1),
					at(job("mem-huge", 1, 16*gi, 0), 0, 2),
					at(job("gpu-huge", 1, 0, 2), 0, 3),
					at(job("label", 1, 0, 0, "nope"), 0, 4),
					at(job("waiting", 1000, 0, 0), 0, 5),
					at(job("waiting-gpu", 1000, 0, 1), 0, 6),
				},
			},
			unplaceable: []string{"cpu-huge", "mem-huge", "gpu-huge", "label"},
		},
		{
			name: "unplaceable keeps queue order",
			snap: Snapshot{
				Workers: []Worker{worker("w", 1000, gi, 0)},
				Queue: []Job{
					at(job("u2", 9000, 0, 0), 2*time.Second, 1),
					prio(at(job("u3", 9000, 0, 0), 3*time.Second, 2), 1),
					at(job("u1", 9000, 0, 0), time.Second, 3),
				},
			},
			unplaceable: []string{"u3", "u1", "u2"},
		},
		{
			name: "non-schedulable workers get nothing",
			snap: Snapshot{
				Workers: []Worker{
					func() Worker { w := worker("draining", 64000, 64*gi, 4); w.Schedulable = false; return w }(),
					worker("small", 1000, gi, 0),
				},
				Queue: []Job{
					at(job("a", 1000, 0, 0), 0, 1),
					at(job("b", 1000, 0, 0), 0, 2),
				},
			},
			want: []Assignment{{"a", "small"}},
		},
		{
			name: "a job that only a non-schedulable worker could take is unplaceable",
			snap: Snapshot{
				Workers: []Worker{
					func() Worker { w := worker("draining", 64000, 64*gi, 4, "gpu"); w.Schedulable = false; return w }(),
					worker("small", 1000, gi, 0),
				},
				Queue: []Job{at(job("g", 1000, 0, 1, "gpu"), 0, 1)},
			},
			unplaceable: []string{"g"},
		},
		{
			name: "spread: equal jobs go to the worker with the most free cpu",
			snap: Snapshot{
				Workers: []Worker{
					worker("a", 2000, 64*gi, 0),
					worker("b", 8000, 64*gi, 0),
					func() Worker { w := worker("c", 8000, 64*gi, 0); w.UsedCPUMilli = 5000; return w }(),
				},
				Queue: []Job{
					at(job("j1", 1000, 0, 0), 0, 1), // b 8000 -> 7000
					at(job("j2", 1000, 0, 0), 0, 2), // b 7000 -> 6000
					at(job("j3", 1000, 0, 0), 0, 3), // b 6000 -> 5000
					at(job("j4", 1000, 0, 0), 0, 4), // b 5000 -> 4000
					at(job("j5", 1000, 0, 0), 0, 5), // b 4000 -> 3000
					at(job("j6", 1000, 0, 0), 0, 6), // b,c tie at 3000: b by id
					at(job("j7", 1000, 0, 0), 0, 7), // c 3000
				},
			},
			want: []Assignment{{"j1", "b"}, {"j2", "b"}, {"j3", "b"}, {"j4", "b"}, {"j5", "b"}, {"j6", "b"}, {"j7", "c"}},
		},
		{
			name: "spread ties broken by worker id, whatever the fleet order",
			snap: Snapshot{
				Workers: []Worker{worker("w3", 1000, gi, 0), worker("w1", 1000, gi, 0), worker("w2", 1000, gi, 0)},
				Queue: []Job{
					at(job("a", 1000, 0, 0), 0, 1),
					at(job("b", 1000, 0, 0), 0, 2),
					at(job("c", 1000, 0, 0), 0, 3),
				},
			},
			want: []Assignment{{"a", "w1"}, {"b", "w2"}, {"c", "w3"}},
		},
		{
			name: "spread ignores memory: most free cpu wins",
			snap: Snapshot{
				Workers: []Worker{worker("mem", 2000, 64*gi, 0), worker("cpu", 4000, gi, 0)},
				Queue:   []Job{at(job("a", 100, gi/2, 0), 0, 1)},
			},
			want: []Assignment{{"a", "cpu"}},
		},
		{
			name: "zero-request jobs are placed",
			snap: Snapshot{
				Workers: []Worker{func() Worker { w := worker("w", 1000, gi, 0); w.UsedCPUMilli = 1000; w.UsedMemory = gi; return w }()},
				Queue:   []Job{at(job("z", 0, 0, 0), 0, 1)},
			},
			want: []Assignment{{"z", "w"}},
		},
		{
			name: "overcommitted worker gets nothing",
			snap: Snapshot{
				Workers: []Worker{func() Worker { w := worker("w", 1000, gi, 0); w.UsedCPUMilli = 1500; return w }()},
				Queue:   []Job{at(job("z", 0, 0, 0), 0, 1), at(job("a", 1, 0, 0), 0, 2)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := deepCopy(tt.snap)
			got := PlanFIFO(tt.snap)
			if !slices.Equal(got.Assignments, tt.want) {
				t.Errorf("assignments\n got %v\nwant %v", got.Assignments, tt.want)
			}
			if !slices.Equal(got.Unplaceable, tt.unplaceable) {
				t.Errorf("unplaceable\n got %v\nwant %v", got.Unplaceable, tt.unplaceable)
			}
			if !reflect.DeepEqual(before, tt.snap) {
				t.Errorf("PlanFIFO modified its input")
			}
		})
	}
}

func deepCopy(s Snapshot) Snapshot {
	out := Snapshot{Workers: slices.Clone(s.Workers), Queue: slices.Clone(s.Queue)}
	for i := range out.Workers {
		out.Workers[i].Labels = slices.Clone(out.Workers[i].Labels)
	}
	for i := range out.Queue {
		out.Queue[i].Labels = slices.Clone(out.Queue[i].Labels)
	}
	return out
}

// TestPlanFIFODoesNotModifyInput checks the order of the queue and the fleet,
// the Used counters and the label slices' backing arrays, on a plan that
// reorders the queue and fills the workers.
func TestPlanFIFODoesNotModifyInput(t *testing.T) {
	t.Parallel()
	labels := []string{"b", "a"}
	snap := Snapshot{
		Workers: []Worker{worker("w2", 2000, 2000, 1, labels...), worker("w1", 3000, 3000, 0, "a")},
		Queue: []Job{
			at(job("z", 1000, 1000, 0, "a"), 3*time.Second, 1),
			prio(at(job("y", 1000, 1000, 1, "b"), 2*time.Second, 2), 3),
			at(job("x", 1000, 1000, 0), time.Second, 3),
			at(job("huge", 99999, 0, 0), 0, 4),
		},
	}
	before := deepCopy(snap)
	p := PlanFIFO(snap)
	if len(p.Assignments) != 3 || len(p.Unplaceable) != 1 {
		t.Fatalf("unexpected plan %+v", p)
	}
	if !reflect.DeepEqual(before, snap) {
		t.Fatalf("input modified:\nbefore %+v\nafter  %+v", before, snap)
	}
	if !slices.Equal(labels, []string{"b", "a"}) {
		t.Fatalf("worker labels modified: %v", labels)
	}
	// Planning again on the same snapshot gives the same plan: nothing of
	// the first plan leaked into the input.
	if p2 := PlanFIFO(snap); !reflect.DeepEqual(p, p2) {
		t.Fatalf("second plan differs:\n%+v\n%+v", p, p2)
	}
}

func with(j Job, f func(*Job)) Job {
	f(&j)
	return j
}

func TestLess(t *testing.T) {
	t.Parallel()
	a := Job{ID: "a", Priority: 1, QueuedAt: t0, Seq: 5}
	cases := []struct {
		name string
		x, y Job
	}{
		// y loses to x on one key although it wins on every later one.
		{"priority", a, with(a, func(b *Job) { b.Priority = 0; b.QueuedAt = t0.Add(-time.Hour); b.Seq = 0; b.ID = "0" })},
		{"queued at", a, with(a, func(b *Job) { b.QueuedAt = t0.Add(time.Nanosecond); b.Seq = 0; b.ID = "0" })},
		{"seq", a, with(a, func(b *Job) { b.Seq = 6; b.ID = "0" })},
		{"id", a, with(a, func(b *Job) { b.ID = "b" })},
	}
	for _, c := range cases {
		if !Less(&c.x, &c.y) {
			t.Errorf("%s: Less(x, y) = false", c.name)
		}
		if Less(&c.y, &c.x) {
			t.Errorf("%s: Less(y, x) = true", c.name)
		}
	}
	if Less(&a, &a) {
		t.Error("Less(a, a) = true")
	}
}

func TestFits(t *testing.T) {
	t.Parallel()
	w := worker("w", 4000, 4096, 2, "linux", "gpu")
	w.UsedCPUMilli, w.UsedMemory, w.UsedGPU = 1000, 1024, 1
	for _, c := range []struct {
		j    Job
		want bool
	}{
		{job("ok", 3000, 3072, 1, "gpu"), true},
		{job("cpu", 3001, 0, 0), false},
		{job("mem", 0, 3073, 0), false},
		{job("gpu", 0, 0, 2), false},
		{job("label", 0, 0, 0, "linux", "arm64"), false},
	} {
		if got := Fits(&w, &c.j); got != c.want {
			t.Errorf("Fits(%s) = %v, want %v", c.j.ID, got, c.want)
		}
	}
	w.Schedulable = false
	j := job("tiny", 0, 0, 0)
	if Fits(&w, &j) {
		t.Error("Fits on a non-schedulable worker")
	}
}

// randomSnapshot builds a fleet and a queue from r. IDs are unique; labels,
// priorities and queue times collide often so that tie-breaks matter.
func randomSnapshot(r *rand.Rand, nWorkers, nJobs int) Snapshot {
	labelPool := []string{"linux", "arm64", "amd64", "gpu", "ssd", "big"}
	pick := func(max int) []string {
		var out []string
		for _, l := range labelPool {
			if r.IntN(len(labelPool)) < max {
				out = append(out, l)
			}
		}
		return out
	}
	s := Snapshot{}
	for i := range nWorkers {
		w := Worker{
			ID:          fmt.Sprintf("w%03d", r.IntN(1000)*1000+i), // unique, shuffled order
			Labels:      pick(4),
			CPUMilli:    int64(r.IntN(8)+1) * 1000,
			Memory:      int64(r.IntN(16)+1) << 30,
			GPU:         r.IntN(3),
			Schedulable: r.IntN(5) != 0,
		}
		if r.IntN(2) == 0 {
			w.UsedCPUMilli = r.Int64N(w.CPUMilli + 1)
			w.UsedMemory = r.Int64N(w.Memory + 1)
			w.UsedGPU = r.IntN(w.GPU + 1)
		}
		s.Workers = append(s.Workers, w)
	}
	for i := range nJobs {
		s.Queue = append(s.Queue, Job{
			ID:       fmt.Sprintf("j%05d", i),
			Priority: r.IntN(3),
			QueuedAt: t0.Add(time.Duration(r.IntN(20)) * time.Second),
			Seq:      uint64(r.IntN(nJobs + 1)),
			CPUMilli: int64(r.IntN(40)) * 100,
			Memory:   int64(r.IntN(8)) << 29,
			GPU:      r.IntN(4) / 2 * r.IntN(2),
			Labels:   pick(1),
		})
	}
	return s
}

// checkPlan verifies the invariants of a plan against its snapshot.
func checkPlan(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	workers := map[string]*Worker{}
	for i := range s.Workers {
		workers[s.Workers[i].ID] = &s.Workers[i]
	}
	jobs := map[string]*Job{}
	for i := range s.Queue {
		jobs[s.Queue[i].ID] = &s.Queue[i]
	}
	type use struct {
		cpu, mem int64
		gpu      int
	}
	used := map[string]*use{}
	seen := map[string]bool{}
	var order []*Job
	for _, a := range p.Assignments {
		w, j := workers[a.WorkerID], jobs[a.JobID]
		if w == nil || j == nil {
			t.Fatalf("assignment %v names an unknown job or worker", a)
		}
		if seen[a.JobID] {
			t.Fatalf("job %s assigned twice", a.JobID)
		}
		seen[a.JobID] = true
		if !w.Schedulable {
			t.Fatalf("job %s assigned to non-schedulable worker %s", a.JobID, a.WorkerID)
		}
		if !hasLabels(w.Labels, j.Labels) {
			t.Fatalf("job %s (labels %v) assigned to %s (labels %v)", j.ID, j.Labels, w.ID, w.Labels)
		}
		u := used[w.ID]
		if u == nil {
			u = &use{}
			used[w.ID] = u
		}
		u.cpu += j.CPUMilli
		u.mem += j.Memory
		u.gpu += j.GPU
		order = append(order, j)
	}
	for id, u := range used {
		w := workers[id]
		if u.cpu > w.FreeCPU() || u.mem > w.FreeMemory() || u.gpu > w.FreeGPU() {
			t.Fatalf("worker %s overcommitted: assigned cpu %d mem %d gpu %d, free cpu %d mem %d gpu %d",
				id, u.cpu, u.mem, u.gpu, w.FreeCPU(), w.FreeMemory(), w.FreeGPU())
		}
	}
	// Assignments follow the queue order.
	for i := 1; i < len(order); i++ {
		if !Less(order[i-1], order[i]) {
			t.Fatalf("assignment %d (%s) decided before %d (%s) against queue order", i-1, order[i-1].ID, i, order[i].ID)
		}
	}
	// Unplaceable is exactly the jobs that no schedulable worker could take
	// even when empty; none of them is assigned.
	unpl := map[string]bool{}
	for _, id := range p.Unplaceable {
		if unpl[id] {
			t.Fatalf("job %s listed twice as unplaceable", id)
		}
		unpl[id] = true
		if seen[id] {
			t.Fatalf("job %s both assigned and unplaceable", id)
		}
	}
	for i := range s.Queue {
		j := &s.Queue[i]
		could := false
		for k := range s.Workers {
			if w := &s.Workers[k]; w.Schedulable && fitsEmpty(w, j) {
				could = true
			}
		}
		if could == unpl[j.ID] {
			t.Fatalf("job %s: placeable on an empty fleet = %v, but unplaceable listed = %v", j.ID, could, unpl[j.ID])
		}
	}
	// Greedy is maximal: a job left waiting fits no worker's remaining
	// capacity (anything placed later only took more).
	for i := range s.Queue {
		j := &s.Queue[i]
		if seen[j.ID] {
			continue
		}
		for k := range s.Workers {
			w := s.Workers[k]
			if u := used[w.ID]; u != nil {
				w.UsedCPUMilli += u.cpu
				w.UsedMemory += u.mem
				w.UsedGPU += u.gpu
			}
			if Fits(&w, j) {
				t.Fatalf("job %s left waiting though it fits %s after the plan", j.ID, w.ID)
			}
		}
	}
}

func TestPlanFIFOProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 42))
		s := randomSnapshot(r, r.IntN(12), r.IntN(80))
		before := deepCopy(s)
		p := PlanFIFO(s)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkPlan(t, s, p)
		})
		if !reflect.DeepEqual(before, s) {
			t.Fatalf("seed %d: input modified", seed)
		}
		// Deterministic: same input, same output.
		if p2 := PlanFIFO(s); !reflect.DeepEqual(p, p2) {
			t.Fatalf("seed %d: two plans of the same snapshot differ", seed)
		}
		// And independent of the order of the input slices (IDs are
		// unique, so Less is a total order and worker ties go by ID).
		sh := deepCopy(s)
		r.Shuffle(len(sh.Workers), func(i, k int) { sh.Workers[i], sh.Workers[k] = sh.Workers[k], sh.Workers[i] })
		r.Shuffle(len(sh.Queue), func(i, k int) { sh.Queue[i], sh.Queue[k] = sh.Queue[k], sh.Queue[i] })
		if p3 := PlanFIFO(sh); !reflect.DeepEqual(p, p3) {
			t.Fatalf("seed %d: plan depends on input order:\n%+v\n%+v", seed, p, p3)
		}
	}
}

// TestPlanFIFOSpreadReplay replays random plans and checks that each job went
// to the fitting worker with the most free cpu at the moment it was decided
// (ties to the smallest ID).
func TestPlanFIFOSpreadReplay(t *testing.T) {
	t.Parallel()
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := randomSnapshot(r, 1+r.IntN(10), r.IntN(60))
		p := PlanFIFO(s)
		ws := slices.Clone(s.Workers)
		byID := map[string]*Job{}
		for i := range s.Queue {
			byID[s.Queue[i].ID] = &s.Queue[i]
		}
		for _, a := range p.Assignments {
			j := byID[a.JobID]
			var best *Worker
			for i := range ws {
				w := &ws[i]
				if !Fits(w, j) {
					continue
				}
				if best == nil || w.FreeCPU() > best.FreeCPU() || (w.FreeCPU() == best.FreeCPU() && w.ID < best.ID) {
					best = w
				}
			}
			if best == nil || best.ID != a.WorkerID {
				t.Fatalf("seed %d: job %s went to %s, want %v", seed, a.JobID, a.WorkerID, best)
			}
			best.UsedCPUMilli += j.CPUMilli
			best.UsedMemory += j.Memory
			best.UsedGPU += j.GPU
		}
	}
}

func benchSnapshot(nWorkers, nJobs int) Snapshot {
	r := rand.New(rand.NewPCG(1, 2))
	s := Snapshot{}
	for i := range nWorkers {
		labels := []string{"linux"}
		if i%4 == 0 {
			labels = append(labels, "gpu")
		}
		if i%3 == 0 {
			labels = append(labels, "arm64")
		}
		s.Workers = append(s.Workers, Worker{
			ID: fmt.Sprintf("w%03d", i), Labels: labels,
			CPUMilli: 16000, Memory: 64 << 30, GPU: 2 * (i % 4 / 3),
			Schedulable: i%20 != 0,
		})
	}
	for i := range nJobs {
		var labels []string
		if i%5 == 0 {
			labels = []string{"linux", "arm64"}
		}
		s.Queue = append(s.Queue, Job{
			ID: fmt.Sprintf("j%05d", i), Priority: r.IntN(3),
			QueuedAt: t0.Add(time.Duration(r.IntN(3600)) * time.Second), Seq: uint64(i),
			CPUMilli: int64(1+r.IntN(8)) * 250, Memory: int64(1+r.IntN(8)) << 28,
			Labels: labels,
		})
	}
	return s
}

func BenchmarkPlanFIFO(b *testing.B) {
	s := benchSnapshot(100, 10_000)
	var p Plan
	b.ReportAllocs()
	for b.Loop() {
		p = PlanFIFO(s)
	}
	b.ReportMetric(float64(len(p.Assignments)), "assigned")
}
