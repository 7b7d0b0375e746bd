// Package server assembles a Hodei server: the bus (embedded NATS JetStream
// or an external NATS), the store (SQLite, or PostgreSQL with
// Options.Store), the orchestrator, the local worker pool and the HTTP API.
// `hodei server`, `hodei run` and `hodei bench` all start one, so they share
// every line of the path a job takes.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/scheduler"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres"
	"github.com/hodei-ci/hodei/internal/store/sqlite"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Options configure a server.
type Options struct {
	// DataDir holds the SQLite database and the embedded JetStream store.
	DataDir string
	// Store chooses the database: "" or "sqlite" for the SQLite file in
	// DataDir, or the postgres:// URL of a PostgreSQL database (see
	// internal/store/postgres).
	Store string
	// NATSURL connects to an external NATS, a comma-separated list of the
	// URLs of a cluster's servers (the connection moves to another when
	// one goes); empty runs one embedded.
	NATSURL string
	// NATSReplicas is how many servers of the external NATS cluster keep
	// each stream and the artifacts' bucket (0 means 1; more than 1 needs
	// NATSURL: the embedded server is alone).
	NATSReplicas int
	// NATSListen is the address the embedded NATS listens on for remote
	// agents ("127.0.0.1:4222"); "" listens on a random loopback port;
	// "none" accepts in-process connections only.
	NATSListen string
	// HTTPAddr is the API address; empty serves no HTTP.
	HTTPAddr string
	// PublicURL is the server's address as people and forges reach it
	// (commit statuses link to runs under it); "" takes the API's own
	// address.
	PublicURL string
	// LocalWorkers is the number of agents run inside this process.
	LocalWorkers int
	// WorkerCPUMilli and WorkerMemory are the capacity of each local agent;
	// zero splits the machine evenly between them.
	WorkerCPUMilli int64
	WorkerMemory   int64
	WorkerLabels   []string
	// WorkDir holds job workspaces of local agents (DataDir/work by default).
	WorkDir           string
	WorkerTTL         time.Duration
	HeartbeatInterval time.Duration
	// WaitForAgents keeps a queued job that no worker and no pool could
	// run waiting (it says why) when agents may connect over NATS; by
	// default it fails at once, once agents have had WorkerTTL since the
	// start to join (see orchestrator.Config.FailUnrunnable).
	WaitForAgents bool
	// DrainTimeout is how long Close lets the jobs of local agents finish
	// before it hands them back (see agent.Config.DrainTimeout).
	DrainTimeout time.Duration
	// InfraRetries: see orchestrator.Config.InfraRetries (0: the default,
	// 2; negative: none).
	InfraRetries int
	// MaxActiveRuns: see orchestrator.Config.MaxActiveRuns (0: the
	// default, 10,000; negative: no bound).
	MaxActiveRuns int
	// SchedulerAging is how long a priority level waits without a worker
	// before it ranks one level higher (one minute when zero).
	SchedulerAging time.Duration
	Logger         *slog.Logger
	// Security turns on authentication, authorization and audit of the API.
	Security SecurityOptions
	// Secrets and transport security (see secrets.go).
	Secrets SecretsOptions
	// NATSTLS turns on mutual TLS and per-agent permissions on the embedded
	// NATS: a server configuration with ClientCAs (pki.ServerTLS).
	NATSTLS *tls.Config
	// NATSClientTLS is the client configuration of the connections to an
	// external NATS (pki.ClientTLS with a server certificate).
	NATSClientTLS *tls.Config
	// HTTPTLS serves the API over TLS.
	HTTPTLS *tls.Config
	// UIClientID is the OIDC client the web UI signs people in with (a
	// public client whose redirect URIs hold https://HOST/ui/callback); the
	// first OIDC audience if empty.
	UIClientID string
	// UISessionTTL is the longest a web UI session lasts
	// (web.DefaultSessionTTL if zero).
	UISessionTTL time.Duration
	// APILimits are the API's timeouts and its rate limit of failed
	// authentications (zero: api.DefaultLimits).
	APILimits api.Limits
	// Pools, when set, starts the worker manager for these pools (see
	// internal/workers); Scaler replaces its default decisions and
	// PoolInterval its period (1s). An *autoscale.Scaler keeps its demand
	// history in DataDir/autoscale.json across restarts and exports its
	// cost accounts as metrics. Providers makes the workers of the pools
	// (required with Pools): `hodei server` registers local, docker and
	// kubernetes.
	Pools *poolsfile.Config
	// PoolHistoryStep is how often the worker manager keeps a point of
	// each pool's history (workers.DefaultHistoryStep when zero).
	PoolHistoryStep time.Duration
	Providers       *workers.Registry
	Scaler          workers.Scaler
	PoolInterval    time.Duration
	// AgentCA signs a certificate for each agent the worker manager starts,
	// for a NATS that requires mutual TLS (NATSTLS with client CAs).
	AgentCA *pki.CA
	// Docker is "off" to keep local workers from running jobs with an
	// image; by default they do if a Docker engine answers.
	Docker string
	// ContainerNetwork is the network of job containers that ask for one.
	ContainerNetwork string
	// Limits bound each submitted pipeline: its jobs after matrix
	// expansion and the size of its file (pipeline.DefaultMaxJobs and
	// DefaultMaxFileBytes when zero).
	Limits pipeline.Limits
	// MaxLogBytes is the most output of one attempt of a job that its
	// worker keeps, local or remote (agent.DefaultMaxLogBytes when zero).
	MaxLogBytes int64
	// NoCgroups runs the attempts of the server's local workers without a
	// cgroup each (see agent.Config.NoCgroups).
	NoCgroups bool
	// UnsafeSharedUser runs the steps of local workers as the server's own
	// user, without a sandbox (--unsafe-shared-user): any job can then
	// read and write the data directory. Without it, Start fails on a
	// machine where steps cannot be isolated (see internal/sandbox).
	UnsafeSharedUser bool
	// Ephemeral says that DataDir is thrown away when the server closes
	// (`hodei run`): its database is then never fsynced (see
	// sqlite.Options.NoSync). The same code runs either way.
	Ephemeral bool
	// Artifacts bound the artifacts and caches kept (see artifact.Limits).
	Artifacts artifact.Limits
	// CronTick is how often the schedules of the repositories' pipeline
	// files are looked at (repos.DefaultCronTick when zero); negative
	// starts no loop: the caller drives Server.Cron with its Tick (tests).
	// CronNow is the schedules' clock (time.Now when nil).
	CronTick time.Duration
	CronNow  func() time.Time
	// ReplicaID names this server among the servers sharing its
	// PostgreSQL store (host, pid and a random suffix when empty).
	ReplicaID string
	// ArtifactsStore is where they are kept: "" (or "jetstream") for
	// JetStream's object store, or an S3 location (s3blobs.Open).
	ArtifactsStore string
}

