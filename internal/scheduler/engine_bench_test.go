package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchFleet returns n heterogeneous workers: x86 of three sizes, arm64,
// gpu, with custom labels (ssd, region) and a per-host label no job uses;
// one pool in three uses the spread scorer.
func benchFleet(n int, rng *rand.Rand) []WorkerSpec {
	type shape struct {
		cpu, memGiB int64
		gpu         int
		labels      []string
	}
	shapes := []shape{
		{4000, 8, 0, []string{"linux", "amd64"}},
		{8000, 32, 0, []string{"linux", "amd64"}},
		{32000, 128, 0, []string{"linux", "amd64", "large"}},
		{8000, 16, 0, []string{"linux", "arm64"}},
		{16000, 64, 4, []string{"linux", "amd64", "gpu"}},
	}
	weights := []int{30, 35, 15, 12, 8}
	out := make([]WorkerSpec, 0, n)
	for i := 0; i < n; i++ {
		x, k := rng.IntN(100), 0
		for x >= weights[k] {
			x -= weights[k]
			k++
		}
		s := shapes[k]
		w := WorkerSpec{
			ID:       fmt.Sprintf("w%05d", i),
			Pool:     fmt.Sprintf("pool%d", k),
			Capacity: Resources{CPUMilli: s.cpu, Memory: s.memGiB << 30, GPU: s.gpu},
			Labels:   append([]string{fmt.Sprintf("host=w%05d", i), fmt.Sprintf("region=%c", 'a'+rng.IntN(3))}, s.labels...),
		}
		if rng.IntN(4) == 0 {
			w.Labels = append(w.Labels, "ssd")
		}
		if k == 1 {
			w.Scorer = Spread
		}
		out = append(out, w)
	}
	return out
}

// benchPipelines returns pipelines totalling about n jobs: DAGs of 1 to 12
// jobs of mixed shapes and labels, over 8 tenants, one of which submits
// half of them; 5% of pipelines have priority 50.
func benchPipelines(n int, rng *rand.Rand) []PipelineSpec {
	reqs := []Resources{
		{500, 1 << 30, 0}, {1000, 2 << 30, 0}, {2000, 4 << 30, 0}, {2000, 8 << 30, 0},
		{4000, 8 << 30, 0}, {8000, 16 << 30, 0}, {16000, 64 << 30, 0}, {4000, 16 << 30, 1}, {8000, 32 << 30, 2},
	}
	var out []PipelineSpec
	total := 0
	for p := 0; total < n; p++ {
		ps := PipelineSpec{ID: fmt.Sprintf("p%06d", p), Tenant: fmt.Sprintf("t%d", rng.IntN(8))}
		if rng.IntN(2) == 0 {
			ps.Tenant = "flood"
		}
		if rng.IntN(20) == 0 {
			ps.Priority = 50
		}
		name := fmt.Sprintf("repo%d", rng.IntN(500))
		m := 1 + rng.IntN(12)
		for j := 0; j < m; j++ {
			js := JobSpec{ID: fmt.Sprintf("%s.%d", ps.ID, j), Key: fmt.Sprintf("%s/job%d", name, j)}
			r := rng.IntN(100)
			switch {
			case r < 3:
				js.Request = reqs[7+rng.IntN(2)]
			case r < 10:
				js.Request = reqs[5+rng.IntN(2)]
			default:
				js.Request = reqs[rng.IntN(5)]
			}
			if js.Request.GPU > 0 {
				js.Labels = []string{"gpu"}
			} else if r := rng.IntN(10); r == 0 {
				js.Labels = []string{"arm64"}
				js.Request = reqs[rng.IntN(3)]
			} else if r == 1 {
				js.Labels = []string{"ssd"}
			} else if r == 2 {
				js.Labels = []string{"linux", "region=b"}
			}
			for k := 0; k < j; k++ {
				if rng.IntN(3) == 0 {
					js.Needs = append(js.Needs, fmt.Sprintf("%s.%d", ps.ID, k))
				}
			}
			ps.Jobs = append(ps.Jobs, js)
		}
		total += m
		out = append(out, ps)
	}
	return out
}

func benchEngine(policy Policy, workers, jobs int, seed uint64) (*Engine, []PipelineSpec) {
	rng := rand.New(rand.NewPCG(seed, 1))
	e := NewEngine(Config{Policy: policy})
	for _, w := range benchFleet(workers, rng) {
		e.UpsertWorker(w)
	}
	ps := benchPipelines(jobs, rng)
	now := time.Unix(1_700_000_000, 0)
	for i, p := range ps {
		e.AddPipeline(p)
		for _, j := range p.Jobs {
			e.Enqueue(j.ID, now.Add(time.Duration(i)*time.Millisecond))
		}
	}
	return e, ps
}

// BenchmarkPlace measures placement on 10,000 heterogeneous workers with
// 100,000 queued jobs: Plan fills the fleet, every running job finishes
// (not timed), and Plan runs again, until the queue is empty.
func BenchmarkPlace(b *testing.B) {
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO, PolicyLeastLoaded} {
		b.Run(string(policy), func(b *testing.B) {
			var decisions int
			var planned time.Duration
			for i := 0; i < b.N; i++ {
				e, _ := benchEngine(policy, 10000, 100000, uint64(i+1))
				now := time.Unix(1_700_001_000, 0)
				var running []string
				for e.Stats().Queued > 0 {
					start := time.Now()
					as := e.Plan(now)
					planned += time.Since(start)
					if len(as) == 0 {
						b.Fatalf("stuck with %d queued", e.Stats().Queued)
					}
					decisions += len(as)
					running = running[:0]
					for _, a := range as {
						running = append(running, a.JobID)
					}
					now = now.Add(time.Minute)
					for _, id := range running {
						e.Finish(id, now, time.Minute, true)
					}
				}
			}
			b.ReportMetric(float64(decisions)/planned.Seconds(), "decisions/s")
			b.ReportMetric(float64(decisions)/float64(b.N), "decisions/op")
		})
	}
}

// BenchmarkSteadyState measures the loop of a busy cluster: a full fleet of
// 10,000 workers, a long queue, and each operation one job finishing and
// one Plan (which places what fits in the freed space).
func BenchmarkSteadyState(b *testing.B) {
	for _, policy := range []Policy{PolicyHodei, PolicyFIFO} {
		b.Run(string(policy), func(b *testing.B) {
			e, ps := benchEngine(policy, 10000, 300000, 7)
			now := time.Unix(1_700_001_000, 0)
			var running []string
			for _, a := range e.Plan(now) {
				running = append(running, a.JobID)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			next := len(ps)
			decisions := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := rng.IntN(len(running))
				id := running[k]
				running[k] = running[len(running)-1]
				running = running[:len(running)-1]
				now = now.Add(time.Millisecond)
				e.Finish(id, now, time.Minute, true)
				as := e.Plan(now)
				decisions += len(as)
				for _, a := range as {
					running = append(running, a.JobID)
				}
				if e.Stats().Queued < 50000 {
					b.StopTimer()
					for _, p := range benchPipelines(20000, rand.New(rand.NewPCG(uint64(next), 9))) {
						p.ID = fmt.Sprintf("x%07d", next)
						for j := range p.Jobs {
							p.Jobs[j].ID = fmt.Sprintf("%s.%d", p.ID, j)
							for n := range p.Jobs[j].Needs {
								p.Jobs[j].Needs[n] = p.ID + p.Jobs[j].Needs[n][len("p000000"):]
							}
						}
						next++
						e.AddPipeline(p)
						for _, j := range p.Jobs {
							e.Enqueue(j.ID, now)
						}
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(decisions)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}
