//go:build kubernetes

package kubernetes_test

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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"github.com/hodei-ci/hodei/internal/logtest"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// kubeEnv is a namespace of the test API server, with the RBAC of
// deploy/kubernetes/rbac.yaml applied in it, and a kubeconfig whose user is
// the ServiceAccount that RBAC binds (a token from the TokenRequest API).
type kubeEnv struct {
	admin      k8s.Interface
	adminCfg   *rest.Config
	restricted *rest.Config
	kubeconfig string // of the restricted user
	ns         string
	node       string // the node its pods are bound to
	image      string // with the hodei binary, on the kubelet's node
}

// kubeTest connects to the API server of KUBECONFIG, whose node
// HODEI_KWOK_NODE kwok manages (scripts/test starts both). These tests are
// built only with the tag kubernetes; without either they fail rather than
// skip.
func kubeTest(t *testing.T) *kubeEnv {
	t.Helper()
	node := os.Getenv("HODEI_KWOK_NODE")
	if node == "" {
		t.Fatal("HODEI_KWOK_NODE is not set: scripts/test starts kwok with a fake node for these tests (go test -tags kubernetes)")
	}
	return kubeEnvOn(t, node, "restricted")
}

// kubeEnvOn makes the test namespace, whose pods the test binds to node,
// with the Pod Security level podSecurity enforced.
func kubeEnvOn(t *testing.T, node, podSecurity string) *kubeEnv {
	t.Helper()
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		t.Fatal("KUBECONFIG is not set: scripts/test starts a kube-apiserver for these tests (go test -tags kubernetes)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	e := &kubeEnv{admin: admin, adminCfg: cfg, ns: "hodei-test-" + hex.EncodeToString(b[:]), node: node}
	workerstest.WaitFor(t, 60*time.Second, "the node "+node+" to be Ready (are kwok and the kubelet running?)", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	// Pod Security admission enforces a profile here (restricted: a worker
	// pod that is not locked down is refused).
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   e.ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": podSecurity, "pod-security.kubernetes.io/enforce-version": "latest"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No controller-manager runs: delete the pods left (kwok removes
		// those on its node), the namespace stays Terminating until the API
		// server goes.
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
	data, err := os.ReadFile("../../../deploy/kubernetes/rbac.yaml")
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

// bindWorker places the pod of worker id on the kwok node (see bind).
func (e *kubeEnv) bindWorker(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	pod, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, kubernetes.PodName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bind(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// bind places a pod on the kwok node through the pods/binding subresource,
// as kube-scheduler does (none runs here).
func (e *kubeEnv) bind(ctx context.Context, pod *corev1.Pod) error {
	return e.admin.CoreV1().Pods(e.ns).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: e.node},
	}, metav1.CreateOptions{})
}

// schedule binds every pod of the namespace that has no node to the kwok
// node as soon as it appears: the test plays the scheduler. kwok then
// makes the pods Running.
func (e *kubeEnv) schedule(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var errs []string
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		for _, err := range errs {
			t.Errorf("scheduler: %s", err)
		}
	})
	pods := e.admin.CoreV1().Pods(e.ns)
	unbound := fields.OneTermEqualSelector("spec.nodeName", "").String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = unbound
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = unbound
			return pods.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	place := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
			return
		}
		if err := e.bind(ctx, pod); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("bind %s: %v", pod.Name, err))
			mu.Unlock()
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: place, UpdateFunc: func(_, obj any) { place(obj) }})
	go inf.RunWithContext(ctx)
}

// setPodStatus writes a pod's status as a kubelet would (kwok does not
// run containers, so it never reports an agent's exit).
func (e *kubeEnv) setPodStatus(t *testing.T, name string, edit func(*corev1.PodStatus)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := e.admin.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(&pod.Status)
		_, err = e.admin.CoreV1().Pods(e.ns).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("status of pod %s: %v", name, err)
	}
}

// agentExited is the status a kubelet reports when the agent container
// exits with code.
func agentExited(code int32) func(*corev1.PodStatus) {
	return func(st *corev1.PodStatus) {
		st.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			st.Phase, reason = corev1.PodFailed, "Error"
		}
		now := metav1.Now()
		for i := range st.ContainerStatuses {
			if st.ContainerStatuses[i].Name == "agent" {
				st.ContainerStatuses[i].Ready = false
				st.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: code, Reason: reason, StartedAt: now, FinishedAt: now}}
			}
		}
	}
}

