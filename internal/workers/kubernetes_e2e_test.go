//go:build kubernetes

package workers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/hodei-ci/hodei/internal/workers"
)

// kubeEnv is a namespace of the test API server, with the RBAC of
// deploy/kubernetes/rbac.yaml applied in it, and a kubeconfig whose user is
// the ServiceAccount that RBAC binds (a token from the TokenRequest API).
type kubeEnv struct {
	admin      kubernetes.Interface
	adminCfg   *rest.Config
	restricted *rest.Config
	kubeconfig string // of the restricted user
	ns         string
}

// kubeTest connects to the API server of KUBECONFIG (scripts/test starts
// one). These tests are built only with the tag kubernetes; without a
// KUBECONFIG they fail rather than skip.
func kubeTest(t *testing.T) *kubeEnv {
	t.Helper()
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		t.Fatal("KUBECONFIG is not set: scripts/test starts a kube-apiserver for these tests (go test -tags kubernetes)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	e := &kubeEnv{admin: admin, adminCfg: cfg, ns: "hodei-test-" + hex.EncodeToString(b[:])}
	// Pod Security admission enforces the restricted profile here: a worker
	// pod that is not locked down is refused.
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   e.ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No controller-manager runs: delete the pods left, the namespace
		// stays Terminating until the API server goes.
		ctx := context.Background()
		_ = admin.CoreV1().Pods(e.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = admin.CoreV1().Namespaces().Delete(ctx, e.ns, metav1.DeleteOptions{})
	})
	// No controller-manager either to make the default ServiceAccount:
	// make it (and the one a pool may ask for) as it would.
	for _, sa := range []string{"default", "hodei-worker"} {
		if _, err := admin.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.applyRBAC(t)
	tok, err := admin.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, "hodei-server", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.restricted = &rest.Config{Host: cfg.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{
		CAFile: cfg.CAFile, CAData: cfg.CAData, Insecure: cfg.Insecure,
	}}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthority: cfg.CAFile, CertificateAuthorityData: cfg.CAData, InsecureSkipTLSVerify: cfg.Insecure}
	kc.AuthInfos["hodei-server"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "hodei-server", Namespace: e.ns}
	kc.CurrentContext = "test"
	e.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, e.kubeconfig); err != nil {
		t.Fatal(err)
	}
	// Providers get nothing but the pool's kubeconfig: not the admin's
	// KUBECONFIG, nor a ~/.kube/config.
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	return e
}

// applyRBAC creates the objects of deploy/kubernetes/rbac.yaml in the test
// namespace, unchanged but for the namespace.
func (e *kubeEnv) applyRBAC(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	kinds := map[string]bool{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("deploy/kubernetes/rbac.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = e.ns
			_, err = e.admin.CoreV1().ServiceAccounts(e.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			o.Namespace = e.ns
			_, err = e.admin.RbacV1().Roles(e.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = e.ns
			for i := range o.Subjects {
				o.Subjects[i].Namespace = e.ns
			}
			_, err = e.admin.RbacV1().RoleBindings(e.ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("deploy/kubernetes/rbac.yaml: unexpected %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds[obj.GetObjectKind().GroupVersionKind().Kind] = true
	}
	if !kinds["ServiceAccount"] || !kinds["Role"] || !kinds["RoleBinding"] {
		t.Fatalf("deploy/kubernetes/rbac.yaml has %v, want a ServiceAccount, a Role and a RoleBinding", kinds)
	}
}

func kubePool(e *kubeEnv, name string) workers.PoolConfig {
	return workers.PoolConfig{
		Name: name, Provider: "kubernetes", Max: 4, Ephemeral: true,
		Shape: workers.Shape{CPUMilli: 500, Memory: 256 << 20, Labels: []string{"linux"}},
		Kubernetes: workers.KubernetesOptions{
			Namespace: e.ns, Image: "busybox:1.36", AgentImage: "hodei:test", Kubeconfig: e.kubeconfig,
		},
	}
}

// logSink collects what a provider logs.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func kubeEnvFor(owner string, log *logSink) workers.ProviderEnv {
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, nil)
	}
	return workers.ProviderEnv{NATSURL: "nats://10.0.0.1:4222", Owner: owner, HeartbeatInterval: 2 * time.Second, Logger: slog.New(h)}
}

// newKube makes a provider through the registry, from the pool's kubeconfig
// (the restricted user), as the server does.
func newKube(t *testing.T, pool workers.PoolConfig, env workers.ProviderEnv) *workers.Kubernetes {
	t.Helper()
	p, err := workers.DefaultRegistry().New(pool, env)
	if err != nil {
		t.Fatal(err)
	}
	k := p.(*workers.Kubernetes)
	t.Cleanup(k.Close)
	return k
}

func waitEvent(t *testing.T, ch <-chan workers.Event, kind workers.EventKind, id string, d time.Duration) workers.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-ch:
			if e.Kind == kind && e.ID == id {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %s", kind, id, d)
		}
	}
}

