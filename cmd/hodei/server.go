package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/store/postgres"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

func serverCmd(args []string) int {
	fs := flags("server", "[flags]", `
Start a Hodei server: the HTTP API, the orchestrator that schedules jobs, a
SQLite database and (unless --nats names one) an embedded NATS server that
remote agents connect to. --workers agents run inside the server, so it
runs jobs on its own. It runs until SIGINT or SIGTERM.

Example:
  hodei server --data-dir /var/lib/hodei --http 0.0.0.0:8080 --workers 4`)
	dataDir := fs.String("data-dir", "./hodei-data", "directory of the SQLite database and of the embedded NATS store")
	storeFlag := fs.String("store", "sqlite", `database: "sqlite" (a file in --data-dir) or the URL of a PostgreSQL database, postgres://USER@HOST:PORT/DB (password from PGPASSWORD or ~/.pgpass; see docs/architecture.md#postgresql)`)
	httpAddr := fs.String("http", "127.0.0.1:8080", `address of the HTTP API and of the web UI at / ("" for none)`)
	uiClientID := fs.String("ui-oidc-client-id", "", "OIDC client the web UI signs people in with: a public client whose redirect URIs hold https://HOST/ui/callback (default: the first --oidc-audience)")
	uiSessionTTL := fs.Duration("ui-session-ttl", 8*time.Hour, "longest a web UI session lasts (an OIDC session ends earlier, with its access token)")
	publicURL := fs.String("public-url", "", "the server's address as people and forges reach it (commit statuses link to runs under it); default: the API's address")
	natsURL := fs.String("nats", "", "URL of an external NATS server, or the comma-separated URLs of a cluster's servers, nats://a:4222,nats://b:4222,nats://c:4222 (default: run one embedded); several servers on one PostgreSQL --store need one")
	natsReplicas := fs.Int("nats-replicas", 1, "with --nats: how many servers of the NATS cluster keep each stream and the artifacts' bucket (1 to 5; existing ones are updated to it)")
	replicaID := fs.String("replica-id", "", "with a PostgreSQL --store: this server's name among the servers sharing it (default: host, pid and a random suffix)")
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", `address where the embedded NATS accepts agents ("none": local workers only)`)
	localWorkers := fs.Int("workers", 2, "number of agents running inside the server (0 for none)")
	noCgroups := fs.Bool("no-cgroups", false, "run the attempts of local workers without a cgroup each (no cpu/memory limits, no usage)")
	unsafeShared := fs.Bool("unsafe-shared-user", false, "run the steps of local workers as the server's own user, without isolation: any job can then read and write the data directory (for machines that cannot isolate steps; see docs/security.md)")
	ttl := fs.Duration("worker-ttl", 15*time.Second, "how long a worker may stay silent before its jobs go back to the queue")
	waitAgents := fs.Bool("wait-for-agents", false, "keep a job that no worker and no pool could run queued, waiting for an agent to join over NATS, instead of failing it at once")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM, how long the local workers' running jobs may finish before they are handed back (requeued, not failed)")
	maxActive := fs.Int("max-active-runs", orchestrator.DefaultMaxActiveRuns, "most runs of one tenant that have not ended; past it its submissions are refused (429 too_many_requests), so that no tenant can fill the server with queued work (0: no bound)")
	infra := fs.Int("infra-retries", 2, "new attempts a job gets when attempts are lost to infrastructure (worker lost or restarted, server restarted), without using its retry budget; a job's infra_retries overrides it")
	poolsFile := fs.String("pools", "", "YAML file of worker pools that the server keeps provisioned (see docs/workers.md)")
	agentCADir := fs.String("agent-ca-dir", "", `with --pools and --ca: directory of the CA ("hodei ca init") that signs a certificate for each agent the worker manager starts`)
	autoscaleMode := fs.String("autoscale", "predictive", "with --pools: reactive (queue and idle time), or predictive (also forecasts each pool's demand; reactive while it learns)")
	asQuantile := fs.Float64("autoscale-quantile", 0.7, "predictive: share of the forecast's peaks that the idle workers kept cover")
	lim := addLimitFlags(fs)
	artJob := fs.String("artifacts-max-job-bytes", "2Gi", "most bytes of artifacts and caches one attempt of a job stores")
	artTenant := fs.String("artifacts-max-tenant-bytes", "20Gi", "most bytes of artifacts and caches one tenant stores")
	artStore := fs.String("artifacts-store", "jetstream", "where artifacts and caches are kept: jetstream (the NATS object store), or s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=1] with the AWS SDK's credentials")
	sec := addSecurityFlags(fs)
	apiLimits := addAPILimitFlags(fs)
	tf := addTLSFlags(fs, "certificate of the API and of the embedded NATS (\"hodei ca issue server\")",
		"CA of the agents' certificates: with it, the embedded NATS requires mutual TLS and confines each agent to its own subjects")
	sb := addSecretsBackendFlags(fs)
	lf := addLogFlags(fs, "info")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	if *storeFlag != "" && *storeFlag != "sqlite" && !postgres.IsURL(*storeFlag) {
		return usageError(fs, "--store %q: want sqlite or a postgres:// URL", *storeFlag)
	}
	if *localWorkers < 0 || *ttl <= 0 {
		return usageError(fs, "--workers must be 0 or more, and --worker-ttl positive")
	}
	if *drain < 0 {
		return usageError(fs, "--drain-timeout must be 0 or more, got %s", *drain)
	}
	if *natsReplicas < 1 || *natsReplicas > bus.MaxReplicas {
		return usageError(fs, "--nats-replicas must be from 1 to %d, got %d", bus.MaxReplicas, *natsReplicas)
	}
	if *natsReplicas > 1 && *natsURL == "" {
		return usageError(fs, "--nats-replicas %d needs --nats (an external NATS cluster): the embedded NATS keeps one copy", *natsReplicas)
	}
	if *infra < 0 || *infra > 10 {
		return usageError(fs, "--infra-retries must be from 0 to 10, got %d", *infra)
	}
	if *maxActive < 0 {
		return usageError(fs, "--max-active-runs must be 0 (no bound) or more, got %d", *maxActive)
	}
	log, err := lf.logger()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	limits, maxLog, err := lim.values()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	artLimits, err := artifactLimits(*artJob, *artTenant)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	secOpts, err := sec.options(*httpAddr)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	httpLimits, err := apiLimits.limits()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	tlsOpts, err := tf.serverOptions(*natsURL != "")
	if err != nil {
		return usageError(fs, "%v", err)
	}
	var scaler workers.Scaler
	switch *autoscaleMode {
	case "reactive", "predictive":
		if *asQuantile <= 0 || *asQuantile > 1 {
			return usageError(fs, "--autoscale-quantile must be in (0, 1]")
		}
		scaler = autoscale.New(autoscale.Options{Predictive: *autoscaleMode == "predictive", Quantile: *asQuantile})
	default:
		return usageError(fs, "--autoscale %q: want reactive or predictive", *autoscaleMode)
	}
	var agentCA *pki.CA
	if *agentCADir != "" {
		if tlsOpts.nats == nil && tlsOpts.natsClient == nil {
			return usageError(fs, "--agent-ca-dir needs NATS with mutual TLS (--tls-cert, --tls-key and --ca)")
		}
		if agentCA, err = pki.Load(*agentCADir); err != nil {
			return usageError(fs, "--agent-ca-dir: %v", err)
		}
	}
	var poolCfg *poolsfile.Config
	if *poolsFile != "" {
		if poolCfg, err = poolsfile.LoadConfig(*poolsFile); err != nil {
			fmt.Fprintf(os.Stderr, "hodei server: --pools: %v\n", err)
			return exitUsage
		}
	}
	if poolCfg != nil {
		natsTLS := (tlsOpts.nats != nil || tlsOpts.natsClient != nil) && agentCA == nil
		if err := setLocalPoolMode(poolCfg, *natsURL == "" && *natsListen == "none", natsTLS, log); err != nil {
			fmt.Fprintf(os.Stderr, "hodei server: --pools: %v\n", err)
			return exitUsage
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer startTracing(ctx, "hodei-server", log)()
	secretsOpts, err := sb.options(ctx)
	if err != nil {
		return fail("server", fmt.Errorf("secrets backend: %w", err))
	}
	srv, err := server.Start(ctx, server.Options{
		DataDir:          *dataDir,
		Store:            *storeFlag,
		NATSURL:          *natsURL,
		NATSReplicas:     *natsReplicas,
		NATSListen:       *natsListen,
		HTTPAddr:         *httpAddr,
		PublicURL:        *publicURL,
		LocalWorkers:     *localWorkers,
		WorkerTTL:        *ttl,
		WaitForAgents:    *waitAgents,
		DrainTimeout:     *drain,
		InfraRetries:     zeroDisables(*infra),
		MaxActiveRuns:    zeroDisables(*maxActive),
		Logger:           log,
		Security:         secOpts,
		Secrets:          secretsOpts,
		HTTPTLS:          tlsOpts.http,
		UIClientID:       *uiClientID,
		UISessionTTL:     *uiSessionTTL,
		APILimits:        httpLimits,
		NATSTLS:          tlsOpts.nats,
		NATSClientTLS:    tlsOpts.natsClient,
		Pools:            poolCfg,
		Providers:        providers(),
		Scaler:           scaler,
		AgentCA:          agentCA,
		Limits:           limits,
		MaxLogBytes:      maxLog,
		Artifacts:        artLimits,
		ArtifactsStore:   *artStore,
		NoCgroups:        *noCgroups,
		UnsafeSharedUser: *unsafeShared,
		ReplicaID:        *replicaID,
	})
	if err != nil {
		return fail("server", err)
	}
	storeKind := "sqlite"
	if postgres.IsURL(*storeFlag) {
		storeKind = "postgres" // not the URL: it may hold a password
	}
	attrs := []any{"data_dir", *dataDir, "store", storeKind, "local_workers", *localWorkers}
	if a := srv.HTTPAddr(); a != "" {
		scheme := "http://"
		if tlsOpts.http != nil {
			scheme = "https://"
		}
		attrs = append(attrs, "api", scheme+a)
	}
	if srv.NATSURL != "" {
		attrs = append(attrs, "nats", srv.NATSURL)
	}
	log.Info("hodei server ready", attrs...)
	if before, after, err := server.TrimMemory(); err != nil {
		log.Debug("memory left as it is after start", "err", err)
	} else {
		log.Debug("memory trimmed after start", "executable_resident_before", before, "executable_resident_after", after)
	}
	go server.IdleTrim{Log: log}.Run(ctx, server.ResidentBytes())
	<-ctx.Done()
	log.Info("shutting down: draining local workers", "drain_timeout", *drain)
	srv.Close()
	fmt.Fprintln(os.Stderr, "hodei server: stopped")
	return exitOK
}

// setLocalPoolMode gives the local pools that name no mode theirs: process
// (`hodei agent` processes, which connect to the server's NATS over TCP
// without a certificate), or inprocess when the NATS accepts no TCP
// connection or requires TLS. There, a pool that asks for processes is an
// error.
func setLocalPoolMode(cfg *poolsfile.Config, inProcessNATS, natsTLS bool, log *slog.Logger) error {
	why := ""
	switch {
	case inProcessNATS:
		why = "--nats-listen none"
	case natsTLS:
		why = "TLS on NATS and no --agent-ca-dir to issue agent certificates"
	}
	if why == "" {
		cfg.SetLocalMode(poolsfile.LocalModeProcess)
		return nil
	}
	if bad := cfg.SetLocalMode(poolsfile.LocalModeInProcess); len(bad) > 0 {
		return fmt.Errorf("local pools %s ask for agent processes (local.mode: %s), impossible with %s: use local.mode: %s",
			strings.Join(bad, ", "), poolsfile.LocalModeProcess, why, poolsfile.LocalModeInProcess)
	}
	for _, p := range cfg.Pools {
		if p.Provider == "local" {
			log.Info("local pools run their agents inside the server", "reason", why)
			break
		}
	}
	return nil
}

// limitFlags are the limits a server puts on each pipeline and job.
type limitFlags struct {
	jobs          *int
	pipelineBytes *string
	logBytes      *string
}

func addLimitFlags(fs *flag.FlagSet) limitFlags {
	return limitFlags{
		jobs:          fs.Int("max-jobs", pipeline.DefaultMaxJobs, "most jobs in one pipeline, matrix combinations counted"),
		pipelineBytes: fs.String("max-pipeline-bytes", "1Mi", "largest pipeline file accepted (API body and CLI read), like 1Mi or 512Ki"),
		logBytes:      fs.String("max-log-bytes", "100Mi", "most output kept per attempt of a job; past it the log says where it was cut, and the steps go on"),
	}
}

func (l limitFlags) values() (pipeline.Limits, int64, error) {
	if *l.jobs < 1 {
		return pipeline.Limits{}, 0, fmt.Errorf("--max-jobs must be at least 1, got %d", *l.jobs)
	}
	pb, err := pipeline.ParseMemory(*l.pipelineBytes)
	if err != nil || pb > 1<<30 {
		return pipeline.Limits{}, 0, fmt.Errorf("--max-pipeline-bytes: want a size from 1 to 1Gi, like 1Mi, got %q", *l.pipelineBytes)
	}
	lb, err := pipeline.ParseMemory(*l.logBytes)
	if err != nil {
		return pipeline.Limits{}, 0, fmt.Errorf("--max-log-bytes: want a size like 100Mi or 1Gi, got %q", *l.logBytes)
	}
	return pipeline.Limits{MaxJobs: *l.jobs, MaxFileBytes: int(pb)}, lb, nil
}

// artifactLimits reads the sizes of --artifacts-max-job-bytes and
// --artifacts-max-tenant-bytes.
func artifactLimits(job, tenant string) (artifact.Limits, error) {
	j, err := pipeline.ParseMemory(job)
	if err != nil || j <= 0 {
		return artifact.Limits{}, fmt.Errorf("--artifacts-max-job-bytes: want a size like 2Gi, got %q", job)
	}
	t, err := pipeline.ParseMemory(tenant)
	if err != nil || t <= 0 {
		return artifact.Limits{}, fmt.Errorf("--artifacts-max-tenant-bytes: want a size like 20Gi, got %q", tenant)
	}
	return artifact.Limits{MaxJobBytes: j, MaxTenantBytes: t}, nil
}
