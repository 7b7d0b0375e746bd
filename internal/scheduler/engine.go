package scheduler

import (
	"time"

	"github.com/hodei-ci/hodei/internal/predict"
)

// Resources is an amount of each resource a worker has or a job asks for.
// Memory is in bytes.
type Resources struct {
	CPUMilli, Memory int64
	GPU              int
}

// Scorer names how a worker is chosen among those that fit; it is set per
// worker (in practice per pool).
type Scorer string

const (
	// BinPack prefers the fitting worker with the least free capacity left
	// on the job's dominant resource (best fit), which keeps large holes
	// free for large jobs. The empty Scorer means BinPack on workers without
	// GPUs and Spread on workers with GPUs (see DefaultScorer).
	BinPack Scorer = "binpack"
	// Spread prefers the fitting worker with the most free capacity.
	Spread Scorer = "spread"
)

// DefaultScorer is the scorer of a worker whose Scorer is empty: Spread for
// a worker with GPUs, BinPack otherwise. Best fit on the dominant resource
// fills one GPU worker's GPUs before it touches the next and strands the
// CPU and memory beside them: on the Alibaba GPU trace (docs/scheduling.md)
// GPU workers packed that way left CPU-only and shared-GPU pods waiting for
// room that spreading leaves. An explicit BinPack still applies.
func DefaultScorer(capacity Resources) Scorer {
	if capacity.GPU > 0 {
		return Spread
	}
	return BinPack
}

// WorkerSpec describes a worker to the engine.
type WorkerSpec struct {
	ID, Pool string
	Labels   []string
	Capacity Resources
	Scorer   Scorer
	// MaxJobs is how many jobs it runs at once at most (0: as many as
	// fit); 1 for an ephemeral worker.
	MaxJobs int
}

// JobSpec describes a job to the engine.
type JobSpec struct {
	ID       string   // unique across the engine
	Key      string   // prediction and cache-affinity key, e.g. pipeline name + "/" + job key
	Needs    []string // IDs of jobs of the same pipeline that must finish first
	Request  Resources
	Labels   []string // all must be on the worker
	Priority int      // -100..100, higher first, default 0 (see EffectivePriority)
}

// PipelineSpec describes one run of a pipeline and all its jobs.
type PipelineSpec struct {
	ID, Tenant string
	Priority   int
	Jobs       []JobSpec
}

// Policy names how the engine orders the queue and places jobs.
type Policy string

const (
	// PolicyFIFO is the baseline of today's CI systems: jobs in the order
	// they became ready, each on the first worker (in order of joining)
	// that fits. Priorities and tenants are ignored.
	PolicyFIFO Policy = "fifo"
	// PolicyLeastLoaded orders jobs like PolicyFIFO and puts each on the
	// fitting worker with the lowest dominant-resource load.
	PolicyLeastLoaded Policy = "least-loaded"
	// PolicyHodei is priority with aging, weighted DRF across tenants,
	// shortest-remaining-work across pipelines and critical path first
	// within them, placed by filter-then-score with cache affinity. See
	// the Engine documentation.
	PolicyHodei Policy = "hodei"
)

// Defaults of Config.
const (
	DefaultAging = 60 * time.Second
	// DefaultPathWeight is the default Config.PathWeight.
	DefaultPathWeight = 0.001
	// DefaultSlack is the default Config.Slack.
	DefaultSlack     = 10 * time.Minute
	DefaultLookahead = 1000
	// DefaultFairShareDelay is the default Config.FairShareDelay.
	DefaultFairShareDelay = time.Minute
	// DefaultWorkKnee is the default Config.WorkKnee.
	DefaultWorkKnee = 10 * time.Minute
	// MaxPriority is the highest job or pipeline priority, -MaxPriority the
	// lowest; values beyond are clamped. The default is 0; below 0 runs after
	// everything at 0 and above (with aging, so it still runs).
	MaxPriority = 100
)

