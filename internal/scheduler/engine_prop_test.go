package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// propDriver drives an engine with random but seeded fleets and workloads,
// keeping its own plain model of what runs where, and checks every plan
// against it.
type propDriver struct {
	t       *testing.T
	e       *Engine
	rng     *rand.Rand
	now     time.Time
	workers map[string]*propWorker
	wOrder  []string
	jobs    map[string]*propJob
	jOrder  []string
	log     []Assignment
	nextW   int
	nextP   int
	check   bool
}

type propWorker struct {
	spec        WorkerSpec
	schedulable bool
	used        Resources
}

type propJob struct {
	spec     JobSpec
	pipeline string
	state    string // waiting, queued, running, done
	worker   string
	needs    int // unfinished needs
	children []string
}

var propLabels = []string{"linux", "arm64", "ssd", "big", "eu"}

func newPropDriver(t *testing.T, seed uint64, policy Policy) *propDriver {
	d := &propDriver{
		t:       t,
		e:       NewEngine(Config{Policy: policy, Lookahead: 50, TenantWeights: map[string]float64{"t1": 2}}),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5eed)),
		now:     time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		workers: map[string]*propWorker{},
		jobs:    map[string]*propJob{},
		check:   true,
	}
	return d
}

func (d *propDriver) addWorker() {
	d.nextW++
	id := fmt.Sprintf("w%d", d.nextW)
	spec := WorkerSpec{ID: id, Pool: "p", Capacity: Resources{CPUMilli: int64(1+d.rng.IntN(8)) * 1000, Memory: int64(1+d.rng.IntN(16)) << 30}}
	for _, l := range propLabels {
		if d.rng.IntN(2) == 0 {
			spec.Labels = append(spec.Labels, l)
		}
	}
	spec.Labels = append(spec.Labels, "host-"+id) // a label no job asks for
	if d.rng.IntN(5) == 0 {
		spec.Capacity.GPU = 1 + d.rng.IntN(4)
	}
	if d.rng.IntN(3) == 0 {
		spec.Scorer = Spread
	}
	d.workers[id] = &propWorker{spec: spec, schedulable: true}
	d.wOrder = append(d.wOrder, id)
	d.e.UpsertWorker(spec)
}

// fitsEmptySomewhere reports whether some live worker could hold the job
// when empty (schedulable or not: drained workers come back in the end).
func (d *propDriver) fitsEmptySomewhere(j JobSpec) bool {
	for _, id := range d.wOrder {
		w := d.workers[id]
		if w.spec.Capacity.CPUMilli >= j.Request.CPUMilli && w.spec.Capacity.Memory >= j.Request.Memory &&
			w.spec.Capacity.GPU >= j.Request.GPU && hasLabels(w.spec.Labels, j.Labels) {
			return true
		}
	}
	return false
}

func (d *propDriver) addPipeline() {
	d.nextP++
	pid := fmt.Sprintf("p%d", d.nextP)
	n := 1 + d.rng.IntN(7)
	p := PipelineSpec{ID: pid, Tenant: fmt.Sprintf("t%d", d.rng.IntN(3)), Priority: []int{0, 0, 0, 10, 50}[d.rng.IntN(5)]}
	for i := 0; i < n; i++ {
		j := JobSpec{
			ID:      fmt.Sprintf("%s.j%d", pid, i),
			Key:     fmt.Sprintf("k%d", d.rng.IntN(6)),
			Request: Resources{CPUMilli: int64(1+d.rng.IntN(4)) * 500, Memory: int64(1+d.rng.IntN(8)) << 29},
		}
		if d.rng.IntN(3) == 0 {
			j.Labels = append(j.Labels, propLabels[d.rng.IntN(len(propLabels))])
		}
		if d.rng.IntN(8) == 0 {
			j.Request.GPU = 1 + d.rng.IntN(2)
		}
		if d.rng.IntN(6) == 0 {
			j.Priority = 20
		}
		for k := 0; k < i; k++ {
			if d.rng.IntN(3) == 0 {
				j.Needs = append(j.Needs, fmt.Sprintf("%s.j%d", pid, k))
			}
		}
		if !d.fitsEmptySomewhere(j) {
			j.Request = Resources{CPUMilli: 100, Memory: 1 << 20}
			j.Labels = nil
		}
		p.Jobs = append(p.Jobs, j)
	}
	d.e.AddPipeline(p)
	for _, j := range p.Jobs {
		pj := &propJob{spec: j, pipeline: pid, state: "waiting", needs: len(j.Needs)}
		d.jobs[j.ID] = pj
		d.jOrder = append(d.jOrder, j.ID)
		for _, n := range j.Needs {
			d.jobs[n].children = append(d.jobs[n].children, j.ID)
		}
	}
	for _, j := range p.Jobs {
		if len(j.Needs) == 0 {
			d.enqueue(j.ID)
		}
	}
}

