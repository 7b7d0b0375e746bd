// Package api serves Hodei's REST API under /api/v1, with /healthz, /readyz
// and /metrics beside it.
//
// Endpoints:
//
//	POST /api/v1/runs                     submit a pipeline (YAML body, or JSON {file, pipeline, tenant})
//	GET  /api/v1/runs                     list runs, newest first (?state= &tenant= &limit= &before=)
//	GET  /api/v1/runs/{id}                a run with its jobs
//	GET  /api/v1/runs/{id}/jobs           the jobs of a run, with their attempts
//	GET  /api/v1/runs/{id}/jobs/{job}     one job, by id or key
//	GET  /api/v1/runs/{id}/logs           output as text (?job=), or live as SSE (?follow=1)
//	POST /api/v1/runs/{id}/cancel         cancel a run
//	POST /api/v1/runs/{id}/jobs/{job}/approve  approve a job that waits for an approval ({"comment"} optional)
//	POST /api/v1/runs/{id}/jobs/{job}/reject   reject it
//	POST /api/v1/runs/{id}/rerun          run a run again (its file, inputs and trigger; failed_only)
//	GET  /api/v1/permissions              which actions the caller may do (?run=ID: on that run)
//	GET  /api/v1/workers                  the workers the orchestrator knows
//	GET  /api/v1/pools                    the worker pools and their providers
//	GET  /api/v1/pools/{pool}/history     a pool's recent demand, workers, forecast and cost
//	GET  /api/v1/leader                   which server leads (several servers on one store)
//	/api/v1/repos, /api/v1/hooks          repositories and their webhooks (repos.go)
//
// Every error is JSON {"code", "message"} (see package wire for the codes).
package api

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/store"
)

// Orchestrator is what the API asks of the orchestrator: an
// *orchestrator.Orchestrator, or with several servers the server's view of
// the leader's (which forwards what a follower cannot answer itself).
type Orchestrator interface {
	Cancel(ctx context.Context, runID string) error
	View() *orchestrator.View
	Outlook(ctx context.Context, jobIDs []string) (map[string]orchestrator.Outlook, error)
	Ping(ctx context.Context) error
	Hub() *hub.Hub
	Decide(ctx context.Context, runID, jobID string, d orchestrator.Decision) (store.Job, error)
}

// Submission is a pipeline file to run, as the API received it.
type Submission struct {
	File   string
	Data   []byte
	Tenant string
	Inputs map[string]string
	// Includes are the files the pipeline includes, by name (nil: none
	// given).
	Includes map[string][]byte
	// Key is the request's Idempotency-Key ("" when none).
	Key string
}

// Deps are what the API serves from.
type Deps struct {
	Orch     Orchestrator
	Store    store.Store
	Hub      *hub.Hub
	Registry *prometheus.Registry
	// Submit parses, validates, expands and submits a pipeline file; a
	// pipeline.ErrorList error means the file is invalid.
	Submit func(ctx context.Context, sub Submission) (store.Run, error)
	// Rerun makes a new run of a run's file, inputs and trigger (only its
	// failed jobs and their dependents with failedOnly; see
	// server.Server.Rerun); key is the request's idempotency key ("" for
	// none).
	Rerun func(ctx context.Context, id string, failedOnly bool, key string) (store.Run, error)
	// Leader says which server leads (GET /api/v1/leader); nil: this one,
	// alone.
	Leader func(ctx context.Context) (wire.Leader, error)
	// FollowResync, when positive, makes live log streams read the store
	// again at that period besides following the hub: with several
	// servers, the notes of the leader reach this one over NATS, which
	// may drop some.
	FollowResync time.Duration
	Logger       *slog.Logger

	// Security (see auth.go); with Auth nil the API is open. Authz nil
	// means the embedded default policies; Audit nil, no audit trail;
	// Tokens nil, no /api/v1/tokens.
	Auth  auth.Authenticator
	Authz authz.Authorizer
	Audit *audit.Log
	// AuditPolicy is how much of each request the trail keeps
	// (audit.DefaultPolicy when nil).
	AuditPolicy    *audit.Policy
	Tokens         *auth.Tokens
	ProtectMetrics bool // /metrics needs credentials too

	// Secrets serves /api/v1/secrets (see secrets.go); nil answers 404.
	Secrets *secrets.Service

	// Artifacts holds the content of artifacts; nil answers 404 for it.
	Artifacts artifact.Blobs

	// Pools serves /api/v1/pools (see pools.go); nil lists no pools.
	Pools PoolLister

	// Repos serves /api/v1/repos and the webhooks of /api/v1/hooks (see
	// repos.go); nil answers 404.
	Repos *repos.Service

	// MaxPipelineBytes is the largest pipeline file a submission may
	// carry (MaxBody when zero); the server's --max-pipeline-bytes.
	MaxPipelineBytes int
	// Limits are the timeouts and the rate limit of failed
	// authentications (limits.go); serve the handler with
	// Limits.HTTPServer.
	Limits Limits
}

// MaxBody is the largest pipeline file accepted by default (1 MiB,
// pipeline.DefaultMaxFileBytes).
const MaxBody = pipeline.DefaultMaxFileBytes

// maxPipeline is the largest pipeline file accepted.
func (a *api) maxPipeline() int {
	if a.d.MaxPipelineBytes > 0 {
		return a.d.MaxPipelineBytes
	}
	return MaxBody
}

