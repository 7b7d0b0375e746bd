package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// GenOptions configures Generate.
type GenOptions struct {
	// Jobs stops the generator at the first pipeline that brings the total
	// to at least this many jobs. With Days, the arrival rate is set so that
	// about Jobs jobs arrive in Days (and Load is not used).
	Jobs int
	// Days is the span of arrivals; 0 means as long as Jobs take at Load.
	Days float64
	// Workers is the size of the fleet.
	Workers int
	// Load is the offered load at the daily peak on a weekday: the
	// resources the arriving jobs ask for, times their true durations, over
	// the fleet's capacity (default 0.85). Bursts of the flooding tenant go
	// above it for a while; nights and weekends are well below.
	Load float64
	// Tenants is the number of tenants (default 6, at least 2). The first,
	// "flood", submits bursts of large matrix pipelines.
	Tenants int
	// FloodShare is the flooding tenant's share of the x86 work at the
	// peak (default 0.35).
	FloodShare float64
	// Burst is the mean number of pipelines of a flood burst (exponentially
	// distributed, at least 1), all submitted within a minute. The default,
	// 0, is 10 per repository of the flood: 40 for a fleet of up to 500
	// workers, 800 for 10,000 (a storm, such as a dependency bump, touches
	// every repository of the tenant).
	Burst int
	Seed  uint64
	// Variant changes the base workload (fleet shapes, nightly pipelines,
	// durations that predictions get wrong); see Variant.
	Variant Variant
}

// Job classes of CI pipelines: request and the median of the per-key
// medians.
type jobClass struct {
	name   string
	cpu    int32 // millicores
	mem    int32 // MiB
	gpu    int32
	median float64 // seconds
}

var (
	clsLint    = jobClass{"lint", 1000, 2048, 0, 60}
	clsBuild   = jobClass{"build", 4000, 8192, 0, 420}
	clsUnit    = jobClass{"unit", 2000, 4096, 0, 300}
	clsInteg   = jobClass{"integration", 4000, 8192, 0, 900}
	clsE2E     = jobClass{"e2e", 2000, 8192, 0, 1200}
	clsPackage = jobClass{"package", 1000, 2048, 0, 120}
	clsDeploy  = jobClass{"deploy", 1000, 1024, 0, 180}
	clsMatrix  = jobClass{"test", 2000, 4096, 0, 480}
	clsGPU     = jobClass{"gpu-test", 4000, 16384, 1, 900}
	clsReport  = jobClass{"report", 500, 1024, 0, 45}
)

// Pools of the generated fleet; a job's pool is set by its label.
const (
	poolX86 = iota
	poolARM
	poolGPU
	numPools
)

var (
	poolLabel  = [numPools]string{"amd64", "arm64", "gpu"}
	poolLabels = [numPools][]string{{"amd64"}, {"arm64"}, {"gpu"}}
)

type tJob struct {
	name   string
	key    string
	needs  []string
	cpu    int32
	mem    int32
	gpu    int32
	pool   int
	median float64 // seconds, this key's median
}

type project struct {
	tenant   int
	name     string
	jobs     []tJob
	deploy   []tJob // the project's deploy pipeline (build -> deploy)
	weight   float64
	deployP  float64           // chance that a run is the deploy pipeline
	demand   [numPools]float64 // expected resource-seconds per run (cpu-s; gpu-s for the GPU pool)
	ddemand  [numPools]float64 // same for the deploy pipeline
	jobCount int
}

// Run-to-run noise of durations: lognormal around the key's median, and now
// and then a slow run (cold cache, retried flaky test).
const (
	runSigma   = 0.25
	keySigma   = 0.6
	slowProb   = 0.015
	slowFactor = 3.0
	hotfixProb = 0.05 // normal pipelines resubmitted as hotfixes (priority 10)
	deployProb = 0.025
	// maxDeployGap is the shortest mean time between deploys of one
	// repository at the peak, in seconds.
	maxDeployGap = 1800
	hotfixPrio   = 10
	deployPrio   = 50
	burstSpread  = 60 // seconds over which a burst's pipelines arrive
)