// Config configures an Engine. The zero value is PolicyHodei with defaults.
type Config struct {
	Policy    Policy
	Predictor *predict.Predictor // nil: a new one with defaults
	// Aging (hodei): a priority class that has waited this long without
	// getting a worker ranks one level higher (default 60s).
	Aging time.Duration
	// Lookahead bounds the jobs examined by one Plan that fit nowhere
	// (bounded backfill, like Slurm's bf_max_job_test). Default 1000. A job
	// that does not fit parks every queued job of the same shape (labels and
	// request) until capacity that could hold it frees up, so the bound is
	// on distinct shapes, and it is rarely reached.
	Lookahead     int
	TenantWeights map[string]float64 // fair-share weights; missing or <= 0 = 1

	// WorkWeight (hodei) is the seconds of queue position that one second
	// of a pipeline's remaining predicted work costs its jobs within their
	// tenant (shortest remaining work first). 0 means the default, 1;
	// negative means none.
	WorkWeight float64
	// PathWeight (hodei) scales the critical-path term of a job's latest
	// start time (pipeline arrival + PathWeight × (pipeline critical path -
	// the job's downstream path)), by which tenants compete. 0 means the
	// default, 1; negative means none (pipelines first come, first
	// served).
	PathWeight float64
	// WorkKnee (hodei) bends the remaining-work term of a job's key: past
	// WorkKnee of queue position the term grows as the square root of
	// WorkKnee × the term, so the first job of a pipeline with 100 hours
	// of work left ranks about 4 hours after its arrival (with the default
	// knee of 10 minutes) instead of 100. The order of pipelines by
	// remaining work is kept; how far a large one is pushed behind newer
	// work is bounded. 0 means the default; negative means no knee.
	WorkKnee time.Duration
	// FairShareDelay (hodei): a tenant that would hold, with its next job,
	// a dominant share s of the fleet above its entitlement e (its weight
	// over the weights of the tenants with live pipelines) ranks
	// FairShareDelay × (s-e)/(1-s) later: its excess over what it leaves
	// to the others. So a tenant
	// holding 80% of the fleet out of an entitlement of 20% yields 3 ×
	// FairShareDelay, and one holding everything always yields. 0 means
	// the default, one minute; negative means no fairness term.
	FairShareDelay time.Duration

	// Slack (hodei) bounds how much later than first come, first served a
	// job of priority 0 or above may start, by a virtual FIFO clock per
	// pool: for each label set that jobs ask for, the engine keeps those
	// jobs in the order they became ready and advances a pointer over that
	// order by one for each of them it places, as FIFO would have placed
	// them on that pool; a job the pointer passed while it was still queued
	// is one FIFO would have started by then, and once it has stayed queued
	// Slack longer it is placed before anything else, in the order the
	// pointers passed them. One that fits nowhere now is skipped, as FIFO
	// does, but the first such job of each shape gets a worker kept for
	// it (the one whose running jobs' predicted ends free the room
	// soonest; nothing else starts there until the job does), so that
	// small jobs filling every hole cannot hold a late large job back
	// without end. Priorities above 0 still go first: Plan serves their classes,
	// then the late jobs, then the ranking. 0 (the default) means no such
	// bound: on the scenario suite it trades too much of the mean for the
	// tails it trims (docs/scheduling.md).
	Slack time.Duration

	// Window (hodei) bounds the ranking against first come, first served:
	// a job's queue key (its pipeline's arrival plus the remaining-work
	// term) and its latest start time are clamped to the time it became
	// ready ± Window, and a tenant's
	// fair-share delay is at most Window. So within a priority class, a job
	// is never passed over by one that became ready more than 3 × Window
	// after it. 0 (the default) means no bound: on the scenario suite a
	// bound of 30 minutes trims the tails of most scenarios but gives up
	// most of the mean, and makes some tails worse (docs/scheduling.md).
	Window time.Duration
}

// EngineStats counts what the engine holds.
type EngineStats struct {
	Decisions                uint64
	Queued, Running, Workers int
}

