// Package orchestrator owns the run and job state machines. It accepts runs,
// decides which jobs are ready, asks the scheduler where to run them, sends
// assignments to workers, and applies what workers report.
//
// One goroutine (the loop) owns all mutable state. It takes its inputs
// (submissions, cancels, worker reports, heartbeats, ticks) in batches and
// applies each batch in one store transaction: every transition is stored
// before anything about it is published or acknowledged, and the many small
// writes of a busy system become few large commits. Worker reports are
// acknowledged to JetStream only after their effects are committed, so a crash
// at any point redelivers them, and the handlers ignore what they have already
// applied (a status of an old attempt, or a state the job has passed).
//
// Fencing: an attempt runs only while the orchestrator holds it current.
// Workers restored from the store take no job until they heartbeat with
// their boot id; assignments carry the boot id they are meant for, and an
// agent of another boot drops them; a report of an attempt given up is
// answered with a cancel. Attempts lost to infrastructure (worker silent or
// restarted, server restarted, attempt handed back) are recorded as "lost"
// with why, and retried within the job's infra_retries without using its
// retry budget (see docs/architecture.md).
//
// The files split along the loop. loop.go holds the loop and its
// transaction, what every input shares: requests and their answers, the
// batch, the change it makes, the writes, and the announcements after the
// commit. handlers.go holds one handler per input (onSubmit, onCancel,
// onPredict, onReport with onStatus and onLogs, onHeartbeat, checkLeases)
// and the transitions they share; a new input gets its handler there, and
// loop.go changes only if the transaction does. recover.go rebuilds the
// state from the store at start and after a failed commit. outbox.go
// publishes the dispatch messages the announcements send, and publishes
// again those that fail, on a goroutine of its own: the loop never waits
// for JetStream's acknowledgements.
package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/predict"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/store"
)

// Errors returned to callers of Submit and Cancel.
var (
	// ErrBusy means the orchestrator's intake is full; try again shortly.
	ErrBusy = errors.New("orchestrator busy")
	// ErrStopped means the orchestrator is not running.
	ErrStopped = errors.New("orchestrator stopped")
	// ErrRunFinal means the run has already ended.
	ErrRunFinal = errors.New("run already ended")
	// ErrNotOwned means the run is active but not loaded by this
	// orchestrator (another one sharing the store owns it).
	ErrNotOwned = errors.New("run not owned by this orchestrator")
	// ErrNotLeader means this server does not lead the servers sharing
	// its store (or no longer does), and none could take the request for
	// it: try again shortly, on any server.
	ErrNotLeader = errors.New("no leader: this server does not lead, and no leader answered")
	// ErrTooManyRuns means the submission's tenant has Config.MaxActiveRuns
	// runs that have not ended: try again once some have.
	ErrTooManyRuns = errors.New("too many active runs")
)

// DefaultMaxActiveRuns is Config.MaxActiveRuns when unset.
const DefaultMaxActiveRuns = 10_000

// DefaultInfraRetries is Config.InfraRetries when unset.
const DefaultInfraRetries = 2

