// Package agent is the worker process: it takes assignments from its own
// dispatch subject, runs each job's steps in a fresh workspace (and, where
// the machine has cgroups, each attempt in a cgroup of its own: see package
// cgroup), streams their output in batches, reports status, and sends
// heartbeats. It talks to the server only through NATS, so an agent on
// another machine joins the fleet with nothing but a NATS URL.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/backoff"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/sandbox"
	"github.com/hodei-ci/hodei/internal/secrets/sealed"
	"github.com/hodei-ci/hodei/internal/steplog"
)

// Config describes one agent.
type Config struct {
	ID       string   // unique in the fleet; a valid subject token
	Pool     string   // the pool it belongs to ("local" by default)
	Labels   []string // what jobs may ask for in runs-on.labels
	CPUMilli int64    // declared capacity
	Memory   int64
	GPU      int
	// WorkDir holds one workspace directory per job, removed afterwards.
	WorkDir string
	// HeartbeatInterval defaults to one second.
	HeartbeatInterval time.Duration
	Subjects          bus.Subjects
	// BaseEnv is added to the environment every step starts from (a fixed
	// PATH, HOME and TMPDIR in the step's private temporary directory).
	// Nothing of the agent's own environment reaches a step.
	BaseEnv []string
	// Unisolated runs steps as the agent's own user, without a sandbox
	// (--unsafe-shared-user): a step can then read and write whatever the
	// agent can. The worker carries the label UnisolatedLabel. By default
	// every step runs in a sandbox (see internal/sandbox), and New fails
	// on a machine that cannot make one.
	Unisolated bool
	// Hide lists directories steps must not see besides the work dir (the
	// server's data directory, the agent's key files).
	Hide []string
	// StepUIDs is the range of unprivileged uids (and gids) steps run as
	// when the agent is root: each attempt gets one that no other attempt
	// of this agent holds (DefaultStepUIDs when zero).
	StepUIDs UIDRange
	// ChunkSize and FlushDelay bound log batches (64 KiB, 200ms by default).
	ChunkSize  int
	FlushDelay time.Duration
	Logger     *slog.Logger
	// Once makes an ephemeral worker: the agent drains as soon as it takes
	// a job, and Run returns once its jobs have ended.
	Once bool
	// Containers runs the jobs that name an image; nil refuses them. An
	// agent with a runtime gets the label pipeline.DockerLabel.
	Containers containers.Runtime
	// ContainerNetwork is the network of the job containers that ask for
	// one (network: true); "" is the engine's default.
	ContainerNetwork string
	// JobContainer, when set, says the agent runs inside the container of
	// the jobs whose pipeline.ContainerKey it is (a Kubernetes worker pod
	// made for them, their services its sidecars): it runs their steps
	// in place, as a job without an image, once each service answers on
	// its ports (container.go, awaitServices). A job with another key is
	// refused.
	JobContainer string
	// MaxLogBytes is the most output of an attempt that is kept when the
	// assignment does not say (DefaultMaxLogBytes when zero).
	MaxLogBytes int64
	// DrainTimeout is how long Run, once its context ends, lets running
	// jobs finish (taking no new ones) before it stops those left and
	// hands them back to the server (StatusLost: the server gives them a
	// new attempt without charging their retry budget). Zero hands them
	// back at once.
	DrainTimeout time.Duration
	// NoCgroups runs every attempt without a cgroup even where the machine
	// has them: no limits, no usage, steps stopped by process group only.
	NoCgroups bool
	// Exec, when set, runs each attempt in place of its steps: no
	// workspace, sandbox, cgroup, checkout or artifacts, only the protocol
	// around it (the assignment, the running and final statuses,
	// heartbeats). It makes a simulated agent for measuring the server and
	// the bus with many agents (hodei bench fleet); it returns the final
	// state (bus.StatusSucceeded...), the exit code and an error message.
	Exec func(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec) (state string, code int, errMsg string)
	// GitCacheDir holds the worker's object cache of the repositories
	// its jobs check out (gitcache.go): one bare mirror per tenant and
	// URL, hidden from steps. Default: hodei-git-cache/ID in the system's
	// temporary directory.
	GitCacheDir string
	// GitCacheMaxAge removes a mirror of GitCacheDir that no job has used
	// for this long (checked at start and then every GitCacheMaxAge/24, at
	// least a minute apart); the next job that needs it fetches it again.
	// Zero means 7 days; negative keeps every mirror.
	GitCacheMaxAge time.Duration
	// FenceAfter is how long the agent's NATS connection may stay away
	// before the agent stops the attempts it runs (fence.go): past the
	// server's worker TTL the server gives them to another worker, and
	// they must not run twice. Zero means DefaultFenceAfter; negative
	// never stops them. It must be shorter than the server's
	// --worker-ttl.
	FenceAfter time.Duration
}

// DefaultGitCacheMaxAge is how long an unused mirror of the git cache is
// kept by default.
const DefaultGitCacheMaxAge = 7 * 24 * time.Hour

