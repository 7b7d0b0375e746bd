package sim

import (
	"bytes"
	"crypto/sha256"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/forecast"
)

func digest(t *testing.T, w *Workload) [32]byte {
	t.Helper()
	var b bytes.Buffer
	if err := w.WriteWorkers(&b); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePipelines(&b); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b.Bytes())
}

func TestGenerateDeterministic(t *testing.T) {
	o := GenOptions{Jobs: 5000, Workers: 60, Seed: 42}
	a, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Error("two workloads of one seed differ")
	}
	o.Seed = 43
	c, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) == digest(t, c) {
		t.Error("seeds 42 and 43 gave the same workload")
	}
	// Simulating it is deterministic too (same engine calls, same plans).
	r1, err := Run(a, Options{Policy: "hodei"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Run(b, Options{Policy: "hodei"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.MeanPipelineS != r2.MeanPipelineS || r1.P95WaitS != r2.P95WaitS || r1.MakespanS != r2.MakespanS {
		t.Errorf("two runs differ: %+v vs %+v", r1, r2)
	}
}

// dagShape classifies a pipeline's DAG.
func dagShape(w *Workload, p Pipeline) string {
	n := int(p.Jobs)
	if n == 1 {
		return "single"
	}
	needs := make([]int, n)   // per job, how many it needs
	needers := make([]int, n) // per job, how many need it
	for k := range n {
		j := p.First + int32(k)
		for _, d := range w.JobNeeds(j) {
			needs[k]++
			needers[d-p.First]++
		}
	}
	roots, sinks, maxIn, maxOut := 0, 0, 0, 0
	for k := range n {
		if needs[k] == 0 {
			roots++
		}
		if needers[k] == 0 {
			sinks++
		}
		maxIn, maxOut = max(maxIn, needs[k]), max(maxOut, needers[k])
	}
	switch {
	case maxIn <= 1 && maxOut <= 1 && roots == 1:
		return "chain"
	case roots == 1 && maxOut >= 2 && maxIn >= 2:
		return "diamond" // build -> tests -> package, or build -> matrix -> report
	case roots >= 2 && maxIn >= 2:
		return "matrix" // matrix entries -> aggregate
	case maxOut >= 2:
		return "fan-out" // a chain with a side branch (gpu test)
	}
	return "other"
}

func TestGenerateShape(t *testing.T) {
	const jobs = 30000
	w, err := Generate(GenOptions{Jobs: jobs, Workers: 60, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.NumJobs(); n < jobs || n > jobs+100 {
		t.Errorf("%d jobs, want %d (and the last pipeline)", n, jobs)
	}
	if len(w.Workers) != 60 {
		t.Errorf("%d workers", len(w.Workers))
	}
	if len(w.Tenants) != 6 || !slices.Contains(w.Tenants, "flood") {
		t.Errorf("tenants %v", w.Tenants)
	}
	if _, _, bad := w.Unplaceable(); bad {
		t.Error("a job fits no worker")
	}
	if err := w.CheckIDs(); err != nil {
		t.Error(err)
	}

	// Fleet: heterogeneous, a few GPU and arm64 workers.
	var gpuW, armW int
	sizes := map[int64]bool{}
	for _, wk := range w.Workers {
		sizes[wk.CPUMilli] = true
		if wk.GPU > 0 {
			gpuW++
		}
		if slices.Contains(wk.Labels, "arm64") {
			armW++
		}
	}
	if gpuW == 0 || armW == 0 || gpuW > 6 || armW > 12 || len(sizes) < 4 {
		t.Errorf("fleet: %d gpu workers, %d arm64 workers, %d machine sizes", gpuW, armW, len(sizes))
	}

	// Pipelines: priorities, DAG shapes, tenants, jobs on GPUs and arm64.
	shapes := map[string]int{}
	var prio, gpuJobs, armJobs int
	tenantJobs := make([]int, len(w.Tenants))
	tenantPipes := make([]int, len(w.Tenants))
	flood := int32(slices.Index(w.Tenants, "flood"))
	var floodTimes []time.Duration
	for _, p := range w.Pipelines {
		shapes[dagShape(w, p)]++
		if p.Priority > 0 {
			prio++
		}
		tenantJobs[p.Tenant] += int(p.Jobs)
		tenantPipes[p.Tenant]++
		if p.Tenant == flood {
			floodTimes = append(floodTimes, p.Submit)
			if p.Priority > 0 || p.Jobs < 18 {
				t.Errorf("flood pipeline %s: priority %d, %d jobs", p.ID, p.Priority, p.Jobs)
			}
		}
		for j := p.First; j < p.First+p.Jobs; j++ {
			ls := w.Labels[w.JobLabels[j]]
			if w.JobGPU[j] > 0 != slices.Contains(ls, "gpu") {
				t.Fatalf("job %s: gpu %d, labels %v", w.DescribeJob(0, j), w.JobGPU[j], ls)
			}
			if w.JobGPU[j] > 0 {
				gpuJobs++
			}
			if slices.Contains(ls, "arm64") {
				armJobs++
			}
		}
	}
	t.Logf("shapes %v; %d priority pipelines of %d; %d gpu jobs, %d arm64 jobs; jobs per tenant %v, pipelines %v",
		shapes, prio, len(w.Pipelines), gpuJobs, armJobs, tenantJobs, tenantPipes)
	for _, s := range []string{"single", "chain", "diamond", "matrix"} {
		if shapes[s] < len(w.Pipelines)/50 {
			t.Errorf("only %d %s pipelines", shapes[s], s)
		}
	}
	if shapes["other"] > 0 {
		t.Errorf("%d pipelines of an unknown shape", shapes["other"])
	}
	if f := float64(prio) / float64(len(w.Pipelines)); f < 0.05 || f > 0.10 {
		t.Errorf("%.1f%% of the pipelines have a priority, want 5-10%%", 100*f)
	}
	if gpuJobs == 0 || armJobs == 0 {
		t.Errorf("%d gpu jobs, %d arm64 jobs", gpuJobs, armJobs)
	}
	// The flood: few pipelines, many jobs, in bursts.
	if tf := float64(tenantJobs[flood]) / float64(w.NumJobs()); tf < 0.1 || tf > 0.6 {
		t.Errorf("flood has %.0f%% of the jobs", 100*tf)
	}
	if pf := float64(tenantPipes[flood]) / float64(len(w.Pipelines)); pf > 0.1 {
		t.Errorf("flood has %.0f%% of the pipelines", 100*pf)
	}
	slices.Sort(floodTimes)
	close := 0
	for i := 1; i < len(floodTimes); i++ {
		if floodTimes[i]-floodTimes[i-1] <= 5*time.Second {
			close++
		}
	}
	if close < len(floodTimes)/2 {
		t.Errorf("flood not bursty: %d of %d pipelines within 5s of the previous", close, len(floodTimes))
	}

	// Durations are lognormal around a stable median per key: the spread of
	// one key's runs is much smaller than the spread across keys.
	logs := map[int32][]float64{}
	for j, d := range w.JobDur {
		logs[w.JobKey[j]] = append(logs[w.JobKey[j]], math.Log(d.Seconds()))
	}
	var within, n float64
	var medians []float64
	for _, l := range logs {
		if len(l) < 20 {
			continue
		}
		m := forecast.Mean(l)
		for _, x := range l {
			within += (x - m) * (x - m)
			n++
		}
		medians = append(medians, m)
	}
	sdWithin := math.Sqrt(within / n)
	mm := forecast.Mean(medians)
	var across float64
	for _, m := range medians {
		across += (m - mm) * (m - mm)
	}
	sdAcross := math.Sqrt(across / float64(len(medians)))
	if sdWithin > 0.45 || sdAcross < 2*sdWithin {
		t.Errorf("log-duration spread: %.2f within a key, %.2f across keys", sdWithin, sdAcross)
	}

	// Arrivals follow the day: more in the afternoon than at night.
	var night, afternoon int
	for _, p := range w.Pipelines {
		switch h := int(p.Submit.Hours()) % 24; {
		case h >= 1 && h < 5:
			night++
		case h >= 13 && h < 17:
			afternoon++
		}
	}
	if afternoon < 3*night {
		t.Errorf("%d pipelines 13:00-17:00, %d 01:00-05:00: no daily pattern", afternoon, night)
	}
}

func TestGenerateDaysAndWeekend(t *testing.T) {
	w, err := Generate(GenOptions{Days: 7, Jobs: 20000, Workers: 50, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Summarize(); s.Span > 7*24*time.Hour || s.Span < 6*24*time.Hour {
		t.Errorf("span %v, want about 7 days", s.Span)
	}
	if n := w.NumJobs(); n < 15000 || n > 20100 {
		t.Errorf("%d jobs, want about 20000", n)
	}
	perDay := make([]int, 7)
	for _, p := range w.Pipelines {
		perDay[int(p.Submit.Hours()/24)%7]++
	}
	if perDay[5]*2 > perDay[2] || perDay[6]*2 > perDay[3] {
		t.Errorf("pipelines per day from Monday %v: weekend not quieter", perDay)
	}
	// Days alone: as many jobs as the load calls for.
	w, err = Generate(GenOptions{Days: 1, Workers: 50, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Summarize(); s.Span > 24*time.Hour || w.NumJobs() < 1000 {
		t.Errorf("one day: span %v, %d jobs", s.Span, w.NumJobs())
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, o := range []GenOptions{
		{Jobs: 10},
		{Workers: 10},
		{Jobs: 10, Workers: 10, Tenants: 1},
		{Jobs: 10, Workers: 10, Load: -1},
		{Jobs: 10, Workers: 10, FloodShare: 1},
		{Jobs: 10, Workers: 1},
	} {
		if _, err := Generate(o); err == nil {
			t.Errorf("Generate(%+v): no error", o)
		}
	}
}
