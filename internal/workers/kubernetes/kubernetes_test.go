package kubernetes

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestKubernetesNames(t *testing.T) {
	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	label := regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	ids := []string{"kube-0a1b2c3d", "Kube_Pool-1", "_x_", "a.b", strings.Repeat("x", 80), "-", "ÿ"}
	seen := map[string]string{}
	for _, id := range ids {
		n := PodName(id)
		if len(n) > 63 || !dns.MatchString(n) {
			t.Errorf("PodName(%q) = %q: not a DNS label", id, n)
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("PodName(%q) = PodName(%q) = %q", id, prev, n)
		}
		seen[n] = id
		if v := labelValue(id); len(v) > 63 || !label.MatchString(v) {
			t.Errorf("labelValue(%q) = %q: not a label value", id, v)
		}
	}
	if PodName("kube-0a1b2c3d") != "hodei-kube-0a1b2c3d" || labelValue("kube_1.a") != "kube_1.a" {
		t.Errorf("valid names are kept: %s %s", PodName("kube-0a1b2c3d"), labelValue("kube_1.a"))
	}
	if PodName("Kube_1") == PodName("kube-1") {
		t.Error("ids that differ get the same pod name")
	}
}

func TestKubernetesPodStatus(t *testing.T) {
	pod := func(phase corev1.PodPhase, code int32) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
		if code >= 0 {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}}
		}
		return p
	}
	for _, tt := range []struct {
		pod   *corev1.Pod
		phase workers.Phase
		code  int
	}{
		{pod(corev1.PodPending, -1), workers.PhaseCreating, 0},
		{pod("", -1), workers.PhaseCreating, 0},
		{pod(corev1.PodRunning, -1), workers.PhaseRunning, 0},
		{pod(corev1.PodUnknown, -1), workers.PhaseRunning, 0},
		{pod(corev1.PodSucceeded, 0), workers.PhaseExited, 0},
		{pod(corev1.PodFailed, 3), workers.PhaseExited, 3},
		{pod(corev1.PodFailed, -1), workers.PhaseExited, 1},
	} {
		if st := podStatus("w", tt.pod); st.Phase != tt.phase || st.ExitCode != tt.code || st.ID != "w" {
			t.Errorf("pod %s: status %+v, want %s exit %d", tt.pod.Status.Phase, st, tt.phase, tt.code)
		}
	}
}

func TestKubernetesErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	if !workers.IsTransient(classifyKube(apierrors.NewServiceUnavailable("x"))) || !workers.IsTransient(classifyKube(apierrors.NewTooManyRequests("x", 1))) ||
		!workers.IsTransient(classifyKube(apierrors.NewInternalError(errors.New("x")))) {
		t.Error("unavailable, throttled and internal errors are transient")
	}
	if workers.IsTransient(classifyKube(apierrors.NewForbidden(gr, "p", errors.New("no")))) || workers.IsTransient(classifyKube(apierrors.NewBadRequest("x"))) {
		t.Error("forbidden and bad request are not transient")
	}
}

func TestKubernetesNeedsOptions(t *testing.T) {
	pool := poolsfile.PoolConfig{Name: "k", Provider: "kubernetes", Kubernetes: poolsfile.KubernetesOptions{Namespace: "ci", Image: "i", AgentImage: "a"}}
	if _, err := NewForConfig(pool, workers.ProviderEnv{}, nil); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Errorf("no NATS URL: %v", err)
	}
	pool.Kubernetes.AgentImage = ""
	if _, err := NewForConfig(pool, workers.ProviderEnv{NATSURL: "nats://x:4222"}, nil); err == nil || !strings.Contains(err.Error(), "agent_image") {
		t.Errorf("no agent image: %v", err)
	}
}

// TestKubernetesPodMountsTheAgentBinaryReadOnly: the agent container of a
// worker pod sees the agent binary (copied by the init container) on a
// read-only mount, and its certificate too; only the init container may
// write the binary. TestKubernetesKubeletRunsAgent checks the same on a
// real kubelet, from inside a job.
func TestKubernetesPodMountsTheAgentBinaryReadOnly(t *testing.T) {
	p := &Provider{
		pool: poolsfile.PoolConfig{Name: "k"}, namespace: "ci",
		opts: poolsfile.KubernetesOptions{Namespace: "ci", Image: "i", AgentImage: "a"},
		env:  workers.ProviderEnv{NATSURL: "nats://x:4222", AgentCert: func(string) (workers.AgentCert, error) { return workers.AgentCert{}, nil }},
	}
	pod := p.PodSpec(workers.WorkerSpec{ID: "w1", Pool: "k"}, nil)
	agent := pod.Spec.Containers[0]
	if agent.Command[0] != kubeBinDir+"/hodei" {
		t.Fatalf("agent command %v, want the binary under %s", agent.Command, kubeBinDir)
	}
	mounts := map[string]bool{}
	for _, m := range agent.VolumeMounts {
		mounts[m.Name] = true
		switch m.Name {
		case kubeBinVolume, kubeTLSVolume:
			if !m.ReadOnly {
				t.Errorf("agent container mounts %s at %s writable", m.Name, m.MountPath)
			}
		}
	}
	if !mounts[kubeBinVolume] || !mounts[kubeTLSVolume] {
		t.Errorf("agent container mounts %v, want %s and %s", agent.VolumeMounts, kubeBinVolume, kubeTLSVolume)
	}
	if init := pod.Spec.InitContainers[0]; len(init.VolumeMounts) != 1 || init.VolumeMounts[0].ReadOnly || init.VolumeMounts[0].MountPath != kubeBinDir {
		t.Errorf("init container mounts %+v, want %s writable at %s", init.VolumeMounts, kubeBinVolume, kubeBinDir)
	}
}