// Engine is the stateful scheduler: it owns the fleet as the scheduler sees
// it (capacity, reservations, labels), the queue of ready jobs, the pipelines
// they belong to and the duration predictor, and Plan decides placements.
//
// It is incremental rather than a pure function over a full snapshot (the
// first version of the scheduler) because of scale: at 100,000 queued jobs
// and 10,000 workers, sorting the queue and indexing the fleet for every
// decision would cost O(Q log Q + W) per decision, while a busy cluster makes thousands of
// decisions per second, each after one job finished. The engine keeps its
// indexes up to date as events arrive (a reservation changes one worker's key
// in a few ordered trees, an enqueue pushes one heap entry), so a decision
// costs O(G log W + log Q) for G worker groups, independent of the fleet and
// queue sizes.
//
// It stays deterministic: no I/O, no clock (time comes in as arguments), no
// randomness and no map iteration in decisions, so the orchestrator, the
// simulator and the benchmarks drive identical code and the same calls give
// the same plans. It is not safe for concurrent use: one goroutine owns it
// (the orchestrator loop, the simulator loop).
//
// # Queue order (PolicyHodei)
//
// The next job is chosen in three steps.
//
//  1. Priority class. Jobs are grouped by priority (EffectivePriority of the
//     pipeline's and the job's, -100..100). The class with the highest effective
//     priority goes first: its priority plus one level per Aging since it
//     last got a worker (or became non-empty), capped at 2×MaxPriority+1
//     levels, higher priority first on a tie. A class starved by a stream of
//     higher priorities thus wins a worker every (gap+1)×Aging at least. The
//     aging is per class, not per job, on purpose: at high load every job
//     waits, and per-job aging would hand the order back to waiting time,
//     making priority jobs wait behind the backlog; per class it acts only
//     when a class is actually starved.
//  2. Tenant. Tenants compete with the job each would run next (the head of
//     its shapes that fit somewhere, so a parked job does not lend its
//     urgency to younger ones), by its latest start time, LST = pipeline arrival +
//     PathWeight × (pipeline critical path - the job's downstream path), the
//     instant the job must start for its pipeline to end one critical path
//     after it arrived. A tenant that would hold, with the job it takes
//     next, a dominant share s of the schedulable fleet (as in DRF: the
//     largest of its cpu, memory and gpu shares) above its weighted
//     entitlement e ranks later by FairShareDelay × (s-e)/(1-s): a tenant
//     whose demand is merely large loses a minute or two, one that would
//     take the whole fleet always yields to one that holds nothing. So
//     tenants share the fleet in proportion to what they wait for, like
//     FIFO, but a flood cannot lock the others out: a tenant arriving
//     minutes after a flood starts at once (see TestEngineFairness); one
//     arriving hours later waits for the flood's older jobs, as under FIFO,
//     unless FairShareDelay is raised.
//  3. Job. Within the tenant, its queued job with the lowest key, the
//     pipeline's arrival + WorkWeight × the pipeline's remaining predicted
//     work (when the job became ready), that term bent past WorkKnee into
//     the square root of WorkKnee × the term; inside a pipeline, the job
//     with the longest downstream path first. So the tenant spends the
//     worker its urgency won on its pipelines with the least work left
//     (shortest remaining processing time, which minimises mean
//     completion), critical path first inside a pipeline, and an older
//     pipeline's later stages before a newer one's first jobs. As the key
//     grows with arrival time, a large pipeline is delayed at most by its
//     bent work term (about 4 hours for 100 hours of work) relative to
//     newer ones: no starvation. The critical-path term is left out of
//     the key on purpose: with it an old pipeline's matrix entries rank
//     behind newer pipelines' first jobs and wait a second time, which
//     made the job wait of an overloaded pool worse than under FIFO
//     (docs/scheduling.md, the scenario suite).
//
// Why not strict DRF (lowest share always first) and global shortest-work
// first, as a first design did: in the simulator (internal/sim, a CI-shaped
// workload with a tenant submitting bursts of large matrix pipelines), both
// make the large tenant's slowdown worse than under FIFO (1.51 against 1.30
// at load 1.0 for strict DRF), because everything it waits for is large.
// Competing on latest start time keeps its share of the fleet; ordering by
// LST instead of ready time also removes FIFO's main inefficiency, where
// every stage of a pipeline joins the back of the queue again.
//
// # Placement
//
// Filters: schedulable, worker labels include the job's, free cpu, memory
// and gpu cover the request. Workers are grouped by the labels jobs can ask
// for, gpu or not, and scorer; each group keeps its workers in ordered trees
// that know the largest free capacity of every subtree, so the best worker of
// a group is a lower-bound search and a group that cannot hold the request is
// rejected at its root. Scorers: bin-packing (best fit on the job's dominant
// resource) or spread (lowest load), per worker group. Jobs that need no gpu
// go to gpu workers only when no other worker fits. A fitting worker that
// recently ran the same Key (warm cache) is preferred; workers that do not
// fit now are never waited for.
//
// A job that fits nowhere parks its shape (label set and request): every
// queued job of that shape is skipped, at no cost, until a worker that could
// hold it frees capacity, joins or becomes schedulable again.
type Engine struct {
	policy     Policy
	pred       *predict.Predictor
	aging      int64 // ns
	lookahead  int
	weights    map[string]float64
	workWeight float64
	pathWeight float64
	workKnee   int64   // ns; 0: none
	fairDelay  float64 // seconds
	slack      int64   // ns
	slackOn    bool
	window     int64 // ns

	idx       index
	workers   []eworker
	workerIdx map[string]int32
	freeW     []int32
	nWorkers  int
	nextJoin  int64
	total     Resources // capacity of the schedulable workers (DRF denominators)

	jobs      []ejob
	jobIdx    map[string]int32
	freeJ     []int32
	pipes     []pipeline
	pipeIdx   map[string]int32
	freeP     []int32
	tenants   []tenant
	tenantIdx map[string]int32

	queues queues
	// late holds, in the order a virtual FIFO pointer passed them (see
	// labelSet.fifo), the jobs that were still queued then, key = that
	// instant; entries of jobs no longer queued (queueSeq differs) are
	// dropped lazily. lateHead is late's first entry still to look at.
	late     []heapEntry
	lateHead int
	// keeps are the workers kept for overdue jobs that fit nowhere now,
	// at most one per shape (see keepFor).
	keeps      []keep
	liveShapes int // shapes with queued jobs that are not parked

	seq       uint64
	decisions uint64
	nQueued   int
	nRunning  int

	scratchIdx map[string]int32
	scratch    []int32
	scratchF   []float64
}