// Defaults fills what is unset from the machine.
func (c *Config) Defaults() {
	if c.Pool == "" {
		c.Pool = "local"
	}
	if c.CPUMilli == 0 {
		c.CPUMilli = int64(runtime.NumCPU()) * 1000
	}
	if c.Memory == 0 {
		c.Memory = MachineMemory()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.Subjects.Prefix == "" {
		c.Subjects = bus.DefaultSubjects
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(os.TempDir(), "hodei-work", c.ID)
	}
	if c.GitCacheDir == "" {
		c.GitCacheDir = filepath.Join(os.TempDir(), "hodei-git-cache", c.ID)
	}
	if c.GitCacheMaxAge == 0 {
		c.GitCacheMaxAge = DefaultGitCacheMaxAge
	}
	if c.FenceAfter == 0 {
		c.FenceAfter = DefaultFenceAfter
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 64 << 10
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StepUIDs.Count <= 0 {
		c.StepUIDs = DefaultStepUIDs
	}
	if len(c.Labels) == 0 {
		c.Labels = DefaultLabels()
	}
	if c.Unisolated && !slices.Contains(c.Labels, UnisolatedLabel) {
		c.Labels = append(slices.Clone(c.Labels), UnisolatedLabel)
	}
	if c.Containers != nil && !slices.Contains(c.Labels, pipeline.DockerLabel) {
		c.Labels = append(slices.Clone(c.Labels), pipeline.DockerLabel)
	}
}

// DefaultLabels are the labels of an agent that declares none: its OS and
// architecture.
func DefaultLabels() []string { return []string{runtime.GOOS, runtime.GOARCH} }

// UnisolatedLabel marks a worker whose steps run as its agent's own user
// (Config.Unisolated); `hodei workers` shows it with the other labels.
const UnisolatedLabel = "unisolated"

// UIDRange is a range of ids: First, First+1, ..., First+Count-1.
type UIDRange struct {
	First, Count int
}

// DefaultStepUIDs is where a root agent takes the ids of its steps from:
// ids no account of a usual system has, in the spirit of systemd's dynamic
// users.
var DefaultStepUIDs = UIDRange{First: 0x70000000, Count: 1 << 16}

// Agent runs jobs. Create it with New and start it with Run.
type Agent struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	bootID string
	log    *slog.Logger
	// seal opens the secrets of assignments; its public half goes out in
	// heartbeats. It is made at every start and lives in memory only.
	seal *sealed.KeyPair
	// art moves artifacts and caches through the server (package artifact).
	art *artifact.Client
	// cg makes the cgroup of each attempt, under cgName; nil when the
	// machine has none.
	cg     *cgroup.Manager
	cgName string
	// gitc is the object cache of the repositories checked out.
	gitc *gitCache

	mu        sync.Mutex
	running   map[bus.JobRef]*execution
	uids      map[int]bool             // step uids held by running attempts (root agents)
	seen      map[bus.JobRef]time.Time // assignments taken (de-duplication)
	lastPrune time.Time
	lastTake  time.Time // when the last assignment was taken
	wg        sync.WaitGroup

	// draining stops the server from giving the agent new jobs (it says so
	// in its heartbeats); hbNow asks for a heartbeat at once; idle is
	// signaled when a job of a Once agent ends with nothing else running.
	draining atomic.Bool
	hbNow    chan struct{}
	idle     chan struct{}
	// stopping: Run's context ended; assignments that arrive now are
	// handed back at once. ended is signaled whenever a job ends.
	stopping atomic.Bool
	ended    chan struct{}
	// retries ends stopGrace after Run stopped the jobs left after the
	// drain: publishRetry gives up then.
	retries     context.Context
	stopRetries context.CancelFunc
}

type execution struct {
	cancel context.CancelCauseFunc
}

// ErrNoIsolation is returned by New when steps cannot be isolated on this
// machine and the agent was not told to run them unisolated.
var ErrNoIsolation = errors.New("steps cannot be isolated on this machine")

// CheckIsolation reports, as an ErrNoIsolation that says how to opt out,
// why steps cannot be isolated on this machine; nil when they can. It
// starts one sandbox the first time (see sandbox.Check).
func CheckIsolation() error {
	if err := sandbox.Check(); err != nil {
		return fmt.Errorf("%w: %v; pass --unsafe-shared-user to run steps as this user, "+
			"able to read and write all it can (the worker is then listed as %q)", ErrNoIsolation, err, UnisolatedLabel)
	}
	return nil
}

// errCanceled is the cause of a job stopped by a cancel message.
var errCanceled = errors.New("canceled")

// errHandBack is the cause of a job stopped because the agent stops: it is
// reported as StatusLost, an infrastructure loss, not the job's failure.
var errHandBack = errors.New("handed back: worker stopped")

// New prepares an agent on a NATS connection. It does not take ownership of
// the connection.
func New(nc *nats.Conn, cfg Config) (*Agent, error) {
	cfg.Defaults()
	if !bus.ValidToken(cfg.ID) {
		return nil, fmt.Errorf("agent id %q: use letters, digits, '-' and '_'", cfg.ID)
	}
	if !cfg.Unisolated && cfg.Exec == nil {
		if err := CheckIsolation(); err != nil {
			return nil, err
		}
	}
	// Acknowledgements of async publishes (log chunks, the running
	// status) time out: one lost with a NATS node would otherwise be
	// waited for by confirm for ever, and hold its slot of the window.
	// A timed-out publish is made again by publishRetry.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024), jetstream.WithPublishAsyncTimeout(asyncAckWait))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	seal, err := sealed.NewKeyPair()
	if err != nil {
		return nil, err
	}
	gitc, err := newGitCache(cfg.GitCacheDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		gitc:    gitc,
		seal:    seal,
		cfg:     cfg,
		nc:      nc,
		js:      js,
		bootID:  hex.EncodeToString(b),
		log:     cfg.Logger.With("worker", cfg.ID),
		running: map[bus.JobRef]*execution{},
		uids:    map[int]bool{},
		seen:    map[bus.JobRef]time.Time{},
		hbNow:   make(chan struct{}, 1),
		idle:    make(chan struct{}, 1),
		ended:   make(chan struct{}, 1),
		art:     artifact.NewClient(nc, cfg.Subjects, cfg.ID),
	}
	a.retries, a.stopRetries = context.WithCancel(context.Background())
	a.initCgroups()
	return a, nil
}

// ID returns the agent's id.
func (a *Agent) ID() string { return a.cfg.ID }

// Drain tells the server, at once and in every heartbeat after, that the
// agent takes no new jobs. The jobs it has, and assignments already on their
// way, still run. It is safe to call at any time, more than once.
func (a *Agent) Drain() {
	if !a.draining.Swap(true) {
		a.log.Info("draining: no new jobs")
	}
	select {
	case a.hbNow <- struct{}{}:
	default:
	}
}

// Draining reports whether Drain was called.
func (a *Agent) Draining() bool { return a.draining.Load() }

// Run takes and runs jobs until ctx is done. Then it drains: it takes no new
// jobs (it says so in its heartbeats, and hands back assignments that still
// arrive), lets running jobs finish for up to cfg.DrainTimeout, stops those
// left and hands them back to the server, and returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.WorkDir, 0o700); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	a.cleanLeftovers()
	cons, err := a.consumer(ctx)
	if err != nil {
		return err
	}
	jobCtx, cancelJobs := context.WithCancelCause(context.Background())
	defer cancelJobs(nil)

	cc, err := cons.Consume(func(m jetstream.Msg) { a.onDispatch(jobCtx, m) }, append(bus.PullOptions(), jetstream.PullMaxMessages(64))...)
	if err != nil {
		return fmt.Errorf("consume dispatch: %w", err)
	}
	a.log.Info("agent started", "cpu_milli", a.cfg.CPUMilli, "memory", a.cfg.Memory, "labels", a.cfg.Labels, "pool", a.cfg.Pool)

	pruneCtx, stopPrune := context.WithCancel(context.Background())
	pruneDone := make(chan struct{})
	go func() {
		defer close(pruneDone)
		a.pruneGitCache(pruneCtx)
	}()
	defer func() { stopPrune(); <-pruneDone }()

	fenceCtx, stopFence := context.WithCancel(context.Background())
	fenceDone := make(chan struct{})
	go func() {
		defer close(fenceDone)
		a.fence(fenceCtx)
	}()
	defer func() { stopFence(); <-fenceDone }()

	// Heartbeats go on while the agent drains: a worker silent for the
	// server's TTL would have its jobs lost while they still run.
	hbCtx, stopHB := context.WithCancel(context.Background())
	defer stopHB()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.heartbeats(hbCtx)
	}()
	a.wait(ctx)
	a.stopping.Store(true)
	a.drainRunning()
	time.AfterFunc(stopGrace, a.stopRetries)
	cancelJobs(errHandBack)
	cc.Stop()
	// No dispatch callback may still run once Run has returned (Stop does
	// not wait for one in flight); Closed is closed when the last has.
	select {
	case <-cc.Closed():
	case <-time.After(10 * time.Second):
		a.log.Warn("dispatch consumer did not close")
	}
	a.wg.Wait()
	stopHB()
	<-hbDone
	a.removeWorkerCgroup()
	a.log.Info("agent stopped")
	return nil
}