func meanNoise() float64 {
	return math.Exp(runSigma*runSigma/2) * (1 + slowProb*(slowFactor-1))
}

// shape is the relative arrival rate at t (1 at the weekday peak): a daily
// sinusoid, lowest at 03:00 and highest at 15:00, and quieter weekends.
func shape(t float64) float64 {
	day := int(t/86400) % 7
	h := math.Mod(t, 86400) / 3600
	s := 0.1 + 0.9*(1-math.Cos(2*math.Pi*(h-3)/24))/2
	if day >= 5 {
		s *= 0.25
	}
	return s
}

// floodShape is the flooding tenant's: its bursts come in working hours.
func floodShape(t float64) float64 {
	s := shape(t)
	return s * s
}

type gen struct {
	rng *rand.Rand
	o   GenOptions
}

func (g *gen) lognormal(median, sigma float64) float64 {
	return median * math.Exp(sigma*g.rng.NormFloat64())
}

func (g *gen) job(c jobClass, name, prefix string, pool int, needs ...string) tJob {
	m := math.Min(math.Max(g.lognormal(c.median, keySigma), 10), 7200)
	return tJob{name: name, key: prefix + name, needs: needs, cpu: c.cpu, mem: c.mem, gpu: c.gpu, pool: pool, median: m}
}

func (g *gen) project(tenant int, tname string, idx int, flood bool) *project {
	p := &project{tenant: tenant, name: fmt.Sprintf("%s/repo-%02d", tname, idx)}
	pre := p.name + "/"
	r := g.rng
	pool := poolX86
	add := func(j tJob) { p.jobs = append(p.jobs, j) }
	gpu := !flood && r.Float64() < 0.08
	shapeDraw := r.Float64()
	switch {
	case flood:
		k := 16 + r.IntN(25)
		add(g.job(clsBuild, "build", pre, pool))
		var entries []string
		for i := range k {
			n := fmt.Sprintf("test-%02d", i+1)
			c := clsMatrix
			if i%4 == 3 {
				c = clsInteg
			}
			add(g.job(c, n, pre, pool, "build"))
			entries = append(entries, n)
		}
		add(g.job(clsReport, "report", pre, pool, entries...))
	case shapeDraw < 0.2: // single job
		if r.Float64() < 0.05 {
			pool = poolARM
		}
		c := []jobClass{clsLint, clsBuild, clsUnit}[r.IntN(3)]
		add(g.job(c, c.name, pre, pool))
	case shapeDraw < 0.5: // chain lint -> build -> unit -> package
		if r.Float64() < 0.05 {
			pool = poolARM
		}
		n := 2 + r.IntN(3)
		cs := []jobClass{clsLint, clsBuild, clsUnit, clsPackage}[4-n:]
		prev := ""
		for _, c := range cs {
			if prev == "" {
				add(g.job(c, c.name, pre, pool))
			} else {
				add(g.job(c, c.name, pre, pool, prev))
			}
			prev = c.name
		}
		if gpu {
			add(g.job(clsGPU, clsGPU.name, pre, poolGPU, cs[0].name))
		}
	case shapeDraw < 0.8: // diamond build -> tests -> package
		k := 2 + r.IntN(5)
		add(g.job(clsBuild, "build", pre, pool))
		var mid []string
		for i := range k {
			c := []jobClass{clsUnit, clsInteg, clsE2E}[i%3]
			n := fmt.Sprintf("%s-%d", c.name, i/3+1)
			add(g.job(c, n, pre, pool, "build"))
			mid = append(mid, n)
		}
		if gpu {
			add(g.job(clsGPU, clsGPU.name, pre, poolGPU, "build"))
			mid = append(mid, clsGPU.name)
		}
		add(g.job(clsPackage, "package", pre, pool, mid...))
	default: // matrix fan-out, then aggregate
		k := 4 + r.IntN(9)
		arm := r.Float64() < 0.3
		var entries []string
		for i := range k {
			n := fmt.Sprintf("test-%02d", i+1)
			pl := pool
			if arm && i%3 == 2 {
				pl = poolARM
			}
			add(g.job(clsMatrix, n, pre, pl))
			entries = append(entries, n)
		}
		if gpu {
			add(g.job(clsGPU, clsGPU.name, pre, poolGPU))
			entries = append(entries, clsGPU.name)
		}
		add(g.job(clsReport, "report", pre, pool, entries...))
	}
	// The deploy pipeline builds (the same job as the project's build, if
	// it has one) and deploys.
	build := g.job(clsBuild, "build", pre, pool)
	for _, j := range p.jobs {
		if j.name == "build" {
			build = j
			build.needs = nil
		}
	}
	p.deploy = []tJob{build, g.job(clsDeploy, "deploy", pre, pool, "build")}
	for _, j := range p.jobs {
		p.demand[j.pool] += j.demandPerRun()
	}
	for _, j := range p.deploy {
		p.ddemand[j.pool] += j.demandPerRun()
	}
	p.jobCount = len(p.jobs)
	return p
}