// TestKubernetesPodServicesAreSidecars checks the pod of a worker with
// services: each is a native sidecar (an init container that keeps
// running) after the binary's copy, in order, with its health check as
// its startup probe, the worker's resources, a restricted security
// context, and its name an alias of the pod's loopback. A spec only: no
// Hodei path fills WorkerSpec.Services yet (docs/workers.md).
func TestKubernetesPodServicesAreSidecars(t *testing.T) {
	p := &Provider{
		pool: poolsfile.PoolConfig{Name: "k"}, namespace: "ci",
		opts: poolsfile.KubernetesOptions{Namespace: "ci", Image: "i", AgentImage: "a"},
		env:  workers.ProviderEnv{NATSURL: "nats://x:4222"},
	}
	pod := p.PodSpec(workers.WorkerSpec{ID: "w1", Pool: "k", Resources: workers.Resources{CPUMilli: 500, Memory: 256 << 20},
		Services: []pipeline.Service{
			{Name: "db", Image: "postgres:16", Env: map[string]string{"POSTGRES_PASSWORD": "x", "A": "1"}, Ports: []int{5432},
				Command: []string{"postgres", "-c", "fsync=off"},
				Health:  &pipeline.ServiceHealth{Cmd: "pg_isready", Interval: 1500 * time.Millisecond, Timeout: 100 * time.Millisecond, Retries: 30}},
			{Name: "cache", Image: "redis:7"},
		}}, nil)
	inits := pod.Spec.InitContainers
	if len(inits) != 3 || inits[0].Name != kubeInitName || inits[1].Name != "svc-db" || inits[2].Name != "svc-cache" {
		t.Fatalf("init containers %v", inits)
	}
	db := inits[1]
	if db.RestartPolicy == nil || *db.RestartPolicy != corev1.ContainerRestartPolicyAlways || inits[0].RestartPolicy != nil {
		t.Errorf("restart policies: db %v, hodei-bin %v", db.RestartPolicy, inits[0].RestartPolicy)
	}
	if db.Image != "postgres:16" || db.Command != nil || !slices.Equal(db.Args, []string{"postgres", "-c", "fsync=off"}) ||
		len(db.Env) != 2 || db.Env[0].Name != "A" || db.Ports[0].ContainerPort != 5432 {
		t.Errorf("db container %+v", db)
	}
	pr := db.StartupProbe
	if pr == nil || !slices.Equal(pr.Exec.Command, []string{"/bin/sh", "-c", "pg_isready"}) || pr.PeriodSeconds != 2 || pr.TimeoutSeconds != 1 || pr.FailureThreshold != 30 {
		t.Errorf("db startup probe %+v", pr)
	}
	if inits[2].StartupProbe != nil {
		t.Errorf("cache has a probe without a health check")
	}
	if db.Resources.Limits.Cpu().MilliValue() != 500 || db.Resources.Requests.Memory().Value() != 256<<20 {
		t.Errorf("db resources %+v", db.Resources)
	}
	sc := db.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("db security context %+v", sc)
	}
	if len(pod.Spec.HostAliases) != 1 || pod.Spec.HostAliases[0].IP != "127.0.0.1" || !slices.Equal(pod.Spec.HostAliases[0].Hostnames, []string{"db", "cache"}) {
		t.Errorf("host aliases %+v", pod.Spec.HostAliases)
	}
	if plain := p.PodSpec(workers.WorkerSpec{ID: "w2", Pool: "k"}, nil); len(plain.Spec.InitContainers) != 1 || plain.Spec.HostAliases != nil {
		t.Errorf("a worker without services has %v, %v", plain.Spec.InitContainers, plain.Spec.HostAliases)
	}
}