// Config wires an orchestrator.
type Config struct {
	Store    store.Store
	NC       *nats.Conn
	Subjects bus.Subjects
	// Replicas is how many servers of a NATS cluster keep each stream
	// (bus.EnsureStreams; 0 means 1).
	Replicas int
	Hub      *hub.Hub
	// Policy is the scheduling policy (scheduler.PolicyHodei by default).
	Policy scheduler.Policy
	// TenantWeights are fair-share weights (1 for tenants not named).
	TenantWeights map[string]float64
	// Aging is how long a priority level waits without a worker before it
	// ranks one level higher (scheduler.DefaultAging when zero).
	Aging time.Duration
	// WorkerTTL is how long a worker may stay silent before it is lost and
	// its jobs go back to the queue (5s by default).
	WorkerTTL time.Duration
	// AssignTimeout is how long an assignment may wait for the worker to
	// take it before the attempt counts as lost (15s by default).
	AssignTimeout time.Duration
	// InfraRetries is how many new attempts a job gets when attempts are
	// lost to infrastructure (worker lost or restarted, server restarted,
	// attempt handed back), before losses use its retry budget; a job's
	// infra_retries overrides it. Zero means the default, 2; negative
	// means none.
	InfraRetries int
	// InProcess names the workers that run inside this process: after a
	// restart their attempts cannot have survived, and are lost at once
	// ("lost: server restarted") instead of after WorkerTTL.
	InProcess []string
	// FailUnrunnable says that a queued job that nothing could ever run
	// fails at once with why, instead of waiting forever: no live worker
	// has its labels or its size, and no pool's shape fits it (Pools). It
	// is checked once per job, when the job is queued, but only once every
	// worker of InProcess has joined, the pools are known and JoinGrace
	// has passed since Start. Without it such a job waits, and says why
	// (Outlook).
	FailUnrunnable bool
	// JoinGrace is how long after Start agents that connect over NATS
	// (those of before a restart) have to join before a job is judged
	// unrunnable; zero when none can connect.
	JoinGrace time.Duration
	// Pools, when set, returns the worker pools that may grow (the worker
	// manager's: workers.Manager.SchedulerPools), and false while they are
	// not known yet. Queued jobs then say when they wait for a pool, or
	// that the pools they fit are at their max. It is called from the
	// loop: it must be quick and must not block.
	Pools func() ([]scheduler.Pool, bool)
	// Tick is the period of lease checks (250ms by default).
	Tick time.Duration
	// MaxActiveRuns bounds the runs of one tenant that have not ended:
	// past it a submission (API, forge event, schedule, rerun) fails with
	// ErrTooManyRuns, so that no tenant can fill the server's memory and
	// store with queued work. Zero means DefaultMaxActiveRuns; negative
	// means no bound.
	MaxActiveRuns int
	// MaxBatch bounds the inputs applied in one transaction (2048).
	MaxBatch int
	// Intake bounds queued submissions and cancels; past it Submit returns
	// ErrBusy (4096).
	Intake  int
	Metrics *Metrics
	Logger  *slog.Logger
	// Seal, when set, is given each assignment of a job that names
	// secrets, with the run's tenant, and returns it with the secrets
	// resolved and sealed for the worker (secrets.Sealer.Seal). It does
	// I/O, so it runs on a goroutine of its own, never in the loop.
	Seal func(ctx context.Context, worker, tenant string, names []string, d bus.Dispatch) bus.Dispatch
	// MaxLogBytes is sent with every assignment: the most output of an
	// attempt its worker keeps (0: the worker's own limit).
	MaxLogBytes int64
	// Epoch, when positive, is the leadership epoch this orchestrator was
	// elected with (several servers on one PostgreSQL): every transaction
	// carries it (store.WithEpoch). When the store refuses one because a
	// newer leader has bumped the epoch (store.ErrFenced), the loop stops,
	// applying nothing more, and OnFenced is called on a goroutine of its
	// own; the caller then calls Stop.
	Epoch    int64
	OnFenced func()
	// TakeOver recreates the reports consumer at Start, so that what a
	// previous leader took and did not acknowledge is delivered again at
	// once rather than after the acknowledgement wait.
	TakeOver bool
}

