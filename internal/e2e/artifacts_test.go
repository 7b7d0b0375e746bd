package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// artifactsPipeline: build runs on one agent process, use on the other
// (labels), so its artifacts cross from one machine's workspace to another
// through the server.
const artifactsPipeline = `name: across
jobs:
  build:
    runs-on: {labels: [builder]}
    steps:
      - run: mkdir -p dist && seq 1 100000 > dist/numbers && echo v1 > dist/version
    artifacts:
      name: bin
      paths: [dist]
  use:
    needs: build
    runs-on: {labels: [tester]}
    steps:
      - run: test "$(cat dist/version)" = v1 && test "$(wc -l < dist/numbers)" -eq 100000 && echo used
`

// TestArtifactsCrossAgentProcesses: two `hodei agent` processes on the
// server's NATS; the artifacts of a job on one reach the job that needs
// them on the other, and `hodei artifacts RUN --download` fetches them,
// every file checked.
func TestArtifactsCrossAgentProcesses(t *testing.T) {
	c := newCluster(t)
	a := c.api
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.server(t, "server.log", "--workers", "0")
	start(t, "builder.log", c.agentArgs(t, "builder-1", "--labels", "builder")...)
	start(t, "tester.log", c.agentArgs(t, "tester-1", "--labels", "tester")...)
	id, err := a.submit(ctx, artifactsPipeline)
	if err != nil {
		t.Fatal(err)
	}
	a.waitFinal(t, ctx, 2*time.Minute, id)
	jobs := a.mustJobs(ctx, t, id)
	for _, j := range jobs {
		want := map[string]string{"build": "builder-1", "use": "tester-1"}[j.Key]
		if j.State != "succeeded" || j.Worker != want {
			t.Fatalf("%s: %s on %s (%s); want succeeded on %s", j.Key, j.State, j.Worker, j.Error, want)
		}
	}
	dir := t.TempDir()
	out, err := exec.Command(hodeiBin, "artifacts", id, "build", "--server", a.base, "--download", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("hodei artifacts: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "build  ") || !strings.Contains(string(out), "bin") || !strings.Contains(string(out), "2 files verified") {
		t.Errorf("hodei artifacts printed:\n%s", out)
	}
	if v, err := os.ReadFile(filepath.Join(dir, "build", "bin", "dist", "version")); err != nil || string(v) != "v1\n" {
		t.Errorf("downloaded version %q, %v", v, err)
	}
}
