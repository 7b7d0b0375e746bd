package repocheck

import (
	"os/exec"
	"strings"
	"testing"
)

// engineClient says whether an import path is part of a container engine's
// or Kubernetes' client (what only the providers may link).
func engineClient(path string) bool {
	return strings.HasPrefix(path, "k8s.io/") || strings.Contains(path, "docker") ||
		strings.HasPrefix(path, "github.com/moby/moby/client")
}

// deps lists the packages that pkgs depend on (go list -deps), run from the
// repository's root.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, stderr)
	}
	return strings.Fields(string(out))
}

// TestPlanningLinksNoEngineClient: the simulator, the autoscaler and the
// API only plan and report; they link neither client-go nor the Docker
// client. The providers are packages of their own that cmd/hodei registers,
// and the hodei binary links them all.
func TestPlanningLinksNoEngineClient(t *testing.T) {
	for _, p := range deps(t, "./internal/sim", "./internal/autoscale", "./internal/api") {
		if engineClient(p) {
			t.Errorf("internal/sim, internal/autoscale or internal/api depend on %s", p)
		}
	}
	var kube, docker bool
	for _, p := range deps(t, "./cmd/hodei") {
		kube = kube || p == "k8s.io/client-go/kubernetes"
		docker = docker || p == "github.com/moby/moby/client"
	}
	if !kube || !docker {
		t.Errorf("cmd/hodei links client-go: %v, the Docker client: %v; want both (its providers)", kube, docker)
	}
}

// TestBinaryLinksNoTemplateEngine: text/template (and html/template, built
// on it) calls methods by name through reflection, and a binary that links
// it keeps every exported method of every type it has: the hodei binary
// grew from 88 MB to 126 MB, and its start-up memory with it, when the
// migrations were rendered with it. The web UI builds its pages without it,
// and the migrations read their few actions themselves.
func TestBinaryLinksNoTemplateEngine(t *testing.T) {
	for _, p := range deps(t, "./cmd/hodei") {
		if p == "text/template" || p == "html/template" {
			t.Errorf("cmd/hodei links %s", p)
		}
	}
}
