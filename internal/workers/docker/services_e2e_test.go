//go:build docker

package docker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/containerstest"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// jobNetworks lists the networks of a job.
func jobNetworks(t *testing.T, d *dockerengine.Docker, jobID string) []string {
	t.Helper()
	ids, err := d.ListLabelledNetworks(context.Background(), containers.LabelJob, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// assertNothingLeft checks through the engine that a job left no container
// and no network.
func assertNothingLeft(t *testing.T, d *dockerengine.Docker, jobID, key string) {
	t.Helper()
	if ids := jobContainers(t, d, jobID); len(ids) != 0 {
		t.Errorf("job %s left containers %v", key, ids)
	}
	if ids := jobNetworks(t, d, jobID); len(ids) != 0 {
		t.Errorf("job %s left networks %v", key, ids)
	}
}

// webService is a busybox httpd serving "served <who>" on port 8080, that
// starts listening only after a second, with a health check that passes
// once it answers.
func webService(who string) string {
	img := containerstest.Image()
	return `
      web:
        image: ` + img + `
        command: [sh, -c, 'echo service starting; sleep 1; mkdir /tmp/www && echo "served $WHO" > /tmp/www/index.html && exec httpd -f -v -p 8080 -h /tmp/www']
        env: {WHO: ` + who + `}
        ports: [8080]
        health:
          cmd: printf 'GET / HTTP/1.0\r\n\r\n' | nc 127.0.0.1 8080 | grep -q served
          interval: 200ms
          retries: 150
`
}

// TestDockerServiceReachedByName runs a job whose step reaches a busybox
// httpd service by its name once its health check passes (it listens only
// a second after it starts: a step run before would fail), on a network
// with no way out; a failing job with the same service gets the service's
// output in its log. Nothing is left afterwards.
func TestDockerServiceReachedByName(t *testing.T) {
	d := containerstest.Docker(t)
	s := startServer(t, "", 1, nil)
	img := containerstest.Image()
	run := workerstest.Submit(t, s, `name: services
jobs:
  reach:
    image: `+img+`
    runs-on: {cpu: 500m, memory: 96Mi}
    services:`+webService("by-name")+`
    steps:
      - run: printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc web 8080
  failing:
    image: `+img+`
    services:`+webService("to-a-failure")+`
    steps:
      - run: echo step ran; exit 3
`)
	r, jobs := workerstest.WaitRun(t, s, run.ID, 120*time.Second)
	reach, failing := jobs["reach"], jobs["failing"]
	if r.State != state.RunFailed || reach.State != state.JobSucceeded || failing.State != state.JobFailed {
		t.Fatalf("run %s; reach %s (%s); failing %s (%s)\n%s", r.State, reach.State, reach.Error, failing.State, failing.Error, workerstest.LogsOf(t, s, reach.ID))
	}
	out := workerstest.LogsOf(t, s, reach.ID)
	for _, want := range []string{"==> services web (" + img + ")\n", "<== services ready in ", "served by-name\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("log of reach lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "<== services ready"), strings.Index(out, "served by-name"); i < 0 || j < i {
		t.Errorf("the step ran before the service was ready:\n%s", out)
	}
	if strings.Contains(out, "service starting") {
		t.Errorf("a job that succeeded shows its services' output:\n%s", out)
	}
	fout := workerstest.LogsOf(t, s, failing.ID)
	for _, want := range []string{"step ran\n", "==> service web (" + img + ") output\nservice starting\n", "<== service web\n"} {
		if !strings.Contains(fout, want) {
			t.Errorf("log of failing lacks %q:\n%s", want, fout)
		}
	}
	if failing.ExitCode != 3 {
		t.Errorf("failing: exit code %d, want 3", failing.ExitCode)
	}
	for _, j := range jobs {
		assertNothingLeft(t, d, j.ID, j.Key)
	}
}

// TestDockerServiceUnhealthy runs a job whose service never passes its
// health check: the job fails with the check's last output before its
// first step, the service's output is in its log, and nothing is left.
func TestDockerServiceUnhealthy(t *testing.T) {
	d := containerstest.Docker(t)
	s := startServer(t, "", 1, nil)
	img := containerstest.Image()
	run := workerstest.Submit(t, s, `name: unhealthy
jobs:
  sick:
    image: `+img+`
    services:
      db:
        image: `+img+`
        command: [sh, -c, 'echo db says hello; exec sleep 300']
        health: {cmd: "echo not ready yet; exit 1", interval: 100ms, retries: 3}
    steps:
      - run: echo the step ran
`)
	r, jobs := workerstest.WaitRun(t, s, run.ID, 120*time.Second)
	sick := jobs["sick"]
	if r.State != state.RunFailed || sick.State != state.JobFailed {
		t.Fatalf("run %s; job %s (%s)", r.State, sick.State, sick.Error)
	}
	if want := "service db did not become healthy: not ready yet (exit code 1)"; sick.Error != want {
		t.Errorf("error %q, want %q", sick.Error, want)
	}
	out := workerstest.LogsOf(t, s, sick.ID)
	if strings.Contains(out, "the step ran") {
		t.Errorf("a step ran without its service:\n%s", out)
	}
	for _, want := range []string{"<== services failed in ", "==> service db (" + img + ") output\ndb says hello\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	assertNothingLeft(t, d, sick.ID, sick.Key)
}

// TestDockerServicesCanceled cancels a job while its step runs: its
// container, its services and their network are removed. The service has
// the job's limits and labels.
func TestDockerServicesCanceled(t *testing.T) {
	d := containerstest.Docker(t)
	s := startServer(t, "", 1, nil)
	img := containerstest.Image()
	run := workerstest.Submit(t, s, `name: canceled
jobs:
  long:
    image: `+img+`
    runs-on: {cpu: 250m, memory: 80Mi}
    services:
      sleeper: {image: `+img+`, command: [sleep, "300"]}
    steps: [{run: sleep 300}]
`)
	var job string
	var ids []string
	workerstest.WaitFor(t, 60*time.Second, "the job's container and its service", func() bool {
		j := workerstest.JobByKey(t, s, run.ID, "long")
		job = j.ID
		if j.State != state.JobRunning {
			return false
		}
		ids = jobContainers(t, d, job)
		if len(ids) != 2 {
			return false
		}
		for _, id := range ids {
			if st, err := d.Inspect(context.Background(), id); err != nil || !st.Running {
				return false
			}
		}
		return true
	})
	services := 0
	for _, id := range ids {
		st, err := d.Inspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Labels[containers.LabelService] == "" {
			continue
		}
		services++
		if st.Labels[containers.LabelService] != "sleeper" || st.Labels[containers.LabelAgent] == "" || st.Labels[containers.LabelAttempt] != "1" {
			t.Errorf("service labels %v", st.Labels)
		}
		if !st.Running || st.NanoCPUs != 250_000_000 || st.Memory != 80<<20 || !strings.HasPrefix(st.NetworkMode, "hodei-net-") {
			t.Errorf("service: running %v, nano cpus %d, memory %d, network %q", st.Running, st.NanoCPUs, st.Memory, st.NetworkMode)
		}
	}
	if services != 1 {
		t.Errorf("%d service containers among %v", services, ids)
	}
	if n := jobNetworks(t, d, job); len(n) != 1 {
		t.Errorf("networks of the job: %v", n)
	} else if st, err := d.InspectNetwork(context.Background(), n[0]); err != nil || !st.Internal || st.Labels[containers.LabelAttempt] != "1" {
		// Internal: the engine gives it no way out (with its firewall
		// rules; the test engine runs without them, see scripts/test).
		t.Errorf("network of the job: %+v %v", st, err)
	}
	if err := s.Orch.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, id := range jobContainers(t, d, job) {
			st, _ := d.Inspect(context.Background(), id)
			t.Logf("left: %s %+v", id, st)
		}
		t.Logf("networks left: %v", jobNetworks(t, d, job))
	})
	workerstest.WaitFor(t, 30*time.Second, "the containers and network to be removed after cancel", func() bool {
		return len(jobContainers(t, d, job)) == 0 && len(jobNetworks(t, d, job)) == 0
	})
	if r, _ := workerstest.WaitRun(t, s, run.ID, 30*time.Second); r.State != state.RunCanceled {
		t.Errorf("run %s", r.State)
	}
}

// TestDockerServicesIsolated runs two jobs at once on two agents, each with
// a service named web: each job reaches its own, on a network of its own
// (internal, but for the job with network: true). Both hold until the test
// has seen both sets of services running.
func TestDockerServicesIsolated(t *testing.T) {
	d := containerstest.Docker(t)
	work := t.TempDir()
	s := startServer(t, "", 2, func(o *server.Options) { o.WorkDir = work })
	img := containerstest.Image()
	job := func(who, network string) string {
		return `
  ` + who + `:
    image: ` + img + `
    network: ` + network + `
    services:` + webService(who) + `
    steps:
      - run: printf 'GET / HTTP/1.0\r\n\r\n' | nc web 8080
      - run: until [ -e go ]; do sleep 0.05; done
`
	}
	run := workerstest.Submit(t, s, "name: isolated\njobs:"+job("alpha", "false")+job("beta", "true"))
	ids := map[string]string{}
	nets := map[string]string{}
	workerstest.WaitFor(t, 120*time.Second, "both jobs with their services", func() bool {
		for _, key := range []string{"alpha", "beta"} {
			j := workerstest.JobByKey(t, s, run.ID, key)
			if j.State != state.JobRunning || len(jobContainers(t, d, j.ID)) != 2 {
				return false
			}
			n := jobNetworks(t, d, j.ID)
			if len(n) != 1 {
				return false
			}
			ids[key], nets[key] = j.ID, n[0]
		}
		return true
	})
	if nets["alpha"] == nets["beta"] {
		t.Errorf("both jobs on network %s", nets["alpha"])
	}
	// network: true gives the job's network a way out (not internal).
	for key, internal := range map[string]bool{"alpha": true, "beta": false} {
		if st, err := d.InspectNetwork(context.Background(), nets[key]); err != nil || st.Internal != internal {
			t.Errorf("network of %s: %+v %v, want internal %v", key, st, err, internal)
		}
	}
	// Let both go: each step waits for a file in its workspace.
	for key, id := range ids {
		matches, err := filepath.Glob(filepath.Join(work, "*", id+"-1-*"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range matches {
			if strings.HasSuffix(m, ".tmp") || strings.HasSuffix(m, ".pgid") {
				continue
			}
			found = true
			if err := os.WriteFile(filepath.Join(m, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !found {
			t.Fatalf("no workspace of %s among %v", key, matches)
		}
	}
	r, jobs := workerstest.WaitRun(t, s, run.ID, 120*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s; jobs %+v", r.State, jobs)
	}
	for key, other := range map[string]string{"alpha": "beta", "beta": "alpha"} {
		out := workerstest.LogsOf(t, s, jobs[key].ID)
		if !strings.Contains(out, "served "+key+"\n") || strings.Contains(out, "served "+other) {
			t.Errorf("%s reached the wrong service:\n%s", key, out)
		}
		assertNothingLeft(t, d, jobs[key].ID, key)
	}
}