func (c *Config) defaults() {
	if c.Subjects.Prefix == "" {
		c.Subjects = bus.DefaultSubjects
	}
	if c.Policy == "" {
		c.Policy = scheduler.PolicyHodei
	}
	if c.WorkerTTL == 0 {
		c.WorkerTTL = 5 * time.Second
	}
	if c.AssignTimeout == 0 {
		c.AssignTimeout = 15 * time.Second
	}
	if c.MaxActiveRuns == 0 {
		c.MaxActiveRuns = DefaultMaxActiveRuns
	}
	if c.InfraRetries == 0 {
		c.InfraRetries = DefaultInfraRetries
	}
	if c.Tick == 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 2048
	}
	if c.Intake == 0 {
		c.Intake = 4096
	}
	if c.Hub == nil {
		c.Hub = hub.New()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Orchestrator is created with New and started with Start.
type Orchestrator struct {
	cfg Config
	log *slog.Logger
	js  jetstream.JetStream
	out *outbox // publishes dispatch messages, and again those that fail
	// passStart is when the running scheduling pass began (its span).
	passStart time.Time
	// startedAt is when Start was called (cfg.JoinGrace counts from it).
	startedAt time.Time

	intake  chan request // see send
	reports chan jetstream.Msg
	budget  *byteBudget // bytes of reports taken and not yet applied
	beats   chan bus.Heartbeat
	cc      jetstream.ConsumeContext
	hbSub   *nats.Subscription
	stop    context.CancelFunc
	done    chan struct{}
	running atomic.Bool
	// appliedSeq is the highest stream sequence of a report applied and
	// acknowledged; applied gets a token after each batch that applied
	// reports. Settle waits on them.
	appliedSeq atomic.Uint64
	applied    chan struct{}
	// sealing counts the goroutines that seal an assignment's secrets
	// (sealAndPublish); Stop cancels sealCtx and waits for them.
	sealing   sync.WaitGroup
	sealCtx   context.Context
	stopSeals context.CancelFunc

	// Owned by the loop goroutine.
	runs map[string]*runState
	// active counts the runs of runs by tenant (addRun, removeRun).
	active map[string]int
	jobs   map[string]*jobState
	queue  map[string]*jobState
	// waiting are the jobs in waiting_approval (approval.go).
	waiting map[string]*jobState
	workers map[string]*workerState
	admit   *scheduler.Admission
	eng     *scheduler.Engine
	pred    *predict.Predictor // survives reloads of the engine
	seq     uint64
	dirty   bool // something changed that may allow new placements
	// unchecked are the jobs enqueued since the last check that some
	// worker could ever run them (cfg.FailUnrunnable only; see failUnrunnable).
	unchecked []*jobState
	bus       busWatch // the loop's own NATS connection (hearing)
	lastPub   time.Time
	ids       *idGen
	pending   *change // announcements of the recovery transaction

	view atomic.Pointer[View]
	mu   sync.Mutex // guards nothing but Stop

	reportsDone, beatsDone atomic.Uint64 // see Processed
}

type runState struct {
	rec       store.Run
	jobs      []*jobState
	open      int // jobs not final
	canceling bool
}

type jobState struct {
	rec        store.Job
	spec       pipeline.JobSpec
	run        *runState
	needs      []*jobState
	dependents []*jobState
	att        store.Attempt // the current attempt
	seq        uint64        // queue order
	// firstQueued is when the job was first queued in this process (for
	// its span; zero after a restart).
	firstQueued time.Time
	// missing: since when the worker's heartbeats have left out the
	// running attempt (zero while they list it).
	missing time.Time
	// given holds the attempts given up as lost whose worker may still
	// report how they really ended: a late final report corrects the
	// history.
	given map[int]store.Attempt
}

type workerState struct {
	rec store.Worker
	// jobs are the jobs placed on it; what they reserve is counted by the
	// scheduler engine alone (Engine.Reserved).
	jobs     map[string]*jobState
	lastSeen time.Time
	lastSave time.Time
	running  map[bus.JobRef]bool // from the last heartbeat
	hbAt     time.Time           // time of the last heartbeat
	draining bool
	// stoppedBoot is the boot id of the worker's agent that handed work
	// back: it is stopping, so a heartbeat of that boot sent before the
	// stop does not make the worker schedulable again.
	stoppedBoot string
	// once: an ephemeral agent (one job in its life); took: it was given
	// that job (since its last boot).
	once, took bool
	// fenced: known from the store but not heard from since this
	// orchestrator started; it gets no job until it heartbeats, so that
	// nothing is placed on an incarnation that no longer exists.
	fenced bool
	// What the scheduler engine was last told.
	spec        scheduler.WorkerSpec
	synced      bool
	schedulable bool
}

// New checks the configuration. Start begins the work.
func New(cfg Config) (*Orchestrator, error) {
	cfg.defaults()
	if cfg.Store == nil || cfg.NC == nil {
		return nil, errors.New("orchestrator: store and nats connection are required")
	}
	out := newOutbox(cfg.Logger, cfg.AssignTimeout)
	js, err := jetstream.New(cfg.NC, out.options()...)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: jetstream: %w", err)
	}
	o := &Orchestrator{
		cfg:     cfg,
		log:     cfg.Logger,
		js:      js,
		out:     out,
		intake:  make(chan request, cfg.Intake),
		reports: make(chan jetstream.Msg, 8192),
		budget:  newByteBudget(maxReportBytes),
		beats:   make(chan bus.Heartbeat, 4096),
		done:    make(chan struct{}),
		applied: make(chan struct{}, 1),
		runs:    map[string]*runState{},
		active:  map[string]int{},
		jobs:    map[string]*jobState{},
		queue:   map[string]*jobState{},
		waiting: map[string]*jobState{},
		workers: map[string]*workerState{},
		admit:   scheduler.NewAdmission(),
		pred:    predict.New(predict.Config{}),
		ids:     newIDGen(),
	}
	out.js = js
	o.sealCtx, o.stopSeals = context.WithCancel(context.Background())
	o.eng = o.newEngine()
	o.view.Store(&View{})
	return o, nil
}