func (d *propDriver) enqueue(id string) {
	d.jobs[id].state = "queued"
	d.e.Enqueue(id, d.now)
}

func (d *propDriver) plan() {
	t := d.t
	for _, a := range d.e.Plan(d.now) {
		j, w := d.jobs[a.JobID], d.workers[a.WorkerID]
		if j == nil || w == nil {
			t.Fatalf("assignment of unknown job or worker: %+v", a)
		}
		if j.state != "queued" {
			t.Fatalf("job %s placed while %s (placed twice?)", a.JobID, j.state)
		}
		if !w.schedulable {
			t.Fatalf("job %s placed on unschedulable %s", a.JobID, a.WorkerID)
		}
		if !hasLabels(w.spec.Labels, j.spec.Labels) {
			t.Fatalf("job %s labels %v not on %s %v", a.JobID, j.spec.Labels, a.WorkerID, w.spec.Labels)
		}
		r := j.spec.Request
		w.used.CPUMilli += r.CPUMilli
		w.used.Memory += r.Memory
		w.used.GPU += r.GPU
		c := w.spec.Capacity
		if w.used.CPUMilli > c.CPUMilli || w.used.Memory > c.Memory || w.used.GPU > c.GPU {
			t.Fatalf("worker %s over capacity: %+v > %+v", a.WorkerID, w.used, c)
		}
		j.state, j.worker = "running", a.WorkerID
		d.log = append(d.log, a)
	}
}

func (d *propDriver) unuse(j *propJob) {
	w := d.workers[j.worker]
	if w == nil {
		return
	}
	r := j.spec.Request
	w.used.CPUMilli -= r.CPUMilli
	w.used.Memory -= r.Memory
	w.used.GPU -= r.GPU
}

func (d *propDriver) running() []string {
	var out []string
	for _, id := range d.jOrder {
		if d.jobs[id].state == "running" {
			out = append(out, id)
		}
	}
	return out
}

func (d *propDriver) finish(id string, ok bool) {
	j := d.jobs[id]
	d.unuse(j)
	d.e.Finish(id, d.now, time.Duration(1+d.rng.IntN(300))*time.Second, ok)
	j.worker = ""
	if !ok && d.rng.IntN(2) == 0 {
		d.enqueue(id) // retry
		return
	}
	j.state = "done"
	for _, c := range j.children {
		cj := d.jobs[c]
		if cj.needs--; cj.needs == 0 && cj.state == "waiting" {
			d.enqueue(c)
		}
	}
}