// pruneGitCache removes the git cache's mirrors unused for
// GitCacheMaxAge, at once and then periodically, until ctx ends.
func (a *Agent) pruneGitCache(ctx context.Context) {
	maxAge := a.cfg.GitCacheMaxAge
	if maxAge < 0 {
		return
	}
	tick := time.NewTicker(max(maxAge/24, time.Minute))
	defer tick.Stop()
	for {
		n, err := a.gitc.prune(time.Now().Add(-maxAge))
		if err != nil {
			a.log.Warn("git cache: prune", "err", err)
		}
		if n > 0 {
			a.log.Info("git cache: removed unused mirrors", "mirrors", n, "unused_for", maxAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// wait returns when ctx ends or, for a Once agent, when its job has ended
// and no assignment came for two heartbeat intervals: an assignment made
// before the server saw the agent draining is still taken.
func (a *Agent) wait(ctx context.Context) {
	if !a.cfg.Once {
		<-ctx.Done()
		return
	}
	grace := 2 * a.cfg.HeartbeatInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.idle:
		}
		t := time.NewTimer(grace)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		a.mu.Lock()
		done := len(a.running) == 0 && time.Since(a.lastTake) >= grace
		a.mu.Unlock()
		if done {
			a.log.Info("ephemeral worker: job done, exiting")
			return
		}
		// A job was just taken: look again after a grace (a job still
		// running signals idle again when it ends, and this is harmless).
		select {
		case a.idle <- struct{}{}:
		default:
		}
	}
}

// drainRunning waits, for up to cfg.DrainTimeout, for the running jobs to
// end; the heartbeats say the agent drains meanwhile.
func (a *Agent) drainRunning() {
	if a.cfg.DrainTimeout <= 0 || len(a.Running()) == 0 {
		return
	}
	a.Drain()
	a.log.Info("stopping: letting running jobs finish", "jobs", len(a.Running()), "drain_timeout", a.cfg.DrainTimeout)
	t := time.NewTimer(a.cfg.DrainTimeout)
	defer t.Stop()
	for len(a.Running()) > 0 {
		select {
		case <-t.C:
			a.log.Warn("drain timeout: handing back the jobs left", "jobs", len(a.Running()))
			return
		case <-a.ended:
		}
	}
}

// consumer creates (or finds) the agent's durable consumer on its dispatch
// subject, waiting for the server to have created the stream.
func (a *Agent) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:           "agent-" + a.cfg.ID,
		FilterSubject:     a.cfg.Subjects.Dispatch(a.cfg.ID),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           30 * time.Second,
		MaxAckPending:     1024,
		InactiveThreshold: time.Hour,
	}
	for n := 1; ; n++ {
		cons, err := a.js.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, cfg)
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dispatch consumer: %w", err)
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			a.log.Debug("waiting for dispatch stream", "err", err)
		} else {
			// Refused (a limit, permissions) or no answer: said, as the
			// agent takes no job until it has its consumer.
			a.log.Warn("dispatch consumer: trying again", "err", err, "attempt", n)
		}
		if err := retryBackoff.Wait(ctx, n); err != nil {
			return nil, fmt.Errorf("dispatch consumer: %w", err)
		}
	}
}