// submitBodyLimit bounds the body of a submission: the file itself, or
// the file escaped in JSON (at most 6 bytes per byte, \u00XX) with room
// for the other fields. Authorization peeks at a JSON body within the
// same bound as the handler reads it.
func (a *api) submitBodyLimit(isJSON bool) int64 {
	if isJSON {
		return 6*int64(a.maxPipeline()) + 64<<10
	}
	return int64(a.maxPipeline())
}

// heartbeat is the period of SSE ping comments.
const heartbeat = 15 * time.Second

type api struct {
	d         Deps
	log       *slog.Logger
	hub       *hub.Hub
	heartbeat time.Duration
	limits    Limits
	fails     *failLimiter // nil: no limit
	roles     []string     // the roles the policies know; nil: unknown (any name)
	// auditPolicy is Deps.AuditPolicy or the default.
	auditPolicy audit.Policy
	runs        *runCache

	// stopping ends live streams when an http.Server serving this handler
	// shuts down, so that they do not hold the shutdown up.
	stopping context.Context
	stop     context.CancelFunc
	watched  sync.Map // *http.Server -> struct{}
}

// New returns the API's handler.
func New(d Deps) http.Handler {
	a := &api{d: d, log: d.Logger, hub: d.Hub, heartbeat: heartbeat, limits: d.Limits.WithDefaults(), runs: newRunCache()}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = capLogger(a.log)
	a.fails = newFailLimiter(a.limits)
	if a.hub == nil && d.Orch != nil {
		a.hub = d.Orch.Hub()
	}
	a.stopping, a.stop = context.WithCancel(context.Background())

	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if d.Store != nil {
		if err := reg.Register(newRunsCollector(d.Store)); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				a.log.Warn("register hodei_runs collector", "err", err)
			}
		}
	}

	if d.Audit != nil {
		for _, c := range []prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hodei_audit_dropped_total",
				Help: "Audit records dropped because the audit queue was full (each drop is logged and noted in the trail)."},
				func() float64 { return float64(d.Audit.Dropped()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hodei_audit_queue",
				Help: "Audit records waiting to be written."},
				func() float64 { return float64(d.Audit.Queued()) }),
		} {
			if err := reg.Register(c); err != nil {
				if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
					a.log.Warn("register audit metrics", "err", err)
				}
			}
		}
	}

	mux := http.NewServeMux()
	route(mux, "/api/v1/runs", map[string]http.HandlerFunc{"POST": a.submit, "GET": a.listRuns})
	route(mux, "/api/v1/runs/{id}", map[string]http.HandlerFunc{"GET": a.getRun})
	route(mux, "/api/v1/runs/{id}/jobs", map[string]http.HandlerFunc{"GET": a.listJobs})
	route(mux, "/api/v1/runs/{id}/jobs/{job}", map[string]http.HandlerFunc{"GET": a.getJob})
	route(mux, "/api/v1/runs/{id}/logs", map[string]http.HandlerFunc{"GET": a.logs})
	route(mux, "/api/v1/runs/{id}/artifacts", map[string]http.HandlerFunc{"GET": a.runArtifacts})
	route(mux, "/api/v1/runs/{id}/artifacts/{job}/{name}", map[string]http.HandlerFunc{"GET": a.artifactContent})
	route(mux, "/api/v1/runs/{id}/cancel", map[string]http.HandlerFunc{"POST": a.cancel})
	route(mux, "/api/v1/runs/{id}/rerun", map[string]http.HandlerFunc{"POST": a.rerun})
	route(mux, "/api/v1/runs/{id}/jobs/{job}/approve", map[string]http.HandlerFunc{"POST": a.approve})
	route(mux, "/api/v1/runs/{id}/jobs/{job}/reject", map[string]http.HandlerFunc{"POST": a.reject})
	route(mux, "/api/v1/permissions", map[string]http.HandlerFunc{"GET": a.permissions})
	route(mux, "/api/v1/workers", map[string]http.HandlerFunc{"GET": a.workers})
	route(mux, "/api/v1/pools", map[string]http.HandlerFunc{"GET": a.pools})
	route(mux, "/api/v1/pools/{pool}/history", map[string]http.HandlerFunc{"GET": a.poolHistory})
	route(mux, "/api/v1/leader", map[string]http.HandlerFunc{"GET": a.leader})
	a.repoRoutes(mux)
	route(mux, "/healthz", map[string]http.HandlerFunc{"GET": a.healthz})
	route(mux, "/readyz", map[string]http.HandlerFunc{"GET": a.readyz})
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	route(mux, "/metrics", map[string]http.HandlerFunc{"GET": metrics.ServeHTTP})
	a.securityRoutes(mux)
	a.secretRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, wire.CodeNotFound, "no such endpoint: "+r.URL.Path)
	})
	return a.middleware(a.secure(mux))
}

// route registers a handler per method for a path, and answers other methods
// with a JSON 405.
func route(mux *http.ServeMux, path string, handlers map[string]http.HandlerFunc) {
	var allow []string
	for m, h := range handlers {
		mux.HandleFunc(m+" "+path, h)
		allow = append(allow, m)
		if m == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	sort.Strings(allow)
	allowed := strings.Join(allow, ", ")
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowed)
		writeError(w, wire.CodeMethod,
			"method "+r.Method+" is not allowed on "+r.URL.Path+" (allowed: "+allowed+")")
	})
}

// streamContext is the context of a long response: it ends with the request
// or when the server shuts down.
func (a *api) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		if _, loaded := a.watched.LoadOrStore(srv, struct{}{}); !loaded {
			srv.RegisterOnShutdown(a.stop)
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(a.stopping, cancel)
	return ctx, func() { stop(); cancel() }
}