// Server is a running Hodei server.
type Server struct {
	Orch     *orchestrator.Orchestrator
	Store    store.Store
	Hub      *hub.Hub
	Registry *prometheus.Registry
	NATSURL  string // where remote agents connect ("" if in-process only)

	opts     Options
	log      *slog.Logger
	embedded *bus.Embedded
	nc       *nats.Conn
	httpLn   net.Listener // taken, not served yet
	httpSrv  *http.Server
	httpAddr string
	agents   []*agent.Agent
	agentCtx context.CancelFunc
	agentWG  sync.WaitGroup
	closed   sync.Once
	sec      *security
	// Secrets serves the secrets API; secretsRT runs the sealer and the
	// rotator.
	Secrets   *secrets.Service
	secretsRT *secretsRuntime
	// Repos serves repositories and their webhooks (repos.go).
	Repos     *repos.Service
	reposStop func()
	// Cron makes the runs of the repositories' schedules; it runs beside
	// the orchestrator's loop (see Options.CronTick).
	Cron *repos.Cron
	// Workers is the worker manager of the pools (nil without pools).
	Workers *workers.Manager
	// pools is the worker manager the orchestrator asks about its pools
	// (set once it has started).
	pools  atomic.Pointer[workers.Manager]
	scaler *savedScaler // nil unless Options.Scaler is an *autoscale.Scaler
	docker *dockerengine.Docker
	// Artifacts serves the agents' artifacts and caches.
	Artifacts     *artifact.Service
	stopArtifacts func()
	// rep is the leadership among the servers sharing a PostgreSQL store
	// (replicas.go); nil on SQLite, where Orch is this server's own.
	rep         *replication
	orchMetrics *orchestrator.Metrics
	poolsMu     sync.Mutex // Workers, with several servers (replicas.go)
}