func (a *Agent) onDispatch(jobCtx context.Context, m jetstream.Msg) {
	var d bus.Dispatch
	if err := json.Unmarshal(m.Data(), &d); err != nil {
		a.log.Error("bad dispatch message", "err", err)
		_ = m.Term()
		return
	}
	if h := m.Headers(); h != nil {
		d.TraceParent = h.Get(bus.TraceParentHeader)
	}
	ref := bus.JobRef{JobID: d.JobID, Attempt: d.Attempt}
	switch d.Kind {
	case bus.KindAssign:
		if d.BootID != "" && d.BootID != a.bootID {
			// Made for a previous incarnation of this worker: the server
			// has lost that attempt (or will, at this incarnation's first
			// heartbeat). Running it could overlap its next attempt.
			a.log.Warn("refused an assignment made for a previous start of this agent", "job", d.JobID, "attempt", d.Attempt)
			_ = m.Ack()
			return
		}
		if a.stopping.Load() {
			a.log.Info("stopping: handing back an assignment", "job", d.JobID, "attempt", d.Attempt)
			_ = m.Ack()
			a.report(d, bus.StatusLost, -1, errHandBack.Error())
			return
		}
		a.mu.Lock()
		if _, dup := a.seen[ref]; dup {
			a.mu.Unlock()
			_ = m.Ack()
			return
		}
		a.rememberLocked(ref)
		ctx, cancel := context.WithCancelCause(jobCtx)
		a.running[ref] = &execution{cancel: cancel}
		a.lastTake = time.Now()
		a.wg.Add(1)
		a.mu.Unlock()
		_ = m.Ack()
		if a.cfg.Once {
			a.Drain()
		}
		go func() {
			defer a.wg.Done()
			defer cancel(nil)
			a.execute(ctx, d)
			a.mu.Lock()
			delete(a.running, ref)
			idle := len(a.running) == 0
			a.mu.Unlock()
			select {
			case a.ended <- struct{}{}:
			default:
			}
			if idle && a.cfg.Once {
				select {
				case a.idle <- struct{}{}:
				default:
				}
			}
		}()
	case bus.KindCancel:
		a.mu.Lock()
		for r, e := range a.running {
			if r.JobID == d.JobID && r.Attempt <= d.Attempt {
				e.cancel(errCanceled)
			}
		}
		// A cancel that overtakes its assignment keeps the job from starting.
		a.rememberLocked(ref)
		a.mu.Unlock()
		_ = m.Ack()
	default:
		a.log.Warn("unknown dispatch kind", "kind", d.Kind)
		_ = m.Term()
	}
}

// seenTTL bounds how long an assignment is remembered for de-duplication:
// far longer than JetStream's duplicate window and redelivery delay.
const seenTTL = 30 * time.Minute

// rememberLocked records an assignment as taken, forgetting old ones so that
// a long-lived agent's memory stays bounded.
func (a *Agent) rememberLocked(ref bus.JobRef) {
	now := time.Now()
	if now.Sub(a.lastPrune) > time.Minute {
		a.lastPrune = now
		for r, at := range a.seen {
			if now.Sub(at) > seenTTL {
				delete(a.seen, r)
			}
		}
	}
	a.seen[ref] = now
}