// TestKubernetesRBACIsMinimal checks that the restricted user of
// deploy/kubernetes/rbac.yaml can do what the provider needs and nothing
// more.
func TestKubernetesRBACIsMinimal(t *testing.T) {
	e := kubeTest(t)
	cs, err := kubernetes.NewForConfig(e.restricted)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods in the namespace: %v", err)
	}
	for what, err := range map[string]error{
		"list secrets":                   func() error { _, err := cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{}); return err }(),
		"list pods in another namespace": func() error { _, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); return err }(),
		"list nodes":                     func() error { _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }(),
		"create a configmap": func() error {
			_, err := cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}(),
		"update a pod": func() error {
			_, err := cs.CoreV1().Pods(e.ns).Update(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.UpdateOptions{})
			return err
		}(),
		"create a token of the account": func() error {
			_, err := cs.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, "hodei-server", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}(),
		"exec in pods (pods/exec)":         cs.CoreV1().RESTClient().Post().Namespace(e.ns).Resource("pods").Name("x").SubResource("exec").Do(ctx).Error(),
		"list services":                    func() error { _, err := cs.CoreV1().Services(e.ns).List(ctx, metav1.ListOptions{}); return err }(),
		"delete the pods of the namespace": cs.CoreV1().Pods(e.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want forbidden", what, err)
		}
	}
}