// Start brings a server up and returns when it is ready. It takes its ports
// first, so that a port in use fails it before it has written anything (a
// new local admin token is written and handed out last, once every part has
// started).
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.DataDir == "" {
		return nil, errors.New("server: data dir is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NATSReplicas < 0 || o.NATSReplicas > bus.MaxReplicas {
		return nil, fmt.Errorf("server: nats replicas: want 1 to %d, got %d", bus.MaxReplicas, o.NATSReplicas)
	}
	if o.NATSReplicas > 1 && o.NATSURL == "" {
		return nil, fmt.Errorf("server: %d nats replicas need an external NATS cluster: the embedded server keeps one copy", o.NATSReplicas)
	}
	if o.LocalWorkers > 0 && !o.UnsafeSharedUser {
		// Before anything starts: a server whose workers cannot isolate
		// steps does not start (agent.New would refuse them anyway).
		if err := agent.CheckIsolation(); err != nil {
			return nil, fmt.Errorf("server: local workers: %w", err)
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	// The data directory (keys, tokens, database, audit log) is the
	// server's alone, whatever umask or older version created it.
	if err := os.Chmod(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	s := &Server{opts: o, log: o.Logger, Hub: hub.New(), Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.HTTPAddr != "" {
		if err := s.listenHTTP(); err != nil {
			return nil, err
		}
	}

	if o.NATSURL == "" {
		eo := bus.EmbeddedOptions{StoreDir: filepath.Join(o.DataDir, "nats"), TLS: o.NATSTLS}
		switch o.NATSListen {
		case "none":
			eo.Port = -1
		case "":
			eo.Port = 0
		default:
			host, port, err := net.SplitHostPort(o.NATSListen)
			if err != nil {
				return nil, fmt.Errorf("server: nats listen %q: %w", o.NATSListen, err)
			}
			eo.Host = host
			if eo.Port, err = strconv.Atoi(port); err != nil {
				return nil, fmt.Errorf("server: nats listen port %q: %w", port, err)
			}
		}
		if s.embedded, err = bus.StartEmbedded(eo); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if eo.Port != -1 {
			s.NATSURL = s.embedded.ClientURL()
		}
		if s.nc, err = s.embedded.Connect("hodei-server"); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	} else {
		s.NATSURL = o.NATSURL
		if s.nc, err = bus.Connect(o.NATSURL, "hodei-server", s.natsTLS()...); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}

	if err := s.startSecurity(); err != nil {
		return nil, err
	}

	st, err := openStore(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.Store = st
	if err := s.startSecrets(); err != nil {
		return nil, err
	}

	if err := s.startArtifacts(ctx); err != nil {
		return nil, err
	}

	s.orchMetrics = orchestrator.NewMetrics(s.Registry)
	s.detectContainers()
	if pg, ok := st.(*postgres.Store); ok {
		// Several servers may share the database: the leader among
		// them runs the orchestrator and the worker manager.
		if err := s.startReplication(pg); err != nil {
			return nil, err
		}
		s.rep.waitLeader(ctx, 10*time.Second)
	} else {
		if s.Orch, err = orchestrator.New(s.orchConfig()); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if err := s.Orch.Start(ctx); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	s.startRepos()
	if err := s.startAgents(); err != nil {
		return nil, err
	}
	if s.rep == nil {
		if err := s.startPools(); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if err := s.publishAdminToken(); err != nil {
		return nil, err
	}
	if o.HTTPAddr != "" {
		s.serveHTTP()
	}
	return s, nil
}

// orchConfig is the configuration of this server's orchestrator.
func (s *Server) orchConfig() orchestrator.Config {
	o := s.opts
	// Remote agents may connect: over an external NATS, or through the
	// embedded one's port. Those of before a restart get a WorkerTTL to
	// come back before a job is judged unrunnable.
	agentsMayJoin := o.NATSURL != "" || o.NATSListen != "none"
	var joinGrace time.Duration
	if agentsMayJoin {
		joinGrace = cmp.Or(o.WorkerTTL, 5*time.Second)
	}
	return orchestrator.Config{
		Seal:      s.secretsRT.sealer.Seal,
		Store:     s.Store,
		NC:        s.nc,
		Replicas:  o.NATSReplicas,
		Hub:       s.Hub,
		WorkerTTL: o.WorkerTTL,
		// Local agents die with this process: after a restart, what
		// they ran is lost at once.
		InProcess: s.localAgentIDs(),
		// A job that no worker and no pool could ever run fails at
		// once, unless agents may connect and the server is told to
		// wait for them.
		FailUnrunnable: !(agentsMayJoin && o.WaitForAgents),
		JoinGrace:      joinGrace,
		Pools:          s.schedulerPools,
		InfraRetries:   o.InfraRetries,
		MaxActiveRuns:  o.MaxActiveRuns,
		Aging:          o.SchedulerAging,
		Metrics:        s.orchMetrics,
		Logger:         o.Logger,
		// Every assignment carries the limit, so that remote agents
		// apply the server's.
		MaxLogBytes: cmp.Or(o.MaxLogBytes, agent.DefaultMaxLogBytes),
	}
}

// schedulerPools is orchestrator.Config.Pools: the pools of the worker
// manager, not known until it has started.
func (s *Server) schedulerPools() ([]scheduler.Pool, bool) {
	if s.opts.Pools == nil {
		return nil, true
	}
	m := s.pools.Load()
	if m == nil {
		return nil, false
	}
	return m.SchedulerPools(), true
}

// control is what the API and the repositories ask of the orchestrator:
// this server's own, or with several servers the leader's.
func (s *Server) control() interface {
	api.Orchestrator
	repos.Submitter
} {
	if s.rep != nil {
		return s.rep
	}
	return s.Orch
}

func (s *Server) startAgents() error {
	o := s.opts
	n := o.LocalWorkers
	if n <= 0 {
		return nil
	}
	cpu, mem := o.WorkerCPUMilli, o.WorkerMemory
	if cpu == 0 {
		cpu = max(int64(runtime.NumCPU())*1000/int64(n), 1000)
	}
	if mem == 0 {
		mem = max(agent.MachineMemory()/int64(n), 1<<30)
	}
	workDir := o.WorkDir
	if workDir == "" {
		workDir = filepath.Join(o.DataDir, "work")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.agentCtx = cancel
	for i, id := range s.localAgentIDs() {
		i++
		nc, err := s.agentConn(id)
		if err != nil {
			return fmt.Errorf("server: local agent: %w", err)
		}
		a, err := agent.New(nc, agent.Config{
			ID:                id,
			Pool:              "local",
			Labels:            append(agent.DefaultLabels(), append([]string{"local"}, o.WorkerLabels...)...),
			CPUMilli:          cpu,
			Memory:            mem,
			WorkDir:           filepath.Join(workDir, strconv.Itoa(i)),
			GitCacheDir:       filepath.Join(o.DataDir, "git-cache", strconv.Itoa(i)),
			HeartbeatInterval: o.HeartbeatInterval,
			DrainTimeout:      o.DrainTimeout,
			Logger:            s.log,
			Containers:        s.containerRuntime(),
			ContainerNetwork:  o.ContainerNetwork,
			NoCgroups:         o.NoCgroups,
			Unisolated:        o.UnsafeSharedUser,
			Hide:              s.hidden(),
		})
		if err != nil {
			nc.Close()
			return fmt.Errorf("server: local agent: %w", err)
		}
		s.agents = append(s.agents, a)
		s.agentWG.Add(1)
		go func() {
			defer s.agentWG.Done()
			defer nc.Close()
			if err := a.Run(ctx); err != nil {
				s.log.Error("local agent stopped", "worker", a.ID(), "err", err)
			}
		}()
	}
	return nil
}

// localAgentIDs are the ids of the agents run inside this process:
// HOST-local-1, HOST-local-2...
func (s *Server) localAgentIDs() []string {
	host, _ := os.Hostname()
	host = sanitizeToken(host)
	ids := make([]string, 0, max(s.opts.LocalWorkers, 0))
	for i := 1; i <= s.opts.LocalWorkers; i++ {
		ids = append(ids, fmt.Sprintf("%s-local-%d", host, i))
	}
	return ids
}

// hidden lists the directories the steps of local workers must not see:
// the data directory and the work directory (when it is elsewhere).
func (s *Server) hidden() []string {
	var out []string
	for _, d := range []string{s.opts.DataDir, s.opts.WorkDir} {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil {
			out = append(out, abs)
		}
	}
	return out
}

// sanitizeToken makes a host name usable in a subject token.
func sanitizeToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "host"
	}
	return string(b)
}

// Submit is SubmitRun of a file without inputs.
func (s *Server) Submit(ctx context.Context, file string, data []byte, tenant string) (store.Run, error) {
	return s.SubmitRun(ctx, RunRequest{File: file, Data: data, Tenant: tenant})
}

// RunRequest is a pipeline file to run and what the run is given with it.
type RunRequest struct {
	File   string // the name used in messages
	Data   []byte
	Tenant string
	// Inputs are values for the pipeline's inputs (hodei submit --input).
	Inputs map[string]string
	// Includes are the files the pipeline includes, by name
	// (pipeline.Pipeline.Includes); nil when it includes none.
	Includes map[string][]byte
	// Key is the submission's idempotency key ("" for none).
	Key string
}

// SubmitRun parses and validates a pipeline file and the inputs given for
// it, expands it, then stores it as a new run (a manual one: hodei.event is
// "manual"). A pipeline.ErrorList error means the file is invalid; a
// pipeline.InputErrors one that the inputs are.
//
// With several servers, a follower forwards the request to the leader,
// with an idempotency key (the request's, else a new one) so that a resend
// makes no second run.
func (s *Server) SubmitRun(ctx context.Context, req RunRequest) (store.Run, error) {
	sr, err := s.prepare(req)
	if err != nil {
		return store.Run{}, err
	}
	if s.rep == nil {
		return s.Orch.Submit(ctx, sr)
	}
	if o := s.rep.current(); o != nil {
		return o.Submit(ctx, sr)
	}
	if req.Key == "" {
		req.Key = "forwarded-" + newReplicaID()
	}
	rep, err := s.rep.forward(ctx, "submit", controlSubmit{File: req.File, Data: req.Data, Tenant: req.Tenant, Inputs: req.Inputs, Includes: req.Includes, Key: req.Key})
	if err != nil {
		return store.Run{}, err
	}
	if rep.Run == nil {
		return store.Run{}, errors.New("leader's answer to a submission has no run")
	}
	return *rep.Run, nil
}

// submitHere is SubmitRun on the leader, for a forwarded submission.
func (s *Server) submitHere(ctx context.Context, req RunRequest) (store.Run, error) {
	sr, err := s.prepare(req)
	if err != nil {
		return store.Run{}, err
	}
	o := s.rep.current()
	if o == nil {
		return store.Run{}, orchestrator.ErrNotLeader
	}
	return o.Submit(ctx, sr)
}

// prepare parses, validates and expands a pipeline file to run.
func (s *Server) prepare(req RunRequest) (orchestrator.SubmitRequest, error) {
	p, specs, inputs, err := s.expand(req.File, req.Data, req.Includes, req.Inputs, pipeline.RunContext{Event: pipeline.EventManual})
	if err != nil {
		return orchestrator.SubmitRequest{}, err
	}
	return orchestrator.SubmitRequest{Pipeline: p, Jobs: specs, Source: req.Data, Tenant: req.Tenant, Inputs: inputs, Key: req.Key}, nil
}

// expand parses file (data, and the files it includes by name; nil for
// none), resolves the inputs given to the run and expands its jobs for rc
// with those inputs. It returns the pipeline as the run sees it (its name
// and concurrency group may read the inputs), the jobs and the inputs.
func (s *Server) expand(file string, data []byte, includes map[string][]byte, given map[string]string, rc pipeline.RunContext) (*pipeline.Pipeline, []pipeline.JobSpec, map[string]string, error) {
	var load pipeline.Loader
	if includes != nil {
		load = pipeline.MapLoader(includes)
	}
	p, err := pipeline.ParseWith(file, data, s.opts.Limits, load)
	if err != nil {
		return nil, nil, nil, err
	}
	inputs, err := pipeline.ResolveInputs(p, given)
	if err != nil {
		return nil, nil, nil, err
	}
	rc.Inputs = inputs
	specs, err := pipeline.ExpandRun(p, rc)
	if err != nil {
		return nil, nil, nil, err
	}
	if p, err = p.ForRun(rc); err != nil {
		return nil, nil, nil, err
	}
	return p, specs, inputs, nil
}

// WaitForWorkers returns once n workers have joined, or ctx ends.
func (s *Server) WaitForWorkers(ctx context.Context, n int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		ready := 0
		for _, w := range s.control().View().Workers {
			if w.State.Serving() {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d workers (%d ready): %w", n, ready, ctx.Err())
		case <-t.C:
		}
	}
}

// HTTPAddr is the address the API listens on.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Close stops the API, the local agents, the orchestrator, the bus and the
// store, in that order. The local agents drain first (Options.DrainTimeout):
// they take no new job, let those running finish, and hand back the rest,
// while the orchestrator still runs to requeue them.
func (s *Server) Close() {
	s.closed.Do(func() {
		if s.httpLn != nil {
			_ = s.httpLn.Close()
		}
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				_ = s.httpSrv.Close() // long-lived responses that did not end in time
			}
			cancel()
		}
		s.closeSecurity()
		s.closeRepos()
		s.poolsMu.Lock()
		s.closePools()
		s.Workers = nil
		s.poolsMu.Unlock()
		if s.agentCtx != nil {
			s.agentCtx()
			s.agentWG.Wait()
			o := s.Orch
			if o == nil && s.rep != nil {
				o = s.rep.current()
			}
			if o != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := o.Settle(ctx); err != nil && !errors.Is(err, orchestrator.ErrStopped) {
					s.log.Warn("local agents' last reports not applied before stopping", "err", err)
				}
				cancel()
			}
		}
		if s.Orch != nil {
			s.Orch.Stop()
		}
		if s.rep != nil {
			s.rep.close()
		}
		// After the orchestrator: it seals the secrets of what it places
		// while the local agents drain.
		s.closeSecrets()
		if s.stopArtifacts != nil {
			s.stopArtifacts()
		}
		if s.nc != nil {
			_ = s.nc.Drain()
		}
		if s.embedded != nil {
			s.embedded.Shutdown()
		}
		if s.Store != nil {
			_ = s.Store.Close()
		}
		if s.docker != nil {
			s.docker.Close()
		}
	})
}

// openStore opens the store that o.Store names (see Options.Store).
func openStore(ctx context.Context, o Options) (store.Store, error) {
	switch {
	case o.Store == "" || o.Store == "sqlite":
	case postgres.IsURL(o.Store):
		return postgres.Open(ctx, o.Store)
	default:
		return nil, fmt.Errorf("store %q: want sqlite or a postgres:// URL", o.Store)
	}
	path := filepath.Join(o.DataDir, "hodei.db")
	st, err := sqlite.OpenWith(path, sqlite.Options{NoSync: o.Ephemeral})
	if err != nil {
		return nil, err
	}
	// The database holds every tenant's runs and logs: owner only (the
	// driver creates its files with the umask).
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = st.Close()
			return nil, err
		}
	}
	return st, nil
}