func (d *propDriver) step(allowChurn bool) {
	d.now = d.now.Add(time.Duration(d.rng.IntN(20)) * time.Second)
	switch x := d.rng.IntN(100); {
	case x < 25 && allowChurn:
		d.addPipeline()
	case x < 70:
		run := d.running()
		for k := 0; k < len(run)/3+1 && len(run) > 0; k++ {
			i := d.rng.IntN(len(run))
			d.finish(run[i], d.rng.IntN(10) != 0)
			run = slices.Delete(run, i, i+1)
		}
	case x < 75 && allowChurn:
		id := d.wOrder[d.rng.IntN(len(d.wOrder))]
		w := d.workers[id]
		w.schedulable = !w.schedulable
		d.e.SetSchedulable(id, w.schedulable)
	case x < 78 && allowChurn && len(d.wOrder) > 3:
		i := d.rng.IntN(len(d.wOrder))
		id := d.wOrder[i]
		got := d.e.RemoveWorker(id)
		var want []string
		for _, jid := range d.jOrder {
			if j := d.jobs[jid]; j.state == "running" && j.worker == id {
				want = append(want, jid)
			}
		}
		slices.Sort(want)
		if !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			d.t.Fatalf("RemoveWorker(%s) = %v, want %v", id, got, want)
		}
		delete(d.workers, id)
		d.wOrder = slices.Delete(d.wOrder, i, i+1)
		for _, jid := range got {
			d.jobs[jid].worker = ""
			d.enqueue(jid)
		}
	case x < 81 && allowChurn:
		d.addWorker()
	case x < 84 && allowChurn:
		// Cancel a queued job: it counts as done for its dependents.
		for _, id := range d.jOrder {
			if j := d.jobs[id]; j.state == "queued" && d.rng.IntN(4) == 0 {
				d.e.Dequeue(id)
				j.state = "done"
				for _, c := range j.children {
					cj := d.jobs[c]
					if cj.needs--; cj.needs == 0 && cj.state == "waiting" {
						d.enqueue(c)
					}
				}
				break
			}
		}
	case x < 87:
		// Lose a running job: release and retry.
		if run := d.running(); len(run) > 0 {
			id := run[d.rng.IntN(len(run))]
			j := d.jobs[id]
			d.unuse(j)
			d.e.Release(id)
			j.worker = ""
			d.enqueue(id)
		}
	case x < 89:
		// Rebind a running job where it runs (recovery): no change.
		if run := d.running(); len(run) > 0 {
			id := run[d.rng.IntN(len(run))]
			d.e.Bind(id, d.jobs[id].worker, d.now)
		}
	case x < 91 && allowChurn:
		// A worker grows.
		id := d.wOrder[d.rng.IntN(len(d.wOrder))]
		w := d.workers[id]
		w.spec.Capacity.CPUMilli += 1000
		d.e.UpsertWorker(w.spec)
	}
	d.plan()
	if d.check {
		if err := d.e.checkInvariants(); err != nil {
			d.t.Fatal(err)
		}
	}
}

// drain stops churn, makes every worker schedulable and runs until all jobs
// are done; every job was generated to fit some worker when empty, so all
// must end.
func (d *propDriver) drain() {
	// Workers were removed since the jobs were generated: one that fits
	// everything joins.
	d.nextW++
	big := WorkerSpec{ID: fmt.Sprintf("w%d", d.nextW), Labels: propLabels, Capacity: Resources{CPUMilli: 64000, Memory: 256 << 30, GPU: 8}}
	d.workers[big.ID] = &propWorker{spec: big, schedulable: true}
	d.wOrder = append(d.wOrder, big.ID)
	d.e.UpsertWorker(big)
	for _, id := range d.wOrder {
		if w := d.workers[id]; !w.schedulable {
			w.schedulable = true
			d.e.SetSchedulable(id, true)
		}
	}
	for i := 0; i < 100000; i++ {
		done := true
		for _, id := range d.jOrder {
			if d.jobs[id].state != "done" {
				done = false
				break
			}
		}
		if done {
			return
		}
		d.step(false)
	}
	for _, id := range d.jOrder {
		if j := d.jobs[id]; j.state != "done" {
			d.t.Fatalf("job %s never ran: %s %+v labels %v (stats %+v)", id, j.state, j.spec.Request, j.spec.Labels, d.e.Stats())
		}
	}
}

func runProp(t *testing.T, seed uint64, policy Policy, steps int) []Assignment {
	d := newPropDriver(t, seed, policy)
	for i := 0; i < 12; i++ {
		d.addWorker()
	}
	for i := 0; i < steps; i++ {
		d.step(true)
	}
	d.drain()
	return d.log
}

// TestEngineProperties checks, over seeded random fleets and workloads with
// churn (drains, removals, joins, retries, cancels): no worker over
// capacity, labels satisfied, no job placed twice, every job eventually
// placed, and the engine's indexes consistent after every step.
func TestEngineProperties(t *testing.T) {
	t.Parallel()
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO, PolicyLeastLoaded} {
		for seed := 1; seed <= seeds; seed++ {
			t.Run(fmt.Sprintf("%s/%d", policy, seed), func(t *testing.T) {
				runProp(t, uint64(seed), policy, 300)
			})
		}
	}
}

// TestEngineDeterministic checks that the same calls give the same plans.
func TestEngineDeterministic(t *testing.T) {
	t.Parallel()
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO, PolicyLeastLoaded} {
		a := runProp(t, 42, policy, 400)
		b := runProp(t, 42, policy, 400)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: two runs with the same calls planned differently", policy)
		}
		if len(a) == 0 {
			t.Fatalf("%s: nothing planned", policy)
		}
	}
}

// hasLabels reports whether have holds every label of want.
func hasLabels(have, want []string) bool {
	for _, l := range want {
		found := false
		for _, h := range have {
			if h == l {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