// TestKubernetesWorkerPod creates a worker pod with the restricted user and
// reads it back field by field; checks status, logs and events; terminates
// it (twice: the second is a success too).
func TestKubernetesWorkerPod(t *testing.T) {
	e := kubeTest(t)
	pool := kubePool(e, "kube")
	k := newKube(t, pool, kubeEnvFor("srv1", nil))
	ctx := t.Context()
	spec := workers.WorkerSpec{
		ID: "kube-0a1b2c3d", Pool: pool.Name, Ephemeral: true,
		Resources: workers.Resources{CPUMilli: 500, Memory: 256 << 20},
		Labels:    []string{"linux"},
		Env:       map[string]string{"B": "2", "A": "1"},
	}
	ref, err := k.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	name := workers.PodName(spec.ID)
	if ref.ID != spec.ID || ref.Provider != "kubernetes" || ref.Handle != e.ns+"/"+name {
		t.Errorf("ref %+v", ref)
	}
	waitEvent(t, k.Events(), workers.EventCreated, spec.ID, 5*time.Second)
	// A retried create returns the same pod.
	if ref2, err := k.Create(ctx, spec); err != nil || ref2 != ref {
		t.Errorf("second create: %+v, %v", ref2, err)
	}
	pods, err := e.admin.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: k.Selector()})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of the pool: %v, %v", pods, err)
	}
	pod, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkWorkerPod(t, pod, e.ns, spec)

	st, err := k.Status(ctx, spec.ID)
	if err != nil || st.Phase != workers.PhaseCreating || st.ID != spec.ID {
		t.Errorf("status of a pending pod: %+v, %v", st, err)
	}
	// Logs go through pods/log: allowed; with no node the API server has no
	// kubelet to read from and answers with nothing.
	var logs bytes.Buffer
	if err := k.Logs(ctx, spec.ID, &logs); err != nil && (apierrors.IsForbidden(err) || errors.Is(err, workers.ErrNotFound)) {
		t.Errorf("logs of a pod on no node: %v", err)
	} else {
		t.Logf("logs of a pod on no node: %q, %v", logs.String(), err)
	}

	// What a kubelet would report: running, then the agent exits 3.
	pod.Status.Phase = corev1.PodRunning
	if pod, err = e.admin.CoreV1().Pods(e.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, k.Events(), workers.EventStarted, spec.ID, 10*time.Second)
	if st, err := k.Status(ctx, spec.ID); err != nil || st.Phase != workers.PhaseRunning {
		t.Errorf("status of a running pod: %+v, %v", st, err)
	}
	pod.Status.Phase = corev1.PodFailed
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}}}}
	if _, err = e.admin.CoreV1().Pods(e.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, k.Events(), workers.EventExited, spec.ID, 10*time.Second); ev.ExitCode != 3 {
		t.Errorf("exit event %+v, want exit code 3", ev)
	}
	if st, err := k.Status(ctx, spec.ID); err != nil || st.Phase != workers.PhaseExited || st.ExitCode != 3 {
		t.Errorf("status of an exited pod: %+v, %v", st, err)
	}

	// The job ended: the manager terminates the worker.
	if err := k.Terminate(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, k.Events(), workers.EventGone, spec.ID, 5*time.Second)
	if _, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after terminate: %v, want not found", err)
	}
	if err := k.Terminate(ctx, spec.ID); err != nil {
		t.Errorf("terminate of a pod that is gone: %v", err)
	}
	if _, err := k.Status(ctx, spec.ID); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("status of a pod that is gone: %v", err)
	}
	if err := k.Logs(ctx, spec.ID, &logs); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("logs of a pod that is gone: %v", err)
	}
	if c, err := k.Capacity(ctx); err != nil || c.Workers != -1 {
		t.Errorf("capacity %+v, %v", c, err)
	}
}

