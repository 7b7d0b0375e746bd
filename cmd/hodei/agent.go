package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

func agentCmd(args []string) int {
	fs := flags("agent", "[flags]", `
Start a worker on this machine. It connects to the NATS server of a Hodei
server (see "hodei server --nats-listen"), declares its capacity and labels,
and runs the jobs it is given until SIGINT or SIGTERM.

Example:
  hodei agent --nats nats://ci.example.com:4222 --labels docker,ssd --cpu 8 --memory 16Gi`)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "URL of the server's NATS, or the comma-separated URLs of a NATS cluster's servers (the agent moves to another when one goes)")
	id := fs.String("id", "", "worker id, unique in the fleet (default HOSTNAME-RANDOM)")
	labels := fs.String("labels", "", "comma-separated labels jobs can ask for, added to the OS and architecture")
	cpu := fs.String("cpu", "", "CPU capacity, like 2, 0.5 or 500m (default: the machine's cores)")
	memory := fs.String("memory", "", "memory capacity, like 4Gi or 512Mi (default: the machine's)")
	gpu := fs.Int("gpu", 0, "GPUs the worker offers")
	workDir := fs.String("work-dir", "", "directory of job workspaces (default: in the temporary directory)")
	gitCache := fs.String("git-cache", "", "directory of the object cache of the repositories jobs check out, one mirror per tenant and URL, hidden from steps (default: in the temporary directory)")
	gitCacheAge := fs.Duration("git-cache-max-age", agent.DefaultGitCacheMaxAge, "remove a mirror of the git cache that no job has used for this long (0 keeps them all)")
	fenceAfter := fs.Duration("fence-after", agent.DefaultFenceAfter, "stop the running attempts once the NATS connection has been away this long; keep it below the server's --worker-ttl (0 never stops them)")
	pool := fs.String("pool", "default", "pool the worker belongs to")
	hb := fs.Duration("heartbeat", time.Second, "period of heartbeats")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM, how long running jobs may finish (no new ones are taken) before they are handed back to the server (requeued, not failed)")
	once := fs.Bool("once", false, "take one job, then exit (an ephemeral worker)")
	unsafeShared := fs.Bool("unsafe-shared-user", false, "run steps as the agent's own user, without isolation: a job can then read and write all the agent can (for machines that cannot isolate steps; see docs/security.md)")
	var hide listFlag
	fs.Var(&hide, "hide", "a directory steps must not see (repeatable; the work dir and the directories of the TLS files always are)")
	dockerMode := fs.String("docker", "auto", `jobs with an image: "auto" runs them if a Docker engine answers (DOCKER_HOST or /var/run/docker.sock), "off" refuses them`)
	noCgroups := fs.Bool("no-cgroups", false, "run attempts without a cgroup each (no cpu/memory limits, no usage; steps stopped by process group only)")
	jobContainer := fs.String("job-container", "", "the agent runs in the container of the jobs with this container key (a Kubernetes worker pod made for them): their steps run here, after their services (sidecars) answer on their ports; set by the Kubernetes provider")
	containerNet := fs.String("container-network", "", `network of job containers that ask for one (network: true); default: the engine's`)
	tf := addTLSFlags(fs, "the agent's certificate (\"hodei ca issue agent ID\"); its id is the default --id",
		"CA of the server's certificate (with --tls-cert and --tls-key: mutual TLS)")
	lf := addLogFlags(fs, "info")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	cfg := agent.Config{ID: *id, Pool: *pool, WorkDir: *workDir, GitCacheDir: *gitCache, GitCacheMaxAge: zeroDisables(*gitCacheAge), FenceAfter: zeroDisables(*fenceAfter), HeartbeatInterval: *hb, Once: *once, ContainerNetwork: *containerNet, JobContainer: *jobContainer, Unisolated: *unsafeShared, NoCgroups: *noCgroups}
	var tlsDirs []string
	for _, f := range []string{*tf.cert, *tf.key, *tf.ca} {
		if f != "" {
			tlsDirs = append(tlsDirs, filepath.Dir(f))
		}
	}
	for _, h := range append(hide, tlsDirs...) {
		abs, err := filepath.Abs(h)
		if err != nil {
			return usageError(fs, "--hide %s: %v", h, err)
		}
		cfg.Hide = append(cfg.Hide, abs)
	}
	tlsCfg, err := tf.agentTLS()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if tlsCfg != nil {
		// The certificate names the agent: NATS gives it the subjects of
		// that id only.
		kind, name, err := certIdentity(*tf.cert)
		if err != nil {
			return usageError(fs, "--tls-cert: %v", err)
		}
		if kind != "agent" {
			return usageError(fs, "--tls-cert: a %s certificate; want an agent's (\"hodei ca issue agent ID\")", kind)
		}
		if cfg.ID != "" && cfg.ID != name {
			return usageError(fs, "--id %q differs from the id in the certificate (%q)", cfg.ID, name)
		}
		cfg.ID = name
	}
	if cfg.ID == "" {
		cfg.ID = defaultWorkerID()
	}
	if !bus.ValidToken(cfg.ID) {
		return usageError(fs, "--id %q: use letters, digits, - and _ only", cfg.ID)
	}
	if *labels != "" {
		cfg.Labels = agent.DefaultLabels()
		for _, l := range strings.Split(*labels, ",") {
			if l = strings.TrimSpace(l); l != "" {
				cfg.Labels = append(cfg.Labels, l)
			}
		}
	}
	if *cpu != "" {
		if cfg.CPUMilli, err = pipeline.ParseCPU(*cpu); err != nil {
			return usageError(fs, "--cpu: %v", err)
		}
	}
	if *memory != "" {
		if cfg.Memory, err = pipeline.ParseMemory(*memory); err != nil {
			return usageError(fs, "--memory: %v", err)
		}
	}
	if *gpu < 0 {
		return usageError(fs, "--gpu must be 0 or more")
	}
	cfg.GPU = *gpu
	if *hb <= 0 {
		return usageError(fs, "--heartbeat must be positive")
	}
	if *drain < 0 {
		return usageError(fs, "--drain-timeout must be 0 or more")
	}
	cfg.DrainTimeout = *drain
	log, err := lf.logger()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	cfg.Logger = log
	switch *dockerMode {
	case "off":
	case "auto":
		// An agent that reaches a Docker engine runs jobs with an image
		// (and gets the label "docker"); one that does not still runs the
		// others.
		if d, err := dockerengine.Detect(context.Background(), 3*time.Second); err == nil {
			defer d.Close()
			cfg.Containers = d
			log.Info("docker engine found: jobs with an image run in containers", "host", d.Host())
		} else {
			log.Debug("no docker engine: jobs with an image are refused", "err", err)
		}
	default:
		return usageError(fs, "--docker %q: want auto or off", *dockerMode)
	}

	natsOpts := bus.AgentOptions(cfg.ID)
	if tlsCfg != nil {
		natsOpts = append(natsOpts, nats.Secure(tlsCfg))
	}
	nc, err := bus.Connect(*natsURL, "hodei-agent "+cfg.ID, natsOpts...)
	if err != nil {
		return fail("agent", fmt.Errorf("connect to %s: %w", *natsURL, err))
	}
	defer nc.Close()
	a, err := agent.New(nc, cfg)
	if err != nil {
		return fail("agent", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer startTracing(ctx, "hodei-agent", log)()
	// SIGUSR1 drains the agent: it takes no new jobs (the worker manager
	// sends it before terminating an idle worker).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			a.Drain()
		}
	}()
	log.Info("hodei agent started", "id", a.ID(), "nats", *natsURL, "pool", *pool)
	if err := a.Run(ctx); err != nil {
		return fail("agent", err)
	}
	log.Info("hodei agent stopped", "id", a.ID())
	return exitOK
}

// defaultWorkerID is the host name (as a subject token) and a random
// suffix.
func defaultWorkerID() string {
	host, _ := os.Hostname()
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		b = []byte("agent")
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	return string(b) + "-" + hex.EncodeToString(r[:])
}

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// zeroDisables turns a flag's 0 ("none", "no bound", "keep them all")
// into the negative of the configs whose 0 is their default.
func zeroDisables[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
