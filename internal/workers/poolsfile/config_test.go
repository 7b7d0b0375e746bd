package poolsfile

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

func TestParseConfigGood(t *testing.T) {
	cfg, err := LoadConfig("testdata/pools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 3 {
		t.Fatalf("pools: %+v", cfg.Pools)
	}
	b, g, l := cfg.Pools[0], cfg.Pools[1], cfg.Pools[2]
	if b.Name != "builders" || g.Name != "gpu" || l.Name != "local" {
		t.Fatalf("pools not sorted by name: %s %s %s", b.Name, g.Name, l.Name)
	}
	if b.Provider != "docker" || b.Min != 0 || b.Max != 8 || b.IdleTimeout != 10*time.Minute || b.StartupDelay != 5*time.Second ||
		b.CostPerHour != 0.12 || !b.Ephemeral || b.Shape.CPUMilli != 2000 || b.Shape.Memory != 4<<30 ||
		strings.Join(b.Shape.Labels, ",") != "linux,containers" || b.Docker.Image != "hodei-worker:latest" || b.Docker.Network != "host" || b.Line != 3 {
		t.Errorf("builders: %+v", b)
	}
	if l.Min != 1 || l.IdleTimeout != 2*time.Minute || l.Ephemeral || l.Shape.GPU != 0 {
		t.Errorf("local: %+v", l)
	}
	if g.Shape.GPU != 1 || g.IdleTimeout != DefaultIdleTimeout || g.CostPerHour != 2.5 ||
		g.Kubernetes != (KubernetesOptions{Namespace: "hodei-workers", Image: "hodei-worker:latest", AgentImage: "hodei:latest"}) {
		t.Errorf("gpu: %+v", g)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("p.yaml", []byte("pools:\n  a: {provider: local, max: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	if p.Min != 0 || p.Shape.CPUMilli != DefaultShapeCPU || p.Shape.Memory != DefaultShapeMemory || p.IdleTimeout != DefaultIdleTimeout {
		t.Errorf("defaults: %+v", p)
	}
}

func TestParseConfigKubernetes(t *testing.T) {
	cfg, err := ParseConfig("p.yaml", []byte(`pools:
  k:
    provider: kubernetes
    max: 3
    kubernetes:
      namespace: ci-workers
      image: busybox:1
      agent_image: hodei:1.0
      service_account: hodei-worker
      automount_service_account_token: true
      kubeconfig: /etc/hodei/kubeconfig
`))
	if err != nil {
		t.Fatal(err)
	}
	want := KubernetesOptions{Namespace: "ci-workers", Image: "busybox:1", AgentImage: "hodei:1.0", ServiceAccount: "hodei-worker",
		AutomountServiceAccountToken: true, Kubeconfig: "/etc/hodei/kubeconfig"}
	if got := cfg.Pools[0].Kubernetes; got != want {
		t.Errorf("kubernetes options %+v, want %+v", got, want)
	}
}

func TestParseConfigBad(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"empty", ``, "p.yaml: the file is empty: it must have a pools map"},
		{"syntax", "pools:\n  a: [\n", "p.yaml:2: invalid YAML: did not find expected node content"},
		{"not a map", "- a\n", "p.yaml:1:1: must be a map with a pools key, got a list"},
		{"no pools", "pool: {}\n", `p.yaml:1:1: pool: unknown field "pool" (did you mean "pools"?); allowed fields: pools` + "\n" + "p.yaml:1:1: pools: is required"},
		{"empty pools", "pools: {}\n", "p.yaml:1:8: pools: must be a map of pool name to pool, with at least one pool"},
		{"unknown field", "pools:\n  a:\n    provider: local\n    max: 1\n    maxx: 2\n",
			`p.yaml:5:5: pools.a.maxx: unknown field "maxx" (did you mean "max"?); allowed fields: provider, min, max, idle_timeout, startup_delay, cost_per_hour, ephemeral, shape, docker, kubernetes, local`},
		{"missing provider and max", "pools:\n  a:\n    min: 1\n",
			"p.yaml:2:3: pools.a.provider: is required (local, docker or kubernetes)\np.yaml:2:3: pools.a.max: is required: the most workers the pool may have"},
		{"unknown provider", "pools:\n  a: {provider: ec2, max: 1}\n", `p.yaml:2:17: pools.a.provider: unknown provider "ec2"; want one of local, docker, kubernetes`},
		{"min above max", "pools:\n  a:\n    provider: local\n    min: 3\n    max: 2\n", "p.yaml:5:10: pools.a.max: must be at least min (3), got 2"},
		{"negative min", "pools:\n  a: {provider: local, min: -1, max: 1}\n", `p.yaml:2:29: pools.a.min: must be an integer from 0 to 10000, got -1`},
		{"bad durations", "pools:\n  a:\n    provider: local\n    max: 1\n    idle_timeout: 5\n    startup_delay: -1s\n",
			"p.yaml:5:19: pools.a.idle_timeout: must be a duration such as 30s, 10m or 1h30m, got 5\np.yaml:6:20: pools.a.startup_delay: must be greater than zero, got -1s"},
		{"bad shape", "pools:\n  a:\n    provider: local\n    max: 1\n    shape:\n      cpu: 0\n      memory: 1.5Gi\n      labels: [\"a b\"]\n",
			"p.yaml:6:12: pools.a.shape.cpu:"},
		{"bad memory", "pools:\n  a:\n    provider: local\n    max: 1\n    shape: {memory: 1.5Gi}\n", "p.yaml:5:21: pools.a.shape.memory:"},
		{"bad label", "pools:\n  a:\n    provider: local\n    max: 1\n    shape: {labels: [\"a b\"]}\n", `p.yaml:5:22: pools.a.shape.labels[0]: invalid label "a b"`},
		{"docker without image", "pools:\n  a:\n    provider: docker\n    max: 1\n", "p.yaml:2:3: pools.a.docker.image: is required for a docker pool"},
		{"docker options on local", "pools:\n  a:\n    provider: local\n    max: 1\n    docker: {image: x}\n", "p.yaml:5:13: pools.a.docker: only applies to a pool with provider docker"},
		{"kubernetes without options", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n",
			"p.yaml:2:3: pools.a.kubernetes.namespace: is required for a kubernetes pool\np.yaml:2:3: pools.a.kubernetes.image: is required for a kubernetes pool\np.yaml:2:3: pools.a.kubernetes.agent_image: is required for a kubernetes pool"},
		{"kubernetes without agent image", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n    kubernetes: {namespace: ci, image: x}\n",
			"p.yaml:5:17: pools.a.kubernetes.agent_image: is required for a kubernetes pool"},
		{"kubernetes options on docker", "pools:\n  a:\n    provider: docker\n    max: 1\n    docker: {image: x}\n    kubernetes: {namespace: ci}\n",
			"p.yaml:6:17: pools.a.kubernetes: only applies to a pool with provider kubernetes"},
		{"kubernetes bad namespace", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n    kubernetes: {namespace: CI_x, image: x, agent_image: y}\n",
			`p.yaml:5:29: pools.a.kubernetes.namespace: invalid namespace "CI_x"`},
		{"kubernetes bad service account", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n    kubernetes: {namespace: ci, image: x, agent_image: y, service_account: A}\n",
			`pools.a.kubernetes.service_account: invalid service account "A"`},
		{"kubernetes bad automount", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n    kubernetes: {namespace: ci, image: x, agent_image: y, automount_service_account_token: maybe}\n",
			`pools.a.kubernetes.automount_service_account_token: must be true or false, got "maybe"`},
		{"kubernetes unknown option", "pools:\n  a:\n    provider: kubernetes\n    max: 1\n    kubernetes: {namespace: ci, image: x, agent_image: y, node: n}\n",
			`pools.a.kubernetes.node: unknown field "node"`},
		{"bad name", "pools:\n  a.b: {provider: local, max: 1}\n", `p.yaml:2:3: pools.a.b: invalid pool name "a.b"`},
		{"duplicate pool", "pools:\n  a: {provider: local, max: 1}\n  a: {provider: local, max: 1}\n", "p.yaml:"},
		{"bad cost", "pools:\n  a: {provider: local, max: 1, cost_per_hour: cheap}\n", `pools.a.cost_per_hour: must be a number, 0 or more, got "cheap"`},
		{"bad ephemeral", "pools:\n  a: {provider: local, max: 1, ephemeral: yes please}\n", `pools.a.ephemeral: must be true or false, got "yes please"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// TestDocExample keeps the pools file of docs/workers.md valid and equal to
// testdata/pools.yaml.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/workers.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/workers.md has no yaml block")
	}
	if _, err := ParseConfig("workers.md", []byte(block)); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/pools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(want), strings.TrimSpace(block)) {
		t.Errorf("testdata/pools.yaml does not hold the example of docs/workers.md")
	}
}

// TestParseConfigAliases checks that a pools file may share values through
// anchors and aliases, read as if written out.
func TestParseConfigAliases(t *testing.T) {
	cfg, err := ParseConfig("p.yaml", []byte(`pools:
  small: &pool
    provider: docker
    max: &max 4
    shape: &shape {cpu: 2, memory: 4Gi, labels: &labels [linux, containers]}
    docker: {image: &image hodei-worker:latest}
  large:
    provider: docker
    max: *max
    idle_timeout: &idle 10m
    shape: {cpu: 8, memory: 16Gi, labels: *labels}
    docker: {image: *image}
  copy: *pool
  k:
    provider: kubernetes
    max: 1
    idle_timeout: *idle
    kubernetes: {namespace: ci, image: *image, agent_image: *image}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 4 {
		t.Fatalf("pools: %+v", cfg.Pools)
	}
	cp, k, large, small := cfg.Pools[0], cfg.Pools[1], cfg.Pools[2], cfg.Pools[3]
	if cp.Name != "copy" || cp.Provider != "docker" || cp.Max != 4 || cp.Shape.CPUMilli != 2000 || cp.Docker.Image != "hodei-worker:latest" || cp.Line != 13 {
		t.Errorf("copy (an alias of a whole pool): %+v", cp)
	}
	if small.Max != 4 || strings.Join(small.Shape.Labels, ",") != "linux,containers" {
		t.Errorf("small: %+v", small)
	}
	if large.Max != 4 || large.IdleTimeout != 10*time.Minute || large.Shape.Memory != 16<<30 ||
		strings.Join(large.Shape.Labels, ",") != "linux,containers" || large.Docker.Image != "hodei-worker:latest" {
		t.Errorf("large: %+v", large)
	}
	if k.IdleTimeout != 10*time.Minute || k.Kubernetes.AgentImage != "hodei-worker:latest" {
		t.Errorf("k: %+v", k)
	}
}

// TestParseConfigErrorPositions checks the whole error list of a broken
// pools file: each problem at its own line and column, sorted by position;
// an unknown key with the closest allowed one; a bad value read through an
// alias placed where the alias is used (12:10), and a problem inside an
// aliased map placed in the anchored text, once per field that uses it.
func TestParseConfigErrorPositions(t *testing.T) {
	src := `pools:
  a:
    provider: dokcer
    max: 2
    idle_timout: 5m
    shape: &shape
      cpus: 2
      labels: [linux, "a b"]
  b:
    provider: local
    max: &max many
    min: *max
    shape: *shape
    ephemeral: yes
  a:
    provider: local
    max: 1
`
	_, err := ParseConfig("p.yaml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	want := strings.Join([]string{
		`p.yaml:3:15: pools.a.provider: unknown provider "dokcer" (did you mean "docker"?); want one of local, docker, kubernetes`,
		`p.yaml:5:5: pools.a.idle_timout: unknown field "idle_timout" (did you mean "idle_timeout"?); allowed fields: provider, min, max, idle_timeout, startup_delay, cost_per_hour, ephemeral, shape, docker, kubernetes, local`,
		`p.yaml:7:7: pools.a.shape.cpus: unknown field "cpus" (did you mean "cpu"?); allowed fields: cpu, memory, gpu, labels`,
		`p.yaml:7:7: pools.b.shape.cpus: unknown field "cpus" (did you mean "cpu"?); allowed fields: cpu, memory, gpu, labels`,
		`p.yaml:8:23: pools.a.shape.labels[1]: invalid label "a b"`,
		`p.yaml:8:23: pools.b.shape.labels[1]: invalid label "a b"`,
		`p.yaml:11:10: pools.b.max: must be an integer from 1 to 10000, got "many"`,
		`p.yaml:12:10: pools.b.min: must be an integer from 0 to 10000, got "many"`,
		`p.yaml:14:16: pools.b.ephemeral: must be true or false, got "yes"`,
		`p.yaml:15:3: pools.a: duplicate key "a" (first defined at line 2)`,
	}, "\n")
	if err.Error() != want {
		t.Errorf("errors:\n%v\nwant:\n%s", err, want)
	}
	list, ok := err.(yamlpos.ErrorList)
	if !ok || len(list) != 10 || list[0].Line != 3 || list[0].Col != 15 || list[0].Field != "pools.a.provider" {
		t.Errorf("error is %T %+v, want a positioned yamlpos.ErrorList", err, list)
	}
}