// TestKubernetesPodForAJobContainer: the pod the manager asks for a queued
// job with an image and services (workers.NewWorkerSpec with the job's
// container) runs the agent in the job's image for that container only
// (--job-container with the job's key, --once, the exclusive label), and
// has each service as a native sidecar with its command, env and ports,
// ready by its health check or, without one, once its first port takes
// connections; the services' names are aliases of 127.0.0.1.
func TestKubernetesPodForAJobContainer(t *testing.T) {
	pl, err := pipeline.Parse("svc.yaml", []byte(`name: svc
jobs:
  it:
    image: busybox:1.36
    runs-on: {cpu: 500m, memory: 256Mi}
    services:
      web:
        image: busybox:1.36
        command: [httpd, -f, -p, "8089", -h, /www]
        env: {GREETING: hi}
        ports: [8089]
      db:
        image: postgres:16
        env: {POSTGRES_PASSWORD: test}
        ports: [5432]
        health: {cmd: "pg_isready -U postgres", interval: 2s, retries: 20}
    steps:
      - run: wget -qO- http://web:8089/
`))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := pipeline.Expand(pl)
	if err != nil {
		t.Fatal(err)
	}
	job := specs[0]
	key := pipeline.ContainerKey(&job)
	if key == "" || pipeline.ContainerKey(&job) != key {
		t.Fatalf("container key %q", key)
	}
	pool := poolsfile.PoolConfig{Name: "k", Shape: poolsfile.Shape{CPUMilli: 1000, Memory: 512 << 20, Labels: []string{"k8s"}}}
	p := &Provider{
		pool: pool, namespace: "ci",
		opts: poolsfile.KubernetesOptions{Namespace: "ci", Image: "pool-image", AgentImage: "a"},
		env:  workers.ProviderEnv{NATSURL: "nats://x:4222"},
	}
	spec := workers.NewWorkerSpec(pool, "k-1", &workers.Container{Key: key, Image: job.Image, Services: job.Services})
	pod := p.PodSpec(spec, nil)

	agent := pod.Spec.Containers[0]
	args := strings.Join(agent.Command, " ")
	if agent.Image != "busybox:1.36" {
		t.Errorf("agent container image %q, want the job's", agent.Image)
	}
	for _, want := range []string{" --job-container " + key, " --once", " --labels k8s,docker,container:" + key} {
		if !strings.Contains(args, want) {
			t.Errorf("agent command lacks %q: %s", want, args)
		}
	}
	if pod.Annotations[KubeLabelContainer] != key || pod.Labels[KubeLabelContainer] != key {
		t.Errorf("pod labels %v, annotations %v", pod.Labels, pod.Annotations)
	}
	inits := pod.Spec.InitContainers
	if len(inits) != 3 || inits[0].Name != kubeInitName || inits[1].Name != "svc-web" || inits[2].Name != "svc-db" {
		t.Fatalf("init containers %v", inits)
	}
	web, db := inits[1], inits[2]
	if web.Image != "busybox:1.36" || web.Command != nil || !slices.Equal(web.Args, []string{"httpd", "-f", "-p", "8089", "-h", "/www"}) ||
		len(web.Env) != 1 || web.Env[0] != (corev1.EnvVar{Name: "GREETING", Value: "hi"}) ||
		len(web.Ports) != 1 || web.Ports[0].ContainerPort != 8089 {
		t.Errorf("web container %+v", web)
	}
	if pr := web.StartupProbe; pr == nil || pr.TCPSocket == nil || pr.TCPSocket.Port.IntValue() != 8089 || pr.Exec != nil ||
		pr.PeriodSeconds != 1 || pr.FailureThreshold != pipeline.DefaultHealthRetries {
		t.Errorf("web startup probe %+v", pr)
	}
	if pr := db.StartupProbe; pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command, []string{"/bin/sh", "-c", "pg_isready -U postgres"}) ||
		pr.TCPSocket != nil || pr.PeriodSeconds != 2 || pr.FailureThreshold != 20 {
		t.Errorf("db startup probe %+v", pr)
	}
	if len(db.Env) != 1 || db.Env[0].Name != "POSTGRES_PASSWORD" || db.Ports[0].ContainerPort != 5432 {
		t.Errorf("db container %+v", db)
	}
	for _, c := range []corev1.Container{web, db} {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways || c.Resources.Limits.Cpu().MilliValue() != 1000 {
			t.Errorf("%s: restart policy %v, resources %+v", c.Name, c.RestartPolicy, c.Resources)
		}
	}
	if len(pod.Spec.HostAliases) != 1 || !slices.Equal(pod.Spec.HostAliases[0].Hostnames, []string{"web", "db"}) {
		t.Errorf("host aliases %+v", pod.Spec.HostAliases)
	}

	// Another service is another container; the pool's own workers run
	// the pool's image, for no container.
	other := job
	other.Services = job.Services[:1]
	if pipeline.ContainerKey(&other) == key {
		t.Errorf("a job with other services has the same container key")
	}
	plain := p.PodSpec(workers.NewWorkerSpec(pool, "k-2", nil), nil)
	if c := plain.Spec.Containers[0]; c.Image != "pool-image" || strings.Contains(strings.Join(c.Command, " "), "--job-container") ||
		len(plain.Spec.InitContainers) != 1 || plain.Labels[KubeLabelContainer] != "" {
		t.Errorf("a pool worker: image %q, command %v, %d init containers", c.Image, c.Command, len(plain.Spec.InitContainers))
	}
}
