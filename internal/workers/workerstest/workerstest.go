// Package workerstest holds what the tests of the providers share: a server
// started with a pools file and the providers of a registry, and waits on
// its runs, jobs and pools. Only tests import it.
package workerstest

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// Logger discards logs unless HODEI_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("HODEI_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// StartServer starts a server with the pools of poolsYAML (none if empty),
// made by the providers of reg, and n local agents.
func StartServer(t *testing.T, reg *workers.Registry, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := server.Options{
		DataDir:           t.TempDir(),
		NATSListen:        "none",
		LocalWorkers:      n,
		WorkerTTL:         2 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		PoolInterval:      50 * time.Millisecond,
		Logger:            Logger(),
		Providers:         reg,
	}
	if poolsYAML != "" {
		cfg, err := poolsfile.ParseConfig("pools.yaml", []byte(poolsYAML))
		if err != nil {
			t.Fatal(err)
		}
		o.Pools = cfg
	}
	if edit != nil {
		edit(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := server.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if n > 0 {
		if err := s.WaitForWorkers(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// WaitFor polls cond every 10ms until it holds, or fails the test.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// Submit submits a pipeline file to s and returns its run.
func Submit(t *testing.T, s *server.Server, yaml string) store.Run {
	t.Helper()
	run, err := s.Submit(context.Background(), "test.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return run
}

// WaitRun waits until the run is final and returns it with its jobs by key.
func WaitRun(t *testing.T, s *server.Server, id string, timeout time.Duration) (store.Run, map[string]store.Job) {
	t.Helper()
	var run store.Run
	WaitFor(t, timeout, "run "+id+" to end", func() bool {
		r, err := s.Store.GetRun(context.Background(), id)
		run = r
		return err == nil && r.State.Final()
	})
	jobs, err := s.Store.ListJobs(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.Job{}
	for _, j := range jobs {
		m[j.Key] = j
	}
	return run, m
}

// JobByKey returns the job of a run with the given key, once it exists.
func JobByKey(t *testing.T, s *server.Server, runID, key string) store.Job {
	t.Helper()
	jobs, err := s.Store.ListJobs(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Key == key {
			return j
		}
	}
	t.Fatalf("run %s has no job %q", runID, key)
	return store.Job{}
}

// LogsOf returns the stored output of a job.
func LogsOf(t *testing.T, s *server.Server, jobID string) string {
	t.Helper()
	cs, err := s.Store.ReadLogs(context.Background(), jobID, 0, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range cs {
		b.Write(c.Data)
	}
	return b.String()
}

// PoolStatus returns the manager's status of a pool.
func PoolStatus(s *server.Server, name string) workers.PoolStatus {
	for _, p := range s.Workers.Pools() {
		if p.Name == name {
			return p
		}
	}
	return workers.PoolStatus{}
}

// PoolWorkers counts the workers of a pool in the orchestrator's view by
// state.
func PoolWorkers(s *server.Server, pool string) map[state.WorkerState]int {
	m := map[state.WorkerState]int{}
	for _, w := range s.Orch.View().Workers {
		if w.Pool == pool {
			m[w.State]++
		}
	}
	return m
}

// MutualTLS makes a CA and the server certificate (127.0.0.1) of a NATS that
// requires client certificates signed by it.
func MutualTLS(t *testing.T) (*pki.CA, *tls.Config) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(dir, "server", pki.Request{Kind: pki.KindServer, Name: "server", IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	natsTLS, err := pki.ServerTLS(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return ca, natsTLS
}

// Only returns a registry of one provider: the one a provider's own tests
// start their servers with.
func Only(name string, f workers.Factory) *workers.Registry {
	r := workers.NewRegistry()
	r.Register(name, f)
	return r
}

// Starter returns the StartServer of a provider's own tests: the servers it
// starts have pools (poolsYAML) made by that provider alone (see Only).
func Starter(name string, f workers.Factory) func(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	return func(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
		t.Helper()
		return StartServer(t, Only(name, f), poolsYAML, n, edit)
	}
}

// RunHello runs a pipeline of one job, hello, on a worker labelled label
// (500m cpu, 128Mi): it prints "hello from $HODEI_WORKER", then runs the
// shell command then, if any. It fails the test unless the run succeeds
// within timeout and the output names the worker, and returns the worker
// and the output.
func RunHello(t *testing.T, s *server.Server, label, then string, timeout time.Duration) (worker, out string) {
	t.Helper()
	step := `echo "hello from $HODEI_WORKER"`
	if then != "" {
		step += "; " + then
	}
	run := Submit(t, s, `name: hello
jobs:
  hello:
    runs-on: {labels: [`+label+`], cpu: 500m, memory: 128Mi}
    steps: [{run: '`+step+`'}]
`)
	r, jobs := WaitRun(t, s, run.ID, timeout)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v", r.State, jobs["hello"])
	}
	worker = jobs["hello"].WorkerID
	out = LogsOf(t, s, jobs["hello"].ID)
	if !strings.Contains(out, "hello from "+worker) {
		t.Errorf("output lacks %q:\n%s", "hello from "+worker, out)
	}
	return worker, out
}