// execute runs one attempt of a job and reports how it ended.
func (a *Agent) execute(ctx context.Context, d bus.Dispatch) {
	log := a.log.With("run", d.RunID, "job", d.JobID, "attempt", d.Attempt)
	var spec pipeline.JobSpec
	if err := json.Unmarshal(d.Spec, &spec); err != nil {
		a.report(d, bus.StatusFailed, -1, fmt.Sprintf("bad job spec: %v", err))
		return
	}
	if err := a.openSecrets(&d); err != nil {
		a.report(d, bus.StatusFailed, -1, "secrets: "+err.Error())
		return
	}
	// The running status goes out without waiting for the stream's ack:
	// the attempt starts meanwhile. Its ack is awaited (and the status sent
	// again if it failed) before the final status, which must come after it.
	runMsg := a.statusMsg(d, bus.Status{State: bus.StatusRunning})
	f, err := a.js.PublishMsgAsync(runMsg)
	running := []pending{{msg: runMsg, f: f, err: err}}

	limit := d.MaxLogBytes
	if limit <= 0 {
		limit = a.cfg.MaxLogBytes
	}
	sink := newLogSink(a, d, limit, log)
	b := newBatcher(a.cfg.ChunkSize, a.cfg.FlushDelay, sink.emit)

	// Every form of every secret value is masked before output reaches the
	// batcher, that is before it leaves the agent.
	values := make([]string, 0, len(d.Secrets))
	for _, v := range d.Secrets {
		values = append(values, v)
	}
	masks := mask.New(values...)
	outputs := make(map[string]string)
	state, code, errMsg, usage := a.attempt(ctx, d, spec, b, masks, log, outputs)
	errMsg = masks.String(errMsg)
	b.Flush(-1)

	// Every chunk must be stored before the final status is sent.
	sink.close()
	a.confirm(running, log)
	st := bus.Status{State: state, ExitCode: code, Error: errMsg, PeakMemory: usage.PeakMemory, CPUTime: usage.CPUTime}
	if state == bus.StatusSucceeded {
		st.Outputs = pipeline.FillOutputs(spec.Outputs, outputs)
	}
	a.reportStatus(d, st)
}

// attempt runs the steps of one attempt in its cgroup, if the agent has
// cgroups, puts what its steps wrote to $HODEI_OUTPUT in outputs, and
// returns how it ended and what it used once every process it
// started is gone.
func (a *Agent) attempt(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec, b *batcher, masks *mask.Set, log *slog.Logger, outputs map[string]string) (state string, code int, errMsg string, usage cgroup.Stats) {
	if a.cfg.Exec != nil {
		state, code, errMsg = a.cfg.Exec(ctx, d, spec)
		return state, code, errMsg, usage
	}
	cg := a.newAttemptCgroup(d, spec, log)
	state, code, errMsg = a.runSteps(ctx, d, spec, b, masks, log, cg, outputs)
	// The attempt is over: nothing it started outlives it.
	usage = cg.end()
	return state, code, errMsg, usage
}

// openSecrets opens the sealed secrets of an assignment into d.Secrets.
func (a *Agent) openSecrets(d *bus.Dispatch) error {
	if d.SecretsError != "" {
		return errors.New(d.SecretsError)
	}
	if len(d.Sealed) == 0 {
		return nil
	}
	values, err := a.seal.Open(d.SealKey, sealed.Binding{Worker: a.cfg.ID, JobID: d.JobID, Attempt: d.Attempt}, d.Sealed)
	if err != nil {
		return err
	}
	d.Secrets = values
	return nil
}