func (o *Orchestrator) newEngine() *scheduler.Engine {
	return scheduler.NewEngine(scheduler.Config{Policy: o.cfg.Policy, TenantWeights: o.cfg.TenantWeights, Aging: o.cfg.Aging, Predictor: o.pred})
}

// Hub returns the hub on which stored changes are announced.
func (o *Orchestrator) Hub() *hub.Hub { return o.cfg.Hub }

// Start recovers the state left in the store, creates the streams, and starts
// consuming worker reports. It returns once the orchestrator is ready.
func (o *Orchestrator) Start(ctx context.Context) (err error) {
	o.startedAt = time.Now()
	o.bus.reconnects = o.cfg.NC.Stats().Reconnects
	ctx = o.epochContext(ctx)
	// Heartbeats are heard from the start: they wait in o.beats (one
	// dropped when it is full is replaced by the next) until the loop
	// runs, so that a new leader knows which workers are alive at its
	// first turn rather than a heartbeat after it.
	o.hbSub, err = o.cfg.NC.Subscribe(o.cfg.Subjects.Heartbeat("*"), func(m *nats.Msg) {
		var hb bus.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil || !bus.ValidToken(hb.WorkerID) {
			return
		}
		select {
		case o.beats <- hb:
		default: // the next heartbeat will do
		}
	})
	if err != nil {
		return fmt.Errorf("orchestrator: heartbeats: %w", err)
	}
	defer func() {
		if err != nil {
			_ = o.hbSub.Unsubscribe()
		}
	}()
	if err := bus.EnsureStreams(ctx, o.js, o.cfg.Subjects, o.cfg.Replicas); err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	// The reports consumer (JetStream's side) and the state (the store's)
	// do not depend on each other: a new leader gets both at once, which
	// matters on a cluster, where making a replicated consumer takes a
	// round of its own consensus.
	type consumed struct {
		cons jetstream.Consumer
		err  error
	}
	ready := make(chan consumed, 1)
	go func() {
		cons, err := o.reportsConsumer(ctx)
		ready <- consumed{cons, err}
	}()
	cons, err := func() (jetstream.Consumer, error) {
		// The predictor starts from the durations of recent jobs, so
		// that predictions and the scheduler's ranking survive a
		// restart.
		history, err := o.cfg.Store.RecentDurations(ctx, 20000)
		if err != nil {
			<-ready
			return nil, fmt.Errorf("orchestrator: duration history: %w", err)
		}
		for _, d := range history {
			o.pred.Observe(d.Pipeline+"/"+d.JobKey, d.Ran)
		}
		if err := o.recover(ctx, true); err != nil {
			<-ready
			return nil, fmt.Errorf("orchestrator: recover: %w", err)
		}
		r := <-ready
		return r.cons, r.err
	}()
	if err != nil {
		return err
	}
	o.cc, err = cons.Consume(func(m jetstream.Msg) {
		o.budget.take(len(m.Data()))
		o.reports <- m
	}, append(bus.PullOptions(), jetstream.PullMaxBytes(maxReportPrefetch))...)
	if err != nil {
		return fmt.Errorf("orchestrator: consume reports: %w", err)
	}
	// The subscription is the server's once it has read it: heartbeats
	// sent after Start returns are heard. A connection away now gives
	// its subscriptions again when it is back.
	if err := o.cfg.NC.FlushTimeout(5 * time.Second); err != nil {
		o.log.Warn("orchestrator: heartbeats' subscription not confirmed", "err", err)
	}
	loopCtx, cancel := context.WithCancel(o.epochContext(context.Background()))
	o.stop = cancel
	o.out.start()
	o.running.Store(true)
	go o.loop(loopCtx)
	return nil
}