// podPhases returns the pods of a selector: worker id -> phase.
func (e *kubeEnv) podPhases(t *testing.T, selector string) map[string]corev1.PodPhase {
	t.Helper()
	pods, err := e.admin.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.PodPhase{}
	for _, p := range pods.Items {
		out[p.Annotations[kubernetes.KubeLabelWorker]] = p.Status.Phase
	}
	return out
}

func kubePool(e *kubeEnv, name string) poolsfile.PoolConfig {
	return poolsfile.PoolConfig{
		Name: name, Provider: "kubernetes", Max: 4, Ephemeral: true,
		Shape: poolsfile.Shape{CPUMilli: 500, Memory: 256 << 20, Labels: []string{"linux"}},
		Kubernetes: poolsfile.KubernetesOptions{
			Namespace: e.ns, Image: "busybox:1.36", AgentImage: "hodei:test", Kubeconfig: e.kubeconfig,
		},
	}
}

func kubeEnvFor(owner string, log *logtest.Buffer) workers.ProviderEnv {
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, nil)
	}
	return workers.ProviderEnv{NATSURL: "nats://10.0.0.1:4222", Owner: owner, HeartbeatInterval: 2 * time.Second, Logger: slog.New(h)}
}

// newKube makes a provider through the registry, from the pool's kubeconfig
// (the restricted user), as the server does.
func newKube(t *testing.T, pool poolsfile.PoolConfig, env workers.ProviderEnv) *kubernetes.Provider {
	t.Helper()
	p, err := workerstest.Only("kubernetes", kubernetes.New).New(pool, env)
	if err != nil {
		t.Fatal(err)
	}
	k := p.(*kubernetes.Provider)
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
	cs, err := k8s.NewForConfig(e.restricted)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods in the namespace: %v", err)
	}
	for what, err := range map[string]error{
		"list secrets":                   func() error { _, err := cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{}); return err }(),
		"read a secret":                  func() error { _, err := cs.CoreV1().Secrets(e.ns).Get(ctx, "x", metav1.GetOptions{}); return err }(),
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
// reads it back field by field; checks status, logs and events while it is
// pending, once bound to the kwok node (Running) and after its agent exits;
// terminates it (twice: the second is a success too) and sees it removed.
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
	name := kubernetes.PodName(spec.ID)
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
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		t.Errorf("phase %s node %q: with no scheduler it stays pending", pod.Status.Phase, pod.Spec.NodeName)
	}

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

	// Scheduled on the kwok node (the test binds it, as kube-scheduler
	// would), the pod goes Running: kwok reports the init container
	// completed and the agent container running.
	bound := time.Now()
	if err := e.bind(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, k.Events(), workers.EventStarted, spec.ID, 30*time.Second)
	t.Logf("pod Running %s after it was bound to the kwok node", time.Since(bound).Round(time.Millisecond))
	if st, err := k.Status(ctx, spec.ID); err != nil || st.Phase != workers.PhaseRunning || st.Detail != "Running" {
		t.Errorf("status of a running pod: %+v, %v", st, err)
	}
	if pod, err = e.admin.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != e.node || len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Running == nil ||
		len(pod.Status.InitContainerStatuses) != 1 || pod.Status.InitContainerStatuses[0].State.Terminated == nil || pod.Status.PodIP == "" {
		t.Errorf("running pod on %q: %+v", pod.Spec.NodeName, pod.Status)
	}
	checkWorkerPod(t, pod, e.ns, spec) // the spec is unchanged by the binding

	// The agent exits 3: kwok runs no container, so the test writes what
	// a kubelet would report.
	e.setPodStatus(t, name, agentExited(3))
	if ev := waitEvent(t, k.Events(), workers.EventExited, spec.ID, 10*time.Second); ev.ExitCode != 3 {
		t.Errorf("exit event %+v, want exit code 3", ev)
	}
	if st, err := k.Status(ctx, spec.ID); err != nil || st.Phase != workers.PhaseExited || st.ExitCode != 3 {
		t.Errorf("status of an exited pod: %+v, %v", st, err)
	}

	// The job ended: the manager terminates the worker. The pod is on a
	// node, so the deletion is graceful: kwok, as a kubelet, removes it.
	deleted := time.Now()
	if err := k.Terminate(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, k.Events(), workers.EventGone, spec.ID, 5*time.Second)
	workerstest.WaitFor(t, 30*time.Second, "the deleted pod to be removed", func() bool {
		_, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	t.Logf("pod removed %s after Terminate", time.Since(deleted).Round(time.Millisecond))
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
	if pod.Labels[kubernetes.KubeLabelPool] != spec.Pool || pod.Labels[kubernetes.KubeLabelWorker] != spec.ID ||
		pod.Labels[kubernetes.KubeLabelOwner] == "" || pod.Labels["app.kubernetes.io/managed-by"] != "hodei" {
		errorf("labels %v", pod.Labels)
	}
	if pod.Annotations[kubernetes.KubeLabelPool] != spec.Pool || pod.Annotations[kubernetes.KubeLabelWorker] != spec.ID ||
		pod.Annotations[kubernetes.KubeLabelOwner] != "srv1."+spec.Pool {
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
	pod, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, kubernetes.PodName(spec.ID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.ServiceAccountName != "hodei-worker" || pod.Spec.AutomountServiceAccountToken == nil || !*pod.Spec.AutomountServiceAccountToken {
		t.Errorf("service account %q automount %v", pod.Spec.ServiceAccountName, pod.Spec.AutomountServiceAccountToken)
	}
	if pod.Annotations[kubernetes.KubeLabelWorker] != spec.ID || pod.Labels[kubernetes.KubeLabelWorker] == spec.ID {
		t.Errorf("a worker id that is no label value: labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	if g := pod.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"]; g.Value() != 1 {
		t.Errorf("gpu limit %v", g)
	}
	if err := k.Terminate(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesListAfterRestart starts a second provider of the same
// server and pool (a restarted server): it deletes nothing, and List finds
// the pods the first one left, by label, with their phases, and not those
// of another server or another pool; their events then reach the new
// provider.
func TestKubernetesListAfterRestart(t *testing.T) {
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
	// One of them runs (on the kwok node) before the restart.
	e.bindWorker(t, ctx, "kube-00000001")
	waitEvent(t, first.Events(), workers.EventStarted, "kube-00000001", 30*time.Second)
	first.Close() // the server dies without terminating its workers

	second := newKube(t, pool, kubeEnvFor("srv1", nil))
	if got := e.podPhases(t, "app.kubernetes.io/managed-by=hodei"); len(got) != 4 {
		t.Fatalf("pods after the restart: %v, want all 4 (nothing deleted)", got)
	}
	found, err := second.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(found, func(i, k int) bool { return found[i].Ref.ID < found[k].Ref.ID })
	if len(found) != 2 || found[0].Ref.ID != "kube-00000001" || found[1].Ref.ID != "kube-00000002" {
		t.Fatalf("listed %+v, want the two pods of srv1's pool kube", found)
	}
	if f := found[0]; f.Status.Phase != workers.PhaseRunning || f.Ref.Handle != e.ns+"/"+kubernetes.PodName(f.Ref.ID) ||
		f.Ref.Pool != "kube" || f.Ref.Provider != "kubernetes" || f.CreatedAt.IsZero() || time.Since(f.CreatedAt) > time.Minute {
		t.Errorf("listed running pod %+v", f)
	}
	if f := found[1]; f.Status.Phase != workers.PhaseCreating {
		t.Errorf("listed pending pod %+v", f)
	}
	// Listed pods are the new provider's own: their lifecycle is reported.
	e.bindWorker(t, ctx, "kube-00000002")
	waitEvent(t, second.Events(), workers.EventStarted, "kube-00000002", 30*time.Second)
	e.setPodStatus(t, kubernetes.PodName("kube-00000001"), agentExited(0))
	if ev := waitEvent(t, second.Events(), workers.EventExited, "kube-00000001", 10*time.Second); ev.ExitCode != 0 || ev.Err != "" {
		t.Errorf("exit event %+v", ev)
	}
	if err := second.Terminate(ctx, "kube-00000001"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, second.Events(), workers.EventGone, "kube-00000001", 5*time.Second)
	// A pod deleted by someone else is reported gone by the watch.
	if err := e.admin.CoreV1().Pods(e.ns).Delete(ctx, kubernetes.PodName("kube-00000002"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, second.Events(), workers.EventGone, "kube-00000002", 30*time.Second)
	if got := e.podPhases(t, second.Selector()); len(got) != 0 {
		t.Errorf("pods of the pool left: %v", got)
	}
	// Without an owner there is nothing to tell whose pods they are.
	if found, err := newKube(t, pool, kubeEnvFor("", nil)).List(ctx); err != nil || len(found) != 0 {
		t.Errorf("list without an owner: %v, %v", found, err)
	}
}

// fakeView is the orchestrator's view as the test sets it: the agents in
// kwok's pods do not run, so no heartbeat tells the manager they joined;
// the test says it.
type fakeView struct {
	v atomic.Pointer[orchestrator.View]
}

func (f *fakeView) set(ws []orchestrator.WorkerView, demand ...orchestrator.DemandView) {
	f.v.Store(&orchestrator.View{At: time.Now(), Workers: ws, Demand: demand})
}

// kubeManager runs a worker manager of one kubernetes pool, its provider
// made from the pool's kubeconfig (the restricted user), as the server
// does. stop ends it as a crash would: the manager stops deciding and the
// provider's watch stops, but no worker is terminated.
type kubeManager struct {
	m       *workers.Manager
	reg     *prometheus.Registry
	mu      sync.Mutex
	kube    *kubernetes.Provider
	stopped chan struct{}
	cancel  context.CancelFunc
}

func startKubeManager(t *testing.T, pool poolsfile.PoolConfig, owner string, view *fakeView) *kubeManager {
	t.Helper()
	km := &kubeManager{reg: prometheus.NewRegistry(), stopped: make(chan struct{})}
	reg := workers.NewRegistry()
	reg.Register("kubernetes", func(pc poolsfile.PoolConfig, env workers.ProviderEnv) (workers.Provider, error) {
		p, err := kubernetes.New(pc, env)
		if err == nil {
			km.mu.Lock()
			km.kube = p.(*kubernetes.Provider)
			km.mu.Unlock()
		}
		return p, err
	})
	m, err := workers.NewManager(workers.ManagerConfig{
		Pools: &poolsfile.Config{Pools: []poolsfile.PoolConfig{pool}}, Registry: reg, Env: kubeEnvFor(owner, nil),
		View: view.v.Load, Interval: 50 * time.Millisecond, Registerer: km.reg, Logger: workerstest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	km.m = m
	ctx, cancel := context.WithCancel(context.Background())
	km.cancel = cancel
	go func() {
		defer close(km.stopped)
		m.Run(ctx)
	}()
	t.Cleanup(km.stop)
	return km
}

func (km *kubeManager) stop() {
	km.cancel()
	<-km.stopped
	km.mu.Lock()
	defer km.mu.Unlock()
	km.kube.Close()
}

func (km *kubeManager) pool() workers.PoolStatus { return km.m.Pools()[0] }

// actions counts the manager's actions of a kind.
func (km *kubeManager) actions(t *testing.T, kind string) int {
	t.Helper()
	return workerstest.ActionCount(t, km.reg, kind)
}

func kubeDemand(jobs int) orchestrator.DemandView {
	return orchestrator.DemandView{CPUMilli: 500, Memory: 256 << 20, Labels: []string{"linux"}, Jobs: jobs}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestKubernetesManagerAdoptsPodsAfterRestart runs the worker manager on
// the real API server with kwok: three queued jobs make three pods, which
// reach Running. The server dies (no worker is terminated) and one agent
// exits meanwhile. The restarted manager (a new provider and manager, the
// same owner) finds the pods again: the one that exited is deleted, the two
// that run are adopted and counted in the pool, and no pod is created for
// the two jobs still queued. When the jobs are canceled and the workers
// stay idle, the manager scales the adopted pods down: they are deleted.
func TestKubernetesManagerAdoptsPodsAfterRestart(t *testing.T) {
	e := kubeTest(t)
	e.schedule(t)
	pool := kubePool(e, "kube")
	pool.Ephemeral, pool.Min, pool.Max, pool.IdleTimeout = false, 0, 3, 200*time.Millisecond
	view := &fakeView{}
	view.set(nil, kubeDemand(3))
	start := time.Now()
	first := startKubeManager(t, pool, "srv1", view)
	var ids []string
	workerstest.WaitFor(t, 60*time.Second, "three worker pods to run", func() bool {
		ph := e.podPhases(t, "hodei.dev/pool=kube")
		ids = sortedKeys(ph)
		running := 0
		for _, p := range ph {
			if p == corev1.PodRunning {
				running++
			}
		}
		return running == 3
	})
	t.Logf("3 pods Running %s after the manager started", time.Since(start).Round(time.Millisecond))
	if st := first.pool(); st.Size != 3 || st.Adopted != 0 || first.actions(t, "create") != 3 {
		t.Errorf("first manager: pool %+v, %d creates", st, first.actions(t, "create"))
	}
	first.stop()

	// While the server is down, the agent of the first pod exits (its job
	// done): the kubelet reports the pod Succeeded.
	e.setPodStatus(t, kubernetes.PodName(ids[0]), agentExited(0))
	view.set(nil, kubeDemand(2))
	second := startKubeManager(t, pool, "srv1", view)
	workerstest.WaitFor(t, 30*time.Second, "the restarted manager to adopt two pods and delete the exited one", func() bool {
		st := second.pool()
		ph := e.podPhases(t, "hodei.dev/pool=kube")
		_, exitedLeft := ph[ids[0]]
		return st.Size == 2 && st.Adopted == 2 && st.Pending == 2 && st.Demand == 2 && !exitedLeft
	})
	if got := sortedKeys(e.podPhases(t, "hodei.dev/pool=kube")); !slices.Equal(got, ids[1:]) {
		t.Errorf("pods after the restart: %v, want the two that ran before it, %v", got, ids[1:])
	}
	if n := second.actions(t, "create"); n != 0 {
		t.Errorf("the restarted manager created %d workers for demand its adopted workers cover", n)
	}

	// The queued jobs are canceled; the agents (as their heartbeats would
	// say) are idle. The pool's min is 0: both are scaled down, and the
	// pods are deleted (kwok removes them from its node).
	view.set([]orchestrator.WorkerView{
		{ID: ids[1], Pool: "kube", State: "idle"},
		{ID: ids[2], Pool: "kube", State: "idle"},
	})
	workerstest.WaitFor(t, 30*time.Second, "the idle adopted pods to be deleted", func() bool {
		return len(e.podPhases(t, "hodei.dev/pool=kube")) == 0 && second.pool().Size == 0
	})
	if n := second.actions(t, "create"); n != 0 {
		t.Errorf("the restarted manager created %d workers", n)
	}
}

// TestKubernetesEphemeralPodDeletedWhenJobEnds: a queued job makes a pod
// of an ephemeral pool; it runs (kwok); its agent takes the job; when the
// job ends the agent exits (the test reports the pod Succeeded, as the
// kubelet would) and the manager deletes the pod.
func TestKubernetesEphemeralPodDeletedWhenJobEnds(t *testing.T) {
	e := kubeTest(t)
	e.schedule(t)
	pool := kubePool(e, "eph")
	pool.Max = 1
	view := &fakeView{}
	view.set(nil, kubeDemand(1))
	km := startKubeManager(t, pool, "srv1", view)
	var id string
	workerstest.WaitFor(t, 60*time.Second, "the worker pod to run", func() bool {
		for w, p := range e.podPhases(t, "hodei.dev/pool=eph") {
			id = w
			return p == corev1.PodRunning
		}
		return false
	})
	// The agent joined and took the job.
	view.set([]orchestrator.WorkerView{{ID: id, Pool: "eph", State: "draining", Jobs: []string{"job-1"}}})
	workerstest.WaitFor(t, 10*time.Second, "the manager to see the worker busy", func() bool { return km.pool().Draining == 1 })
	if ph := e.podPhases(t, "hodei.dev/pool=eph"); ph[id] != corev1.PodRunning {
		t.Fatalf("pod of a worker with a job: %v", ph)
	}
	ended := time.Now()
	e.setPodStatus(t, kubernetes.PodName(id), agentExited(0))
	workerstest.WaitFor(t, 30*time.Second, "the pod of the exited worker to be deleted", func() bool {
		return len(e.podPhases(t, "hodei.dev/pool=eph")) == 0 && km.pool().Size == 0
	})
	t.Logf("pod deleted %s after its agent exited", time.Since(ended).Round(time.Millisecond))
	if n := km.actions(t, "create"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
}