// checkWorkerPod reads back every field the provider sets.
func checkWorkerPod(t *testing.T, pod *corev1.Pod, ns string, spec workers.WorkerSpec) {
	t.Helper()
	errorf := func(format string, a ...any) {
		t.Helper()
		t.Errorf("pod %s: "+format, append([]any{pod.Name}, a...)...)
	}
	if pod.Namespace != ns {
		errorf("namespace %s", pod.Namespace)
	}
	if pod.Labels[workers.KubeLabelPool] != spec.Pool || pod.Labels[workers.KubeLabelWorker] != spec.ID ||
		pod.Labels[workers.KubeLabelOwner] == "" || pod.Labels["app.kubernetes.io/managed-by"] != "hodei" {
		errorf("labels %v", pod.Labels)
	}
	if pod.Annotations[workers.KubeLabelPool] != spec.Pool || pod.Annotations[workers.KubeLabelWorker] != spec.ID ||
		pod.Annotations[workers.KubeLabelOwner] != "srv1."+spec.Pool {
		errorf("annotations %v", pod.Annotations)
	}
	ps := pod.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever {
		errorf("restartPolicy %s", ps.RestartPolicy)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		errorf("automountServiceAccountToken %v", ps.AutomountServiceAccountToken)
	}
	if ps.ServiceAccountName != "default" {
		errorf("serviceAccountName %q", ps.ServiceAccountName)
	}
	if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
		errorf("enableServiceLinks %v", ps.EnableServiceLinks)
	}
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("pod securityContext %+v", sc)
	}
	want := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	checkContainer := func(c corev1.Container) {
		t.Helper()
		for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
			if len(rl) != len(want) {
				errorf("container %s resources %+v", c.Name, c.Resources)
			}
			for k, v := range want {
				if q, ok := rl[k]; !ok || q.Cmp(v) != 0 {
					errorf("container %s %s = %v, want %v (requests = limits)", c.Name, k, rl[k], v)
				}
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 ||
			(sc.Privileged != nil && *sc.Privileged) {
			errorf("container %s securityContext %+v", c.Name, sc)
		}
	}
	if len(ps.InitContainers) != 1 || len(ps.Containers) != 1 {
		t.Fatalf("pod %s: %d init containers, %d containers", pod.Name, len(ps.InitContainers), len(ps.Containers))
	}
	ic, ac := ps.InitContainers[0], ps.Containers[0]
	checkContainer(ic)
	checkContainer(ac)
	if ic.Image != "hodei:test" || strings.Join(ic.Command, " ") != "cp /hodei /opt/hodei/hodei" ||
		len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].Name != "hodei-bin" || ic.VolumeMounts[0].MountPath != "/opt/hodei" || ic.VolumeMounts[0].ReadOnly {
		errorf("init container %+v", ic)
	}
	if ac.Name != "agent" || ac.Image != "busybox:1.36" || ac.WorkingDir != "/workspace" {
		errorf("agent container %s image %s dir %s", ac.Name, ac.Image, ac.WorkingDir)
	}
	cmd := strings.Join(ac.Command, " ")
	for _, w := range []string{"/opt/hodei/hodei agent ", "--nats nats://10.0.0.1:4222", "--id " + spec.ID, "--pool " + spec.Pool,
		"--cpu 500m", fmt.Sprintf("--memory %d", 256<<20), "--work-dir /workspace", "--labels linux", "--heartbeat 2s", "--once"} {
		if !strings.Contains(cmd, w) {
			errorf("agent command %q lacks %q", cmd, w)
		}
	}
	if len(ac.Env) != 2 || ac.Env[0].Name != "A" || ac.Env[0].Value != "1" || ac.Env[1].Name != "B" {
		errorf("agent env %+v", ac.Env)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range ac.VolumeMounts {
		mounts[m.Name] = m
	}
	if len(mounts) != 3 || !mounts["hodei-bin"].ReadOnly || mounts["hodei-bin"].MountPath != "/opt/hodei" ||
		mounts["workspace"].MountPath != "/workspace" || mounts["workspace"].ReadOnly || mounts["tmp"].MountPath != "/tmp" {
		errorf("agent mounts %+v", ac.VolumeMounts)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	if len(vols) != 3 {
		errorf("volumes %+v (a service account token volume?)", ps.Volumes)
	}
	for _, n := range []string{"hodei-bin", "workspace", "tmp"} {
		if v, ok := vols[n]; !ok || v.EmptyDir == nil {
			errorf("volume %s: %+v, want an emptyDir", n, v)
		}
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		errorf("phase %s node %q: with no kubelet it stays pending", pod.Status.Phase, pod.Spec.NodeName)
	}
}

// TestKubernetesAutomountAndServiceAccount asks for a service account and
// its token.
func TestKubernetesAutomountAndServiceAccount(t *testing.T) {
	e := kubeTest(t)
	pool := kubePool(e, "sa")
	pool.Kubernetes.ServiceAccount = "hodei-worker"
	pool.Kubernetes.AutomountServiceAccountToken = true
	k := newKube(t, pool, kubeEnvFor("srv1", nil))
	ctx := t.Context()
	spec := workers.WorkerSpec{ID: "sa_Worker.1_", Pool: pool.Name, Resources: workers.Resources{CPUMilli: 250, Memory: 64 << 20, GPU: 1}}
	if _, err := k.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pod, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, workers.PodName(spec.ID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.ServiceAccountName != "hodei-worker" || pod.Spec.AutomountServiceAccountToken == nil || !*pod.Spec.AutomountServiceAccountToken {
		t.Errorf("service account %q automount %v", pod.Spec.ServiceAccountName, pod.Spec.AutomountServiceAccountToken)
	}
	if pod.Annotations[workers.KubeLabelWorker] != spec.ID || pod.Labels[workers.KubeLabelWorker] == spec.ID {
		t.Errorf("a worker id that is no label value: labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	if g := pod.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"]; g.Value() != 1 {
		t.Errorf("gpu limit %v", g)
	}
	if err := k.Terminate(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesRestart starts a second provider of the same server and
// pool (a restarted server): it finds the pods the first one left, by
// label, and deletes them; the pods of another server and another pool
// stay.
func TestKubernetesRestart(t *testing.T) {
	e := kubeTest(t)
	ctx := t.Context()
	pool := kubePool(e, "kube")
	first := newKube(t, pool, kubeEnvFor("srv1", nil))
	other := newKube(t, pool, kubeEnvFor("srv2", nil))
	otherPool := newKube(t, kubePool(e, "kube2"), kubeEnvFor("srv1", nil))
	spec := func(id, pool string) workers.WorkerSpec {
		return workers.WorkerSpec{ID: id, Pool: pool, Resources: workers.Resources{CPUMilli: 100, Memory: 64 << 20}}
	}
	for _, id := range []string{"kube-00000001", "kube-00000002"} {
		if _, err := first.Create(ctx, spec(id, "kube")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Create(ctx, spec("kube-00000003", "kube")); err != nil {
		t.Fatal(err)
	}
	if _, err := otherPool.Create(ctx, spec("kube2-00000004", "kube2")); err != nil {
		t.Fatal(err)
	}
	first.Close() // the server stops without terminating its workers

	log := &logSink{}
	second := newKube(t, pool, kubeEnvFor("srv1", log))
	if !strings.Contains(log.String(), "removed worker pods of a previous run") || !strings.Contains(log.String(), "count=2") {
		t.Errorf("log of the restarted provider: %s", log.String())
	}
	for id, want := range map[string]bool{"kube-00000001": false, "kube-00000002": false, "kube-00000003": true, "kube2-00000004": true} {
		_, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, workers.PodName(id), metav1.GetOptions{})
		if exists := err == nil; exists != want || (err != nil && !apierrors.IsNotFound(err)) {
			t.Errorf("pod of %s after the restart: exists %v (%v), want %v", id, exists, err, want)
		}
	}
	if _, err := second.Status(ctx, "kube-00000001"); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("status of a removed leftover: %v", err)
	}
	// The new provider's watch and calls work as before.
	if _, err := second.Create(ctx, spec("kube-00000005", "kube")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, second.Events(), workers.EventCreated, "kube-00000005", 5*time.Second)
	// Canceled job: the manager terminates the worker at once.
	if err := second.Terminate(ctx, "kube-00000005"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, workers.PodName("kube-00000005"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after terminate: %v", err)
	}
	// A pod deleted by someone else is reported gone by the watch.
	if _, err := second.Create(ctx, spec("kube-00000006", "kube")); err != nil {
		t.Fatal(err)
	}
	// The watch sees the pod (its phase moves to Running, and the provider
	// reports it started) before the pod is deleted behind its back.
	pod6, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, workers.PodName("kube-00000006"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod6.Status.Phase = corev1.PodRunning
	if _, err := e.admin.CoreV1().Pods(e.ns).UpdateStatus(ctx, pod6, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, second.Events(), workers.EventStarted, "kube-00000006", 10*time.Second)
	if err := e.admin.CoreV1().Pods(e.ns).Delete(ctx, workers.PodName("kube-00000006"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, second.Events(), workers.EventGone, "kube-00000006", 10*time.Second)
}