// reportsConsumer makes the orchestrator's durable consumer of the reports
// stream. A new leader (TakeOver) deletes the previous one's first: its
// unacknowledged messages go to the fresh consumer at once. A work-queue
// stream keeps every message until it is acknowledged, so nothing is
// skipped.
func (o *Orchestrator) reportsConsumer(ctx context.Context) (jetstream.Consumer, error) {
	if o.cfg.TakeOver {
		if err := o.js.DeleteConsumer(ctx, bus.StreamReports, "orchestrator"); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("orchestrator: take over the reports consumer: %w", err)
		}
	}
	cons, err := o.js.CreateOrUpdateConsumer(ctx, bus.StreamReports, jetstream.ConsumerConfig{
		Durable:       "orchestrator",
		Replicas:      max(o.cfg.Replicas, 1), // as many as its stream's (bus.EnsureStreams)
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		MaxAckPending: 16384,
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: reports consumer: %w", err)
	}
	return cons, nil
}

// epochContext is ctx carrying the orchestrator's epoch, if it has one.
func (o *Orchestrator) epochContext(ctx context.Context) context.Context {
	if o.cfg.Epoch > 0 {
		return store.WithEpoch(ctx, o.cfg.Epoch)
	}
	return ctx
}

// Settle returns once every worker report in the stream when it is called
// has been applied, or ctx ends. A server calls it after its local agents
// have stopped, so that what they reported last (an attempt finished or
// handed back while draining) is applied by this process rather than found
// by the next one. The reports to wait for are those up to the stream's
// last sequence: the consumer's own count of pending messages lags a
// publish by a moment, and read alone it said "nothing pending" before a
// report just stored was counted. It waits for the loop's word that a
// batch of reports was applied, not on a clock: an acknowledgement still on
// its way to JetStream does not hold it up, since its report is applied.
func (o *Orchestrator) Settle(ctx context.Context) error {
	if !o.running.Load() {
		return ErrStopped
	}
	stream, err := o.js.Stream(ctx, bus.StreamReports)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	sinfo, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	last := sinfo.State.LastSeq
	cons, err := o.js.Consumer(ctx, bus.StreamReports, "orchestrator")
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	for {
		info, err := cons.Info(ctx)
		// Everything up to last acknowledged (so applied, or refused),
		// or delivered in order and applied with its acknowledgement
		// still on its way.
		if err == nil && (info.AckFloor.Stream >= last || info.NumRedelivered == 0 && o.appliedSeq.Load() >= last) {
			return nil
		}
		if !o.running.Load() {
			return ErrStopped
		}
		var retry <-chan time.Time
		if err != nil {
			// JetStream did not answer: ask again shortly (no batch
			// may come to wake this loop).
			retry = time.After(20 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("settle: %w", ctx.Err())
		case <-o.done:
			return ErrStopped
		case <-o.applied:
		case <-retry:
		}
	}
}

// Stop stops consuming, waits for the loop to finish its batch, stops
// the seals of secrets still under way (see sealAndPublish), then the
// dispatch publishes still to be made again (outbox).
func (o *Orchestrator) Stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.running.Swap(false) {
		return
	}
	o.budget.close()
	if o.cc != nil {
		o.cc.Stop()
	}
	if o.hbSub != nil {
		_ = o.hbSub.Unsubscribe()
	}
	o.stop()
	<-o.done
	o.stopSeals()
	o.sealing.Wait()
	o.out.close()
}