func (j tJob) demandPerRun() float64 {
	d := j.median * meanNoise()
	if j.pool == poolGPU {
		return float64(j.gpu) * d
	}
	return float64(j.cpu) / 1000 * d
}

// workerShape is one kind of machine of a pool.
type workerShape struct {
	cores, memGiB, gpu int
	share              float64
	costPerHour        float64
}

var fleetShapes = [numPools][]workerShape{
	poolX86: {{2, 8, 0, 0.25, 0.096}, {4, 16, 0, 0.35, 0.192}, {8, 32, 0, 0.25, 0.384}, {16, 64, 0, 0.15, 0.768}},
	poolARM: {{4, 16, 0, 0.5, 0.136}, {8, 32, 0, 0.5, 0.272}},
	poolGPU: {{8, 64, 1, 0.5, 1.15}, {16, 128, 2, 0.5, 2.30}},
}

func meanCapacity(pool int) float64 {
	var m float64
	for _, s := range fleetShapes[pool] {
		if pool == poolGPU {
			m += s.share * float64(s.gpu)
		} else {
			m += s.share * float64(s.cores)
		}
	}
	return m
}

// Generate makes a synthetic CI-shaped workload (see docs/scheduling.md):
// tenants with repositories whose pipelines (single jobs, chains, diamonds,
// matrices) run again and again with lognormal durations around a stable
// median per job, arriving as a Poisson process that follows the working
// day and the week; one tenant floods the fleet with bursts of big matrix
// pipelines. It is deterministic for a seed.
func Generate(o GenOptions) (*Workload, error) {
	if o.Workers <= 0 {
		return nil, fmt.Errorf("--workers: want a positive number of workers")
	}
	if o.Jobs <= 0 && o.Days <= 0 {
		return nil, fmt.Errorf("want a number of jobs or of days")
	}
	if o.Jobs > 50_000_000 {
		return nil, fmt.Errorf("%d jobs is too many", o.Jobs)
	}
	if o.Load == 0 {
		o.Load = 0.85
	}
	if o.Tenants == 0 {
		o.Tenants = 6
	}
	if o.FloodShare == 0 {
		o.FloodShare = 0.35
	}
	switch {
	case o.Load < 0 || o.Load > 10 || math.IsNaN(o.Load):
		return nil, fmt.Errorf("load %v: want a number in (0, 10]", o.Load)
	case o.Tenants < 2 || o.Tenants > 1000:
		return nil, fmt.Errorf("tenants %d: want 2 to 1000", o.Tenants)
	case o.Burst < 0 || o.Burst > 100000:
		return nil, fmt.Errorf("burst %d: want 1 to 100000 pipelines", o.Burst)
	case o.FloodShare < 0 || o.FloodShare >= 1:
		return nil, fmt.Errorf("flood share %v: want [0, 1)", o.FloodShare)
	case o.Days < 0 || o.Days > 3650 || math.IsNaN(o.Days):
		return nil, fmt.Errorf("days %v: want 0 to 3650", o.Days)
	}
	g := &gen{rng: rand.New(rand.NewPCG(o.Seed, 0x40de1)), o: o}
	r := g.rng

	// Tenants and their repositories.
	tenants := make([]string, o.Tenants)
	tenants[0] = "flood"
	for i := 1; i < o.Tenants; i++ {
		tenants[i] = fmt.Sprintf("team-%02d", i)
	}
	// Bigger fleets serve more repositories: 12 per team and 4 floods per
	// 500 workers.
	scale := (o.Workers + 499) / 500
	var normal, flood []*project
	var totalW float64
	for t := 1; t < o.Tenants; t++ {
		tw := 1 / float64(t) // Zipf: the first teams are the busiest
		for i := range 12 * scale {
			p := g.project(t, tenants[t], i+1, false)
			p.weight = tw / float64(i+1)
			totalW += p.weight
			normal = append(normal, p)
		}
	}
	for i := range 4 * scale {
		flood = append(flood, g.project(0, tenants[0], i+1, true))
	}
	if o.Burst == 0 {
		o.Burst = 10 * len(flood)
	}
	hasPool := func(pool int) bool {
		for _, p := range normal {
			if p.demand[pool] > 0 {
				return true
			}
		}
		return false
	}
	// Make sure the fleet has GPU and arm64 work: the busiest team's third
	// repository tests on a GPU, its fourth builds for arm64 too.
	if !hasPool(poolGPU) {
		p := normal[2%len(normal)]
		j := g.job(clsGPU, clsGPU.name, p.name+"/", poolGPU)
		p.jobs = append(p.jobs, j)
		p.demand[poolGPU] += j.demandPerRun()
		p.jobCount++
	}
	if !hasPool(poolARM) {
		p := normal[3%len(normal)]
		j := g.job(clsBuild, "build-arm64", p.name+"/", poolARM)
		p.jobs = append(p.jobs, j)
		p.demand[poolARM] += j.demandPerRun()
		p.jobCount++
	}
	for _, p := range normal {
		p.weight /= totalW
		p.deployP = deployProb
	}

	// Expected demand per normal arrival and per flood burst, and jobs.
	var dn, db [numPools]float64
	var jn, jb float64
	perArrival := func() {
		dn, jn = [numPools]float64{}, 0
		for _, p := range normal {
			for k := range numPools {
				dn[k] += p.weight * ((1-p.deployP)*p.demand[k] + p.deployP*p.ddemand[k])
			}
			jn += p.weight * ((1-p.deployP)*float64(p.jobCount) + p.deployP*2)
		}
	}
	perArrival()
	burst := float64(o.Burst)
	for _, p := range flood {
		for k := range numPools {
			db[k] += burst * p.demand[k] / float64(len(flood))
		}
		jb += burst * float64(p.jobCount) / float64(len(flood))
	}

	// Fleet: pools sized so that each runs at the same load at the peak.
	// The x86 pool also carries the flood: FloodShare of its work.
	var need [numPools]float64
	need[poolX86] = dn[poolX86] / (1 - o.FloodShare) / meanCapacity(poolX86)
	need[poolARM] = dn[poolARM] / meanCapacity(poolARM)
	need[poolGPU] = dn[poolGPU] / meanCapacity(poolGPU)
	var counts [numPools]int
	total := need[0] + need[1] + need[2]
	estX86 := float64(o.Workers) * need[poolX86] / total
	w := NewWorkload()
	var capacity [numPools]float64
	addWorker := func(k int, s workerShape) {
		counts[k]++
		wk := Worker{ID: fmt.Sprintf("%s-%05d", poolLabel[k], counts[k]), CPUMilli: int64(s.cores) * 1000,
			MemoryMiB: int64(s.memGiB) * 1024, GPU: s.gpu, Labels: []string{"linux", poolLabel[k]}, CostPerHour: s.costPerHour}
		w.Workers = append(w.Workers, wk)
		if k == poolGPU {
			capacity[k] += float64(s.gpu)
		} else {
			capacity[k] += float64(s.cores)
		}
	}
	// The arm64 and GPU pools get workers until they can carry their share
	// at the x86 pool's expected load; the first worker of each pool is its
	// largest machine, so that every job fits somewhere.
	for k := poolARM; k < numPools; k++ {
		if dn[k] == 0 {
			continue
		}
		want := estX86 * meanCapacity(poolX86) * (1 - o.FloodShare) * dn[k] / dn[poolX86]
		shapes := fleetShapes[k]
		addWorker(k, shapes[len(shapes)-1])
		for capacity[k] < want {
			addWorker(k, pickWeighted(r, shapes, shareOf))
		}
	}
	nX86 := o.Workers - counts[poolARM] - counts[poolGPU]
	if nX86 < 1 {
		return nil, fmt.Errorf("--workers %d: too few for x86, arm64 and GPU pools", o.Workers)
	}
	addWorker(poolX86, fleetShapes[poolX86][len(fleetShapes[poolX86])-1])
	for range nX86 - 1 {
		addWorker(poolX86, pickWeighted(r, fleetShapes[poolX86], shareOf))
	}
	// x86 workers first in the list, as a fleet is usually listed.
	slices.SortStableFunc(w.Workers, func(a, b Worker) int { return poolOrder(a) - poolOrder(b) })

	// Peak arrival rates: the x86 pool at Load at the peak, FloodShare of
	// it from the flood. With Days and Jobs, both are scaled so that about
	// Jobs jobs arrive in Days instead.
	horizon := math.Inf(1)
	if o.Days > 0 {
		horizon = o.Days * 86400
	}
	var lambdaN, lambdaB float64
	rates := func() {
		lambdaN = o.Load * capacity[poolX86] * (1 - o.FloodShare) / dn[poolX86]
		lambdaB = 0
		if db[poolX86] > 0 {
			lambdaB = o.FloodShare / (1 - o.FloodShare) * lambdaN * dn[poolX86] / db[poolX86]
		}
		if o.Days > 0 && o.Jobs > 0 {
			want := float64(o.Jobs)
			got := integrate(shape, horizon)*lambdaN*jn + integrate(floodShape, horizon)*lambdaB*jb
			lambdaN *= want / got
			lambdaB *= want / got
		}
	}
	rates()
	// A repository deploys one at a time (a concurrency group of limit 1),
	// so its deploys must come slower than they run: at most one per
	// maxDeployGap at the peak.
	for _, p := range normal {
		p.deployP = math.Min(deployProb, 1/(maxDeployGap*lambdaN*p.weight))
	}
	perArrival()
	rates()

	// Arrivals: two non-homogeneous Poisson processes by thinning.
	nextN := r.ExpFloat64() / lambdaN
	nextB := math.Inf(1)
	if lambdaB > 0 {
		nextB = r.ExpFloat64() / lambdaB
	}
	seq := 0
	jobs := 0
	var pending []pendingPipe // a burst's pipelines, in time order
	for {
		if o.Jobs > 0 && jobs >= o.Jobs {
			break
		}
		t := math.Min(nextN, nextB)
		if len(pending) > 0 && pending[0].t <= t {
			pp := pending[0]
			pending = pending[1:]
			if pp.t >= horizon {
				continue
			}
			seq++
			jobs += g.emit(w, pp.p, tenants, seq, pp.t, 0, false)
			continue
		}
		if t >= horizon {
			if len(pending) == 0 {
				break
			}
			nextN, nextB = math.Inf(1), math.Inf(1)
			continue
		}
		if nextN <= nextB {
			nextN += r.ExpFloat64() / lambdaN
			if r.Float64() >= shape(t) {
				continue
			}
			p := pickWeighted(r, normal, weightOf)
			prio, deploy := 0, false
			switch u := r.Float64(); {
			case u < p.deployP:
				prio, deploy = deployPrio, true
			case u < p.deployP+hotfixProb:
				prio = hotfixPrio
			}
			seq++
			jobs += g.emit(w, p, tenants, seq, t, prio, deploy)
			continue
		}
		nextB += r.ExpFloat64() / lambdaB
		if r.Float64() >= floodShape(t) {
			continue
		}
		n := 1 + int(r.ExpFloat64()*float64(o.Burst-1))
		for i := range n {
			pending = append(pending, pendingPipe{t: t + float64(i)*burstSpread/float64(n), p: flood[r.IntN(len(flood))]})
		}
		sort.SliceStable(pending, func(a, b int) bool { return pending[a].t < pending[b].t })
	}
	w.Source = fmt.Sprintf("generated: %d workers, seed %d, load %.2f, %d tenants", o.Workers, o.Seed, o.Load, o.Tenants)
	if o.Variant != (Variant{}) {
		if err := o.Variant.apply(w, r); err != nil {
			return nil, err
		}
		w.Source += fmt.Sprintf(", variant %+v", o.Variant)
	}
	return w, nil
}