func (a *Agent) runSteps(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec, b *batcher, masks *mask.Set, log *slog.Logger, cg *attemptCgroup, outputs map[string]string) (state string, code int, errMsg string) {
	// The workspace (0700) and, beside it, the attempt's private temporary
	// directory (the step's /tmp, with HOME in it).
	ws, err := os.MkdirTemp(a.cfg.WorkDir, d.JobID+"-"+strconv.Itoa(d.Attempt)+"-")
	if err != nil {
		return bus.StatusFailed, -1, fmt.Sprintf("workspace: %v", err)
	}
	tmp := ws + ".tmp"
	defer func() {
		if cg == nil {
			_ = os.Remove(ws + ".pgid")
		}
		for _, dir := range []string{ws, tmp} {
			if err := os.RemoveAll(dir); err != nil {
				log.Warn("remove workspace", "dir", dir, "err", err)
			}
		}
	}()
	for _, dir := range []string{tmp, filepath.Join(tmp, "home")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return bus.StatusFailed, -1, fmt.Sprintf("workspace: %v", err)
		}
	}
	isolated := !a.cfg.Unisolated && (spec.Image == "" || a.cfg.JobContainer != "")
	uid := -1
	if isolated && os.Geteuid() == 0 {
		uid = a.takeUID()
		defer a.releaseUID(uid)
		for _, p := range []string{ws, tmp, filepath.Join(tmp, "home")} {
			if err := os.Chown(p, uid, uid); err != nil {
				return bus.StatusFailed, -1, fmt.Sprintf("workspace: %v", err)
			}
		}
	}
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, fmt.Errorf("job %w after %s", errTimeout, spec.Timeout))
		defer cancel()
	}
	hodeiEnv := map[string]string{
		"CI":              "true",
		"HODEI":           "true",
		"HODEI_RUN_ID":    d.RunID,
		"HODEI_JOB_ID":    d.JobID,
		"HODEI_JOB_KEY":   spec.Key,
		"HODEI_ATTEMPT":   strconv.Itoa(d.Attempt),
		"HODEI_WORKSPACE": ws,
		"HODEI_WORKER":    a.cfg.ID,
	}
	// A step's environment is built from nothing but this, the pipeline,
	// Hodei and the job's secrets.
	base := map[string]string{"PATH": sandbox.DefaultPath, "HOME": "/tmp/home", "TMPDIR": "/tmp"}
	files := stepFiles{host: tmp, step: "/tmp", uid: uid}
	if !isolated {
		base["HOME"], base["TMPDIR"] = filepath.Join(tmp, "home"), tmp
		files.step = tmp
	}
	// runScript runs one script as a step does: in the sandbox, or as the
	// agent's user in its own process group, born in the attempt's cgroup.
	runScript := func(script string, env []string, timeout time.Duration, out io.Writer) stepResult {
		// A restarted agent finds what a step left by its attempt's
		// cgroup, or else by the process group written here
		// (cleanLeftovers).
		var onStart func(pgid int)
		if cg == nil {
			onStart = func(pgid int) {
				_ = os.WriteFile(ws+".pgid", []byte(strconv.Itoa(pgid)), 0o600)
			}
		}
		var res stepResult
		if isolated {
			res = runSandboxed(ctx, sandbox.Spec{
				Script: script, Workspace: ws, Tmp: tmp, Env: env,
				Hide: append([]string{a.cfg.WorkDir, a.cfg.GitCacheDir}, a.cfg.Hide...),
				UID:  uid, GID: uid,
			}, timeout, out, onStart, cg.group())
		} else {
			res = runStepTracked(ctx, script, ws, env, timeout, out, onStart, cg.group())
		}
		if cg.newOOMKills() && res.Err != nil {
			res.Err = cg.outOfMemory(res.Err)
		}
		return res
	}
	// The checkout's token is for the checkout only: the steps get it only
	// if the job names its secret.
	token, stepSecrets := splitCheckoutToken(spec, d.Secrets)
	d.Secrets = stepSecrets
	if c := spec.Checkout; c != nil && !c.Disabled && c.URL != "" {
		cenv := checkoutEnv(c, token)
		var prime func() (cacheResult, error)
		if !c.FetchTags { // the mirrors keep no tags
			prime = func() (cacheResult, error) { return a.gitc.prime(ctx, d.Tenant, c, token, ws, uid) }
		}
		if errMsg := checkout(ctx, c, runScript, func(cached bool) []string {
			cenv["HODEI_CHECKOUT_CACHED"] = "0"
			if cached {
				cenv["HODEI_CHECKOUT_CACHED"] = "1"
			}
			return mergeEnv(nil, base, envMap(a.cfg.BaseEnv), hodeiEnv, d.Env, spec.Env, cenv)
		}, prime, b, masks); errMsg != "" {
			if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
				return stopState(err), -1, err.Error()
			}
			return bus.StatusFailed, -1, errMsg
		}
	}
	// The artifacts of the jobs it needs and its caches come after the
	// checkout, as a job's own files; its artifacts and new caches are
	// kept once its steps have ended.
	roots := artifact.Roots{Workspace: ws, Home: homeOf(tmp)}
	var save []pendingCache
	if len(spec.Needs) > 0 || len(spec.Cache) > 0 {
		var err error
		if save, err = a.restore(ctx, d, spec, roots, uid, b); err != nil {
			return bus.StatusFailed, -1, err.Error()
		}
	}
	if spec.Artifacts != nil || len(save) > 0 {
		defer func() {
			state, code, errMsg = a.keep(ctx, d, spec, roots, save, b, state, code, errMsg)
		}()
	}
	switch {
	case spec.Image != "" && a.cfg.JobContainer == "":
		return a.runContainerSteps(ctx, d, spec, ws, hodeiEnv, b, masks, log, outputs)
	case spec.Image != "":
		// This agent runs in the job's container: its steps run here.
		if errMsg := a.otherContainer(&spec); errMsg != "" {
			return bus.StatusFailed, -1, errMsg
		}
		if errMsg := a.awaitServices(ctx, spec, b, masks); errMsg != "" {
			if cause := context.Cause(ctx); ctx.Err() != nil {
				return stopState(cause), -1, cause.Error()
			}
			return bus.StatusFailed, -1, errMsg
		}
	}
	env := jobEnv{start: layer(base, envMap(a.cfg.BaseEnv), hodeiEnv, d.Env), secrets: d.Secrets, dispatch: d, outputs: outputs}
	return a.runStepList(ctx, spec, files, env, b, masks, func(ctx context.Context, i int, st pipeline.StepSpec, script string, env []string, out io.Writer) stepResult {
		return runScript(script, env, st.Timeout, out)
	})
}

// jobEnv is the environment of a job's steps: start is what the job
// starts with (Hodei's and the agent's variables); the job's and steps'
// env values expand $VAR from it; secrets come last.
type jobEnv struct {
	start   map[string]string
	secrets map[string]string
	// dispatch is the assignment (for the steps' spans).
	dispatch bus.Dispatch
	// outputs receives what the steps write to $HODEI_OUTPUT (nil: not
	// kept).
	outputs map[string]string
}