// NewEngine returns an engine with no workers and no jobs.
func NewEngine(cfg Config) *Engine {
	e := &Engine{
		policy:     cfg.Policy,
		pred:       cfg.Predictor,
		aging:      int64(cfg.Aging),
		lookahead:  cfg.Lookahead,
		weights:    cfg.TenantWeights,
		workWeight: weightOr(cfg.WorkWeight, 1),
		pathWeight: weightOr(cfg.PathWeight, 1),
		workKnee:   int64(weightOr(float64(cfg.WorkKnee), float64(DefaultWorkKnee))),
		fairDelay:  weightOr(cfg.FairShareDelay.Seconds(), DefaultFairShareDelay.Seconds()),
		slack:      int64(cfg.Slack),
		window:     max(int64(cfg.Window), 0),
		workerIdx:  map[string]int32{},
		jobIdx:     map[string]int32{},
		pipeIdx:    map[string]int32{},
		tenantIdx:  map[string]int32{},
		scratchIdx: map[string]int32{},
	}
	switch e.policy {
	case PolicyFIFO, PolicyLeastLoaded, PolicyHodei:
	default:
		e.policy = PolicyHodei
	}
	if e.pred == nil {
		e.pred = predict.New(predict.Config{})
	}
	if e.aging <= 0 {
		e.aging = int64(DefaultAging)
	}
	if e.lookahead <= 0 {
		e.lookahead = DefaultLookahead
	}
	if e.slack > 0 && e.policy == PolicyHodei {
		e.slackOn = true
	}
	e.idx.init()
	e.queues.init()
	return e
}

func weightOr(w, def float64) float64 {
	switch {
	case w == 0:
		return def
	case w < 0:
		return 0
	}
	return w
}

// Policy returns the policy the engine runs.
func (e *Engine) Policy() Policy { return e.policy }

// Predictor returns the engine's duration predictor.
func (e *Engine) Predictor() *predict.Predictor { return e.pred }

// Predict returns the predicted duration of a job with this key.
func (e *Engine) Predict(key string) time.Duration { return e.pred.Predict(key) }

// PredictJob returns the predicted duration of a known job (the predictor's
// current estimate for its key), or the default for unseen keys.
func (e *Engine) PredictJob(jobID string) time.Duration {
	if j, ok := e.jobIdx[jobID]; ok {
		if k := e.jobs[j].key; k >= 0 {
			return e.pred.Predict(e.idx.keys[k].name)
		}
	}
	return e.pred.Default()
}

// Stats returns counters.
func (e *Engine) Stats() EngineStats {
	return EngineStats{Decisions: e.decisions, Queued: e.nQueued, Running: e.nRunning, Workers: e.nWorkers}
}