func poolOrder(w Worker) int {
	for k, l := range poolLabel {
		if slices.Contains(w.Labels, l) {
			return k
		}
	}
	return numPools
}

type pendingPipe struct {
	t float64
	p *project
}

// pickWeighted draws one of items, each with the probability weight gives
// it (the weights sum to 1; the last item takes what rounding leaves).
func pickWeighted[T any](r *rand.Rand, items []T, weight func(T) float64) T {
	u := r.Float64()
	for _, it := range items {
		w := weight(it)
		if u < w {
			return it
		}
		u -= w
	}
	return items[len(items)-1]
}

func shareOf(s workerShape) float64 { return s.share }

func weightOf(p *project) float64 { return p.weight }

// integrate returns the integral of f over [0, T] (1-minute steps).
func integrate(f func(float64) float64, T float64) float64 {
	var s float64
	const dt = 60.0
	for t := 0.0; t < T; t += dt {
		s += f(t+dt/2) * math.Min(dt, T-t)
	}
	return s
}

// emit adds one run of project p submitted at t (seconds) and returns its
// number of jobs.
func (g *gen) emit(w *Workload, p *project, tenants []string, seq int, t float64, prio int, deploy bool) int {
	r := g.rng
	tmpl := p.jobs
	pin := PipelineIn{
		ID:       fmt.Sprintf("p%07d", seq),
		Tenant:   tenants[p.tenant],
		Priority: prio,
		Submit:   time.Duration(math.Round(t)) * time.Second,
	}
	if deploy {
		tmpl = p.deploy
		pin.Group, pin.Limit = p.name+"/deploy", 1
	}
	pin.Jobs = make([]JobIn, len(tmpl))
	for i, j := range tmpl {
		d := g.lognormal(j.median, runSigma)
		if r.Float64() < slowProb {
			d *= slowFactor * (0.7 + 0.6*r.Float64())
		}
		labels := poolLabels[j.pool]
		pin.Jobs[i] = JobIn{ID: j.name, Needs: j.needs, CPUMilli: int64(j.cpu), MemMiB: int64(j.mem), GPU: int64(j.gpu),
			Labels: labels, Duration: time.Duration(max(1, math.Round(d))) * time.Second, Key: j.key}
	}
	if err := w.AddPipeline(pin); err != nil {
		panic(fmt.Sprintf("generator made an invalid pipeline: %v", err))
	}
	return len(tmpl)
}