// layer merges maps, later ones winning.
func layer(ms ...map[string]string) map[string]string {
	out := make(map[string]string)
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// stepRunner runs one step's script (see stepFiles.script) with env,
// writing its output to out.
type stepRunner func(ctx context.Context, i int, st pipeline.StepSpec, script string, env []string, out io.Writer) stepResult

// runStepList runs the steps of an attempt in order. A step runs when its
// `if` holds (by default when no step before it failed; always() and
// failure() steps run after a failure, for cleanup); a failed step with
// continue-on-error does not count as a failure. What a step appends to
// $HODEI_ENV is in the environment of the steps after it. The attempt
// ends as its first failed step did; a cancellation or timeout of the job
// ends it at once.
func (a *Agent) runStepList(ctx context.Context, spec pipeline.JobSpec, files stepFiles, env jobEnv, b *batcher, masks *mask.Set, run stepRunner) (string, int, string) {
	// The outputs of the needs are values, not templates: never expanded.
	env.start = layer(env.start, spec.NeedsOutputs)
	jobVars := expandEnv(spec.Env, env.start)
	added := map[string]string{}
	failed := false
	var state, errMsg string
	code := 0
	fail := func(st string, c int, msg string) {
		if !failed {
			failed, state, code, errMsg = true, st, c, msg
		}
	}
	n := len(spec.Steps)
	for i, st := range spec.Steps {
		b.Flush(i)
		if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
			return stopState(err), -1, err.Error()
		}
		name := st.Name
		if name == "" {
			name = "step " + strconv.Itoa(i+1)
		}
		runs, err := pipeline.StepRuns(st, failed)
		if err != nil || !runs {
			_, _ = io.WriteString(b, stepHeader(i, n, st, masks))
			cond := st.If
			if cond == "" {
				cond = pipeline.Success
			}
			how := "skipped (if " + masks.String(string(cond)) + " is false)"
			if err != nil {
				how = steplog.Stopped(masks.String("if: " + err.Error()))
				fail(bus.StatusFailed, -1, fmt.Sprintf("%s: if: %v", name, err))
			}
			_, _ = io.WriteString(b, steplog.Footer(i, n, how, 0))
			continue
		}
		script, done, err := files.script(i, st)
		if err == nil {
			err = files.resetEnv()
		}
		if err != nil {
			fail(bus.StatusFailed, -1, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		cur := layer(env.start, jobVars, added)
		stepVars := expandEnv(st.Env, cur)
		// Secrets come last: a job gets the secrets it names even if an
		// inherited env sets the same names.
		vars := mergeEnv(nil, cur, stepVars, map[string]string{"HODEI_ENV": files.envPath(), "HODEI_OUTPUT": files.outputPath()}, env.secrets)
		_, _ = io.WriteString(b, stepHeader(i, n, st, masks))
		ends := &lineEnds{w: b}
		out := mask.NewWriter(ends, masks)
		started := time.Now()
		res := run(ctx, i, st, script, vars, out)
		done()
		// The step's output is drained: what the masker held back (the
		// start of a possible secret) can go now.
		_ = out.Flush()
		ends.close()
		if res.Err == nil {
			more, err := files.readEnv()
			if err != nil {
				res = stepResult{ExitCode: -1, Err: err}
			}
			maps.Copy(added, more)
		}
		if res.Err == nil {
			outs, err := files.readOutput()
			if err != nil {
				res = stepResult{ExitCode: -1, Err: err}
			}
			if env.outputs != nil {
				maps.Copy(env.outputs, outs)
			}
		}
		_, _ = io.WriteString(b, stepFooter(i, n, res.ExitCode, res.Err, time.Since(started), masks))
		traceStep(env.dispatch, i, st, started, res.ExitCode, res.Err, masks)
		if res.Err == nil {
			continue
		}
		if ctx.Err() != nil {
			return stopState(res.Err), res.ExitCode, fmt.Sprintf("%s: %v", name, res.Err)
		}
		if st.ContinueOnError {
			_, _ = io.WriteString(b, fmt.Sprintf("step %d/%d failed with continue-on-error: the job goes on\n", i+1, n))
			continue
		}
		fail(stopState(res.Err), res.ExitCode, fmt.Sprintf("%s: %v", name, res.Err))
	}
	if failed {
		return state, code, errMsg
	}
	if err := checkOutputs(spec.Outputs, env.outputs, masks); err != nil {
		_, _ = io.WriteString(b, "hodei: "+err.Error()+"\n")
		return bus.StatusFailed, -1, err.Error()
	}
	return bus.StatusSucceeded, 0, ""
}

// checkOutputs checks the outputs of a job whose steps succeeded: only
// declared names, within pipeline.MaxOutputBytes, and no value that holds
// a secret (secrets never pass through outputs: the jobs that read them
// did not ask for the secret).
func checkOutputs(declared []string, got map[string]string, masks *mask.Set) error {
	if err := pipeline.CheckOutputs(declared, got); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if v := got[k]; masks.String(v) != v {
			return fmt.Errorf("outputs: %s holds a secret of the job; secrets never pass through outputs (give the job that needs it the secret instead)", k)
		}
	}
	return nil
}

// envMap turns KEY=VALUE entries into a map.
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// takeUID picks a step uid from the configured range that no running
// attempt of this agent holds. Uids are drawn at random so that agents on
// one machine seldom share one; isolation between jobs does not rest on
// it (each step has its own namespaces and sees only its own workspace).
func (a *Agent) takeUID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.cfg.StepUIDs
	var n [8]byte
	for {
		_, _ = rand.Read(n[:])
		uid := r.First + int(binary.LittleEndian.Uint64(n[:])%uint64(r.Count))
		if !a.uids[uid] || len(a.uids) >= r.Count {
			a.uids[uid] = true
			return uid
		}
	}
}

func (a *Agent) releaseUID(uid int) {
	a.mu.Lock()
	delete(a.uids, uid)
	a.mu.Unlock()
}

