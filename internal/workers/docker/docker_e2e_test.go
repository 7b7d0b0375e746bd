//go:build docker

package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/containerstest"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/steplog"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/docker"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// jobContainers lists the containers of a job.
func jobContainers(t *testing.T, d *dockerengine.Docker, jobID string) []string {
	t.Helper()
	ids, err := d.ListLabelled(context.Background(), containers.LabelJob, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestDockerImageJob runs jobs with an image on a local agent that reaches
// the engine: the steps run in a container with the job's limits and no
// network (unless asked), their output is stored, and the container is gone
// afterwards.
func TestDockerImageJob(t *testing.T) {
	d := containerstest.Docker(t)
	s := startServer(t, "", 1, func(o *server.Options) { o.ContainerNetwork = "host" })
	if w := s.Orch.View().Workers[0]; !strings.Contains(strings.Join(w.Labels, ","), "docker") {
		t.Fatalf("an agent that reaches docker has labels %v, want docker among them", w.Labels)
	}
	img := containerstest.Image()
	run := workerstest.Submit(t, s, `name: img
jobs:
  probe:
    image: `+img+`
    runs-on: {cpu: 500m, memory: 96Mi}
    env: {GREETING: hello}
    steps:
      - run: |
          echo "memory $(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
          echo "cpu $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
          echo "interfaces $(ls /sys/class/net | tr '\n' ' ')"
          echo "pwd $PWD workspace $HODEI_WORKSPACE $GREETING"
          echo made > file.txt
      - name: second
        run: cat file.txt; echo to stderr >&2
  online:
    image: `+img+`
    network: true
    steps:
      - run: echo "interfaces $(ls /sys/class/net | tr '\n' ' ')"
  failing:
    image: `+img+`
    steps:
      - run: echo before; exit 3
`)
	r, jobs := workerstest.WaitRun(t, s, run.ID, 60*time.Second)
	if r.State != state.RunFailed || jobs["probe"].State != state.JobSucceeded || jobs["online"].State != state.JobSucceeded || jobs["failing"].State != state.JobFailed {
		t.Fatalf("run %s; jobs %+v", r.State, jobs)
	}
	out := workerstest.LogsOf(t, s, jobs["probe"].ID)
	for _, want := range []string{"memory 100663296\n", "cpu 50000", "interfaces lo \n", "made\nto stderr\n", " hello\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "pwd /") || strings.Contains(out, "pwd / ") {
		t.Errorf("the workspace is not the working directory:\n%s", out)
	}
	if online := workerstest.LogsOf(t, s, jobs["online"].ID); !strings.Contains(online, "\ninterfaces ") || strings.Contains(online, "\ninterfaces lo \n") {
		t.Errorf("network: true gave no network: %q", online)
	}
	failingLog := steplog.Header(0, 1, "echo before; exit 3") + "before\n" + steplog.Footer(0, 1, steplog.Exited(3), 0)
	if f := jobs["failing"]; f.ExitCode != 3 || !strings.Contains(f.Error, "exit status 3") || steplog.ZeroDurations(workerstest.LogsOf(t, s, f.ID)) != failingLog {
		t.Errorf("failing job: exit %d, error %q, output %q", f.ExitCode, f.Error, workerstest.LogsOf(t, s, f.ID))
	}
	for _, j := range jobs {
		if ids := jobContainers(t, d, j.ID); len(ids) != 0 {
			t.Errorf("job %s left containers %v", j.Key, ids)
		}
	}
}

// TestDockerImageJobCanceled checks the limits on the live container and
// that canceling the run removes it within seconds.
func TestDockerImageJobCanceled(t *testing.T) {
	d := containerstest.Docker(t)
	s := startServer(t, "", 1, nil)
	run := workerstest.Submit(t, s, `name: long
jobs:
  sleepy:
    image: `+containerstest.Image()+`
    runs-on: {cpu: 250m, memory: 80Mi}
    steps: [{run: echo started; sleep 300}]
`)
	var job string
	var ids []string
	workerstest.WaitFor(t, 30*time.Second, "the job's container", func() bool {
		j := workerstest.JobByKey(t, s, run.ID, "sleepy")
		job = j.ID
		if j.State != state.JobRunning {
			return false
		}
		ids = jobContainers(t, d, job)
		if len(ids) != 1 {
			return false
		}
		st, err := d.Inspect(context.Background(), ids[0])
		return err == nil && st.Running
	})
	st, err := d.Inspect(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.NanoCPUs != 250_000_000 || st.Memory != 80<<20 || st.NetworkMode != "none" {
		t.Errorf("container: running %v, nano cpus %d, memory %d, network %q", st.Running, st.NanoCPUs, st.Memory, st.NetworkMode)
	}
	if st.Labels[containers.LabelAgent] == "" || st.Labels[containers.LabelAttempt] != "1" {
		t.Errorf("labels %v", st.Labels)
	}
	canceled := time.Now()
	if err := s.Orch.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	workerstest.WaitFor(t, 10*time.Second, "the container to be removed after cancel", func() bool { return len(jobContainers(t, d, job)) == 0 })
	t.Logf("container gone %s after the cancel", time.Since(canceled).Round(time.Millisecond))
	if r, _ := workerstest.WaitRun(t, s, run.ID, 10*time.Second); r.State != state.RunCanceled {
		t.Errorf("run %s", r.State)
	}
}

// TestDockerAgentKilled kills an agent process with SIGKILL in the middle of
// a job with an image: its container stops and removes itself (its main
// process reads the stdin the agent held). A container labelled with the
// agent's id that is still there when the agent starts again is removed,
// and so are service containers and their network.
func TestDockerAgentKilled(t *testing.T) {
	d := containerstest.Docker(t)
	bin := containerstest.HodeiBinary(t)
	s := startServer(t, "", 0, func(o *server.Options) { o.NATSListen = "" })
	startAgent := func(id string) *exec.Cmd {
		cmd := exec.Command(bin, "agent", "--nats", s.NATSURL, "--id", id, "--heartbeat", "100ms", "--work-dir", filepath.Join(t.TempDir(), id), "--log-level", "warn")
		cmd.Env = os.Environ()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	agent := startAgent("killed-agent")
	run := workerstest.Submit(t, s, `name: long
jobs:
  sleepy:
    image: `+containerstest.Image()+`
    steps: [{run: sleep 300}]
`)
	var job string
	workerstest.WaitFor(t, 30*time.Second, "the job's container", func() bool {
		j := workerstest.JobByKey(t, s, run.ID, "sleepy")
		job = j.ID
		if j.State != state.JobRunning {
			return false
		}
		ids := jobContainers(t, d, job)
		if len(ids) != 1 {
			return false
		}
		st, err := d.Inspect(context.Background(), ids[0])
		return err == nil && st.Running
	})
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	killed := time.Now()
	workerstest.WaitFor(t, 10*time.Second, "the container of the killed agent to go", func() bool { return len(jobContainers(t, d, job)) == 0 })
	t.Logf("container gone %s after SIGKILL of its agent", time.Since(killed).Round(time.Millisecond))

	// A leftover (here one made by hand, held open by this test) is
	// removed by the next start of its agent.
	left, err := d.StartJob(context.Background(), containers.JobSpec{Image: containerstest.Image(), Workspace: t.TempDir(),
		Labels: map[string]string{containers.LabelAgent: "restarted-agent", containers.LabelJob: "leftover"}})
	if err != nil {
		t.Fatal(err)
	}
	defer left.Remove(context.Background())
	// Services do not stop with their agent: a killed agent's are left
	// running, with their network, until it starts again.
	leftLabels := map[string]string{containers.LabelAgent: "restarted-agent", containers.LabelJob: "leftover-services", containers.LabelAttempt: "1"}
	svcs, err := d.StartServices(context.Background(), containers.ServicesSpec{Internal: true, Labels: leftLabels,
		Services: []containers.Service{{Name: "db", Image: containerstest.Image(), Command: []string{"sleep", "300"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svcs.Remove(context.Background())
	if ids := jobContainers(t, d, "leftover-services"); len(ids) != 1 {
		t.Fatalf("leftover service containers %v", ids)
	}
	startAgent("restarted-agent")
	workerstest.WaitFor(t, 20*time.Second, "the agent to remove its leftover containers and network", func() bool {
		st, err := d.Inspect(context.Background(), left.ID())
		return err == nil && !st.Exists && len(jobContainers(t, d, "leftover-services")) == 0 && len(jobNetworks(t, d, "leftover-services")) == 0
	})
	_ = s.Orch.Cancel(context.Background(), run.ID)
}

// TestDockerPool runs a docker pool: the manager starts a worker container
// (the hodei binary mounted into the test image) for a queued job, the
// worker joins by heartbeat, runs the job, and, being ephemeral, is gone
// after it.
func TestDockerPool(t *testing.T) {
	d := containerstest.Docker(t)
	bin := containerstest.HodeiBinary(t)
	s := startServer(t, fmt.Sprintf(`
pools:
  boxes:
    provider: docker
    min: 0
    max: 2
    ephemeral: true
    startup_delay: 2s
    shape: {cpu: 500m, memory: 128Mi, labels: [boxes]}
    docker:
      image: %s
      binary: %s
`, containerstest.Image(), bin), 0, func(o *server.Options) { o.NATSListen = "" })
	if st := workerstest.PoolStatus(s, "boxes"); st.Size != 0 || st.Circuit != "closed" {
		t.Fatalf("pool before any job: %+v", st)
	}
	run := workerstest.Submit(t, s, `name: on-a-box
jobs:
  hello:
    runs-on: {labels: [boxes], cpu: 500m, memory: 128Mi}
    steps: [{run: 'echo "hello from $HODEI_WORKER on $(hostname)"; cat /proc/1/cgroup >/dev/null'}]
`)
	var workerID string
	workerstest.WaitFor(t, 30*time.Second, "a worker container to join", func() bool {
		for _, w := range s.Orch.View().Workers {
			if w.Pool == "boxes" {
				workerID = w.ID
				return true
			}
		}
		return false
	})
	r, jobs := workerstest.WaitRun(t, s, run.ID, 60*time.Second)
	if r.State != state.RunSucceeded || jobs["hello"].WorkerID != workerID {
		t.Fatalf("run %s, job on %q (worker %s): %+v", r.State, jobs["hello"].WorkerID, workerID, jobs["hello"])
	}
	if out := workerstest.LogsOf(t, s, jobs["hello"].ID); !strings.Contains(out, "hello from "+workerID) {
		t.Errorf("output %q", out)
	}
	workerstest.WaitFor(t, 20*time.Second, "the ephemeral worker's container to be gone", func() bool {
		ids, err := d.ListLabelled(context.Background(), containers.LabelWorker, workerID)
		return err == nil && len(ids) == 0 && workerstest.PoolStatus(s, "boxes").Size == 0
	})
}

// TestDockerPoolAdoptsAfterRestart: a manager starts two worker containers
// whose agents join the server; the manager dies without terminating them.
// A new manager of the same owner, whose pool now allows one worker, finds
// both: it adopts one (counted idle in its pool, no container created for
// min) and removes the other; the adopted worker runs a job; Close removes
// it.
func TestDockerPoolAdoptsAfterRestart(t *testing.T) {
	d := containerstest.Docker(t)
	bin := containerstest.HodeiBinary(t)
	s := startServer(t, "", 0, func(o *server.Options) { o.NATSListen = "" })
	var b [4]byte
	_, _ = rand.Read(b[:])
	owner := "adopt-" + hex.EncodeToString(b[:])
	pool := poolsfile.PoolConfig{
		Name: "boxes", Provider: "docker", Min: 2, Max: 2, IdleTimeout: time.Hour,
		Shape:  poolsfile.Shape{CPUMilli: 250, Memory: 64 << 20, Labels: []string{"boxes"}},
		Docker: poolsfile.DockerOptions{Image: containerstest.Image(), Binary: bin, Network: "host"},
	}
	start := func(pool poolsfile.PoolConfig) (*workers.Manager, *prometheus.Registry, func()) {
		reg := prometheus.NewRegistry()
		m, err := workers.NewManager(workers.ManagerConfig{
			Pools: &poolsfile.Config{Pools: []poolsfile.PoolConfig{pool}}, Registry: workerstest.Only("docker", docker.New),
			Env: workers.ProviderEnv{NATSURL: s.NATSURL, Owner: owner, HeartbeatInterval: 100 * time.Millisecond,
				Logger: workerstest.Logger()},
			View: s.Orch.View, Interval: 50 * time.Millisecond, Registerer: reg, Logger: workerstest.Logger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Run(ctx)
		}()
		stop := func() { cancel(); <-done }
		t.Cleanup(func() { stop(); m.Close(context.Background()) })
		return m, reg, stop
	}
	leftovers := func() []string {
		ids, err := d.ListLabelled(context.Background(), containers.LabelOwner, owner+".boxes")
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}

	_, reg1, crash := start(pool)
	workerstest.WaitFor(t, 60*time.Second, "two worker containers to join", func() bool { return workerstest.PoolWorkers(s, "boxes")["idle"] == 2 })
	if n := workerstest.ActionCount(t, reg1, "create"); n != 2 {
		t.Fatalf("first manager: %d creates", n)
	}
	crash() // the server dies: no worker is terminated
	before := leftovers()
	if len(before) != 2 {
		t.Fatalf("containers after the crash: %v", before)
	}

	pool.Min, pool.Max = 1, 1
	m2, reg2, _ := start(pool)
	workerstest.WaitFor(t, 30*time.Second, "one worker adopted, the other removed", func() bool {
		var st workers.PoolStatus
		for _, p := range m2.Pools() {
			st = p
		}
		return st.Size == 1 && st.Adopted == 1 && st.Idle == 1 && len(leftovers()) == 1
	})
	after := leftovers()
	if !slices.Contains(before, after[0]) {
		t.Errorf("container %s after the restart is not one of the previous run's %v", after[0], before)
	}
	if n := workerstest.ActionCount(t, reg2, "create"); n != 0 {
		t.Errorf("the restarted manager created %d workers; its adopted worker covers min", n)
	}
	st, err := d.Inspect(context.Background(), after[0])
	if err != nil || !st.Running {
		t.Fatalf("adopted container: %+v, %v", st, err)
	}
	adopted := st.Labels[containers.LabelWorker]

	// The adopted worker takes jobs as before (once the orchestrator has
	// seen the removed one go: it was killed, it said no goodbye).
	workerstest.WaitFor(t, 30*time.Second, "the removed worker to leave the orchestrator's idle workers", func() bool {
		ws := workerstest.PoolWorkers(s, "boxes")
		return ws["idle"] == 1 && ws["busy"] == 0
	})
	run := workerstest.Submit(t, s, `name: on-an-adopted-box
jobs:
  hello:
    runs-on: {labels: [boxes], cpu: 250m, memory: 64Mi}
    steps: [{run: 'echo "hello from $HODEI_WORKER"'}]
`)
	r, jobs := workerstest.WaitRun(t, s, run.ID, 60*time.Second)
	if r.State != state.RunSucceeded || jobs["hello"].WorkerID != adopted {
		t.Fatalf("run %s, job on %q, want the adopted worker %s", r.State, jobs["hello"].WorkerID, adopted)
	}

	// It is the manager's own: Close removes it.
	m2.Close(context.Background())
	if ids := leftovers(); len(ids) != 0 {
		t.Errorf("containers after Close: %v", ids)
	}
}

// TestDockerPoolOverMutualTLS: with a NATS that requires client
// certificates, a worker container's agent joins with the certificate the
// server issued for it (mounted read-only) and runs a job; the certificate
// leaves the host with the worker.
func TestDockerPoolOverMutualTLS(t *testing.T) {
	d := containerstest.Docker(t)
	bin := containerstest.HodeiBinary(t)
	ca, natsTLS := workerstest.MutualTLS(t)
	workDir := t.TempDir()
	s := startServer(t, fmt.Sprintf(`
pools:
  tlsboxes:
    provider: docker
    min: 0
    max: 1
    ephemeral: true
    startup_delay: 2s
    shape: {cpu: 500m, memory: 128Mi, labels: [tlsboxes]}
    docker:
      image: %s
      binary: %s
      network: host
`, containerstest.Image(), bin), 0, func(o *server.Options) {
		o.NATSListen, o.NATSTLS, o.AgentCA, o.WorkDir = "", natsTLS, ca, workDir
	})
	worker, out := workerstest.RunHello(t, s, "tlsboxes", "ls /run/hodei-tls", 60*time.Second)
	for _, want := range []string{"agent.crt", "agent.key", "ca.crt"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
	hostDir := filepath.Join(workDir, "pools", "docker", "tlsboxes", worker)
	workerstest.WaitFor(t, 20*time.Second, "the ephemeral worker's container and certificate to be gone", func() bool {
		ids, err := d.ListLabelled(context.Background(), containers.LabelWorker, worker)
		_, statErr := os.Stat(hostDir)
		return err == nil && len(ids) == 0 && errors.Is(statErr, os.ErrNotExist)
	})
}

// TestDockerPoolScalesToZeroAfterCooldown: a long-lived docker pool with min
// 0 starts a worker container for a queued job; the worker outlives the job
// (checked well within its 5 s idle timeout), and once idle for idle_timeout
// it is drained and its container removed: the pool is back to 0.
func TestDockerPoolScalesToZeroAfterCooldown(t *testing.T) {
	d := containerstest.Docker(t)
	bin := containerstest.HodeiBinary(t)
	s := startServer(t, fmt.Sprintf(`
pools:
  lasting:
    provider: docker
    min: 0
    max: 1
    idle_timeout: 5s
    startup_delay: 2s
    shape: {cpu: 500m, memory: 128Mi, labels: [lasting]}
    docker:
      image: %s
      binary: %s
      network: host
`, containerstest.Image(), bin), 0, func(o *server.Options) { o.NATSListen = "" })
	if st := workerstest.PoolStatus(s, "lasting"); st.Size != 0 {
		t.Fatalf("pool with min 0 has %d workers before any job", st.Size)
	}
	worker, _ := workerstest.RunHello(t, s, "lasting", "", 60*time.Second)
	if ids, err := d.ListLabelled(context.Background(), containers.LabelWorker, worker); err != nil || len(ids) != 1 {
		t.Fatalf("worker %s: containers %v, %v; want it still there after its job", worker, ids, err)
	}
	ended := time.Now()
	workerstest.WaitFor(t, 30*time.Second, "the idle worker's container to be removed and the pool back to 0", func() bool {
		ids, err := d.ListLabelled(context.Background(), containers.LabelWorker, worker)
		return err == nil && len(ids) == 0 && workerstest.PoolStatus(s, "lasting").Size == 0
	})
	t.Logf("run end to pool at 0 (idle_timeout 5s): %s", time.Since(ended).Round(time.Millisecond))
}