// SubmitRequest is a validated, expanded pipeline to run.
type SubmitRequest struct {
	// Pipeline is stored with the run: its name, file, and the files it
	// includes.
	Pipeline *pipeline.Pipeline
	Jobs     []pipeline.JobSpec
	Source   []byte
	Tenant   string
	// Inputs are the values of the pipeline's inputs, stored with the run.
	Inputs map[string]string
	// Trigger, for a run from a repository, is stored with the run (its
	// RunID filled in).
	Trigger *store.Trigger
	// Firing, for a run made by a schedule, is the claimed firing: the
	// run's id is recorded on it in the run's transaction.
	Firing *store.Firing
	// Rerun, for a run made again from an earlier one, is recorded with
	// the run (its RunID and its carried jobs' JobID filled in). The jobs
	// of its Carried, by JobKey, are stored succeeded and do not run: the
	// jobs that need them see them succeeded.
	Rerun *store.Rerun
	// Key, when set, is the submission's idempotency key: a submission
	// with a key the tenant has used gets the run the first one made, and
	// makes none.
	Key string
}

type submitReq struct {
	answer
	req SubmitRequest
	run store.Run // the run as stored, once answered without error
}

func (r *submitReq) handle(o *Orchestrator, c *change) { o.onSubmit(c, r) }

// Submit stores a new run and queues its ready jobs. It returns once the run
// is committed to the store.
func (o *Orchestrator) Submit(ctx context.Context, req SubmitRequest) (store.Run, error) {
	if len(req.Jobs) == 0 {
		return store.Run{}, errors.New("submit: pipeline has no jobs")
	}
	r := &submitReq{answer: newAnswer(), req: req}
	if err := o.send(ctx, r); err != nil {
		return store.Run{}, err
	}
	return r.run, nil
}

type cancelReq struct {
	answer
	runID string
}

func (r *cancelReq) handle(o *Orchestrator, c *change) { o.onCancel(c, r) }

// Cancel stops a run: its waiting jobs are canceled, and its running jobs are
// canceled and their workers told to kill them. It returns once the
// cancellation is stored. ErrRunFinal if the run has already ended;
// store.ErrNotFound if there is no such run.
func (o *Orchestrator) Cancel(ctx context.Context, runID string) error {
	return o.send(ctx, &cancelReq{answer: newAnswer(), runID: runID})
}

type pingReq struct{ answer }

func (r *pingReq) handle(_ *Orchestrator, c *change) { c.reply(r, nil) }

// Ping returns once the loop has applied a batch after the call: it proves
// the loop and its store transactions are working.
func (o *Orchestrator) Ping(ctx context.Context) error {
	return o.send(ctx, &pingReq{newAnswer()})
}

type outlookReq struct {
	answer
	jobs     []string
	outlooks map[string]Outlook
}

func (r *outlookReq) handle(o *Orchestrator, c *change) { o.onOutlook(c, r) }

// Outlook is what the scheduler expects of an active job.
type Outlook struct {
	// Predicted is the job's predicted duration.
	Predicted time.Duration
	// Waiting says why a queued job is not placed (zero otherwise).
	Waiting scheduler.Reason
}

// Outlook returns the outlook of each job that is still active (jobs of
// ended runs are left out): its predicted duration and, if it is queued,
// why it waits. It goes through the loop, which owns the scheduler.
func (o *Orchestrator) Outlook(ctx context.Context, jobIDs []string) (map[string]Outlook, error) {
	r := &outlookReq{answer: newAnswer(), jobs: jobIDs}
	if err := o.send(ctx, r); err != nil {
		return nil, err
	}
	return r.outlooks, nil
}