func stopState(err error) string {
	if errors.Is(err, errCanceled) {
		return bus.StatusCanceled
	}
	if errors.Is(err, errHandBack) {
		return bus.StatusLost
	}
	if errors.Is(err, errFenced) {
		return bus.StatusFenced
	}
	return bus.StatusFailed
}

type pending struct {
	msg *nats.Msg
	f   jetstream.PubAckFuture
	err error
}

// confirm waits for the acks of published chunks and republishes, one at a
// time, those that failed; the stream de-duplicates by message id.
func (a *Agent) confirm(ps []pending, log *slog.Logger) {
	for _, p := range ps {
		ok := p.err == nil
		if ok {
			select {
			case <-p.f.Ok():
			case err := <-p.f.Err():
				log.Debug("log chunk not acked", "err", err)
				ok = false
			}
		}
		if !ok {
			a.publishRetry(p.msg, log)
		}
	}
}

// publishRetryFor bounds how long publishRetry tries: long enough for the
// server to come back from a restart or an upgrade (its agents keep running
// their jobs meanwhile, and report when it is back); a server that learns of
// the attempt no other way gives it up as lost.
const publishRetryFor = 10 * time.Minute

// stopGrace is how long publishRetry still tries once Run has handed back
// what it ran: a stopping agent does not wait minutes for a server that is
// away (the server then finds its attempts lost).
const stopGrace = 10 * time.Second

// asyncAckWait is how long an async publish of the agent waits for its
// acknowledgement before confirm publishes it again.
const asyncAckWait = 10 * time.Second

// retryBackoff spaces the tries of the agent's calls to the server.
var retryBackoff = backoff.Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second}

// publishRetry publishes msg until the stream acks it, for up to
// publishRetryFor, or stopGrace once the agent is stopping its jobs. It
// tries at least once, even past stopGrace.
func (a *Agent) publishRetry(msg *nats.Msg, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(a.retries, publishRetryFor)
	defer cancel()
	for n := 1; ; n++ {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := a.js.PublishMsg(pctx, msg)
		pcancel()
		if err == nil {
			return true
		}
		if ctx.Err() == nil {
			log.Warn("publish failed; retrying", "subject", msg.Subject, "err", err)
		}
		if retryBackoff.Wait(ctx, n) != nil {
			log.Error("publish failed; giving up", "subject", msg.Subject, "err", err)
			return false
		}
	}
}

func (a *Agent) report(d bus.Dispatch, state string, code int, errMsg string) {
	a.reportStatus(d, bus.Status{State: state, ExitCode: code, Error: errMsg})
}

// reportStatus sends st (its state, exit code, error and usage) for the
// attempt d.
func (a *Agent) reportStatus(d bus.Dispatch, st bus.Status) {
	a.publishRetry(a.statusMsg(d, st), a.log.With("job", d.JobID))
}

// statusMsg is the message that reports st for the attempt d.
func (a *Agent) statusMsg(d bus.Dispatch, st bus.Status) *nats.Msg {
	st.Error = capError(st.Error)
	st.WorkerID, st.JobID, st.Attempt, st.At = a.cfg.ID, d.JobID, d.Attempt, time.Now().UTC()
	data, _ := json.Marshal(st)
	msg := nats.NewMsg(a.cfg.Subjects.Status(a.cfg.ID))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, st.MsgID())
	return msg
}

func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	host, _ := os.Hostname()
	for {
		hb := bus.Heartbeat{
			WorkerID: a.cfg.ID,
			BootID:   a.bootID,
			Pool:     a.cfg.Pool,
			Hostname: host,
			Labels:   a.cfg.Labels,
			CPUMilli: a.cfg.CPUMilli,
			Memory:   a.cfg.Memory,
			GPU:      a.cfg.GPU,
			Running:  a.Running(),
			Draining: a.draining.Load() || a.stopping.Load(),
			Once:     a.cfg.Once,
			SealKey:  a.seal.Public(),
			Load1:    load1(),
			MemUsed:  memUsed(),
			At:       time.Now().UTC(),
			Interval: a.cfg.HeartbeatInterval.Seconds(),
		}
		data, _ := json.Marshal(hb)
		if err := a.nc.Publish(a.cfg.Subjects.Heartbeat(a.cfg.ID), data); err != nil {
			a.log.Debug("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.hbNow:
		}
	}
}

// Running lists the attempts the agent is running now.
func (a *Agent) Running() []bus.JobRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]bus.JobRef, 0, len(a.running))
	for r := range a.running {
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].JobID < out[k].JobID })
	return out
}

// cleanLeftovers kills the process groups of steps that a previous run of
// this agent left behind when it was killed, and removes their workspaces.
// The work dir belongs to this agent alone.
func (a *Agent) cleanLeftovers() {
	a.removeLeftoverContainers()
	a.cleanLeftoverCgroups()
	entries, err := os.ReadDir(a.cfg.WorkDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(a.cfg.WorkDir, e.Name())
		if strings.HasSuffix(e.Name(), ".pgid") {
			if b, err := os.ReadFile(p); err == nil {
				if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
					a.log.Warn("killed steps left by a previous run", "pgid", pgid)
				}
			}
		}
		if err := os.RemoveAll(p); err != nil {
			a.log.Warn("remove leftover workspace", "path", p, "err", err)
		}
	}
}
