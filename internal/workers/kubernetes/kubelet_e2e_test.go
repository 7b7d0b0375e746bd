//go:build kubernetes

package kubernetes_test

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// kubeletTest is a namespace whose pods the test binds to the node of the
// real kubelet (HODEI_KUBELET_NODE), with HODEI_KUBELET_IMAGE, the image
// that holds the hodei binary at /hodei. Pods on the node's network are
// "privileged" for Pod Security.
func kubeletTest(t *testing.T) *kubeEnv {
	t.Helper()
	node, image := os.Getenv("HODEI_KUBELET_NODE"), os.Getenv("HODEI_KUBELET_IMAGE")
	if node == "" || image == "" {
		t.Fatal("HODEI_KUBELET_NODE and HODEI_KUBELET_IMAGE are not set: scripts/test starts a kubelet and imports the image for this test (go test -tags kubernetes)")
	}
	e := kubeEnvOn(t, node, "privileged")
	e.image = image
	e.schedule(t)
	return e
}

// kubeletPool is a pools file of one ephemeral pool, name, whose pods run
// on the kubelet's node in its network; jobs reach it by the label name.
func (e *kubeEnv) kubeletPool(name string) string {
	return fmt.Sprintf(`
pools:
  %s:
    provider: kubernetes
    min: 0
    max: 1
    ephemeral: true
    startup_delay: 5s
    shape: {cpu: 500m, memory: 256Mi, labels: [%s]}
    kubernetes:
      namespace: %s
      image: %s
      agent_image: %s
      host_network: true
      kubeconfig: %s
`, name, name, e.ns, e.image, e.image, e.kubeconfig)
}

// waitPodsDeleted waits (up to a minute) until the namespace has no pod
// left and the pool no worker, and logs how long that took. The manager
// deletes an ephemeral worker's pod once its agent has exited: the test
// polls the API server for it.
func (e *kubeEnv) waitPodsDeleted(t *testing.T, s *server.Server, pool, what string) {
	t.Helper()
	ended := time.Now()
	workerstest.WaitFor(t, 60*time.Second, what, func() bool {
		pods, err := e.admin.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0 && workerstest.PoolStatus(s, pool).Size == 0
	})
	t.Logf("run end to pod deleted: %s", time.Since(ended).Round(time.Millisecond))
}

// runningPod waits (up to timeout) for the first pod of the namespace to
// be running and returns it. The kubelet reports the phase on its own
// schedule: the test polls the API server for it.
func (e *kubeEnv) runningPod(t *testing.T, timeout time.Duration, what string) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	workerstest.WaitFor(t, timeout, what, func() bool {
		pods, err := e.admin.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			return false
		}
		pod = pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning
	})
	return pod
}

// TestKubernetesKubeletRunsAgent: on a node with a real kubelet and
// containerd (scripts/test starts them; HODEI_KUBELET_NODE names the node
// and HODEI_KUBELET_IMAGE the image that holds the hodei binary at /hodei),
// a queued job makes the manager create a worker pod with the hardened
// spec; its init container copies the agent binary, the agent starts as
// uid 65532 on a read-only root, joins the server's NATS (the pod is on the
// node's network), runs the job and, being ephemeral, exits; the manager
// deletes the pod.
func TestKubernetesKubeletRunsAgent(t *testing.T) {
	e := kubeletTest(t)
	s := startServer(t, e.kubeletPool("pods"), 0, func(o *server.Options) { o.NATSListen = "" })
	start := time.Now()
	run := workerstest.Submit(t, s, `name: in-a-pod
jobs:
  hello:
    runs-on: {labels: [pods], cpu: 500m, memory: 128Mi}
    steps:
      - run: echo "hello from $HODEI_WORKER as $(id -u)"
      - run: 'test -x /opt/hodei/hodei && if touch /opt/hodei/x 2>/dev/null; then echo "agent volume writable"; else echo "read-only agent volume"; fi'
`)
	pod := e.runningPod(t, 60*time.Second, "a worker pod running on the node")
	if pod.Spec.NodeName != e.node || !pod.Spec.HostNetwork {
		t.Errorf("pod %s: node %q, host network %v", pod.Name, pod.Spec.NodeName, pod.Spec.HostNetwork)
	}
	r, jobs := workerstest.WaitRun(t, s, run.ID, 120*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v", r.State, jobs["hello"])
	}
	t.Logf("submit to run succeeded in a new pod: %s", time.Since(start).Round(time.Millisecond))
	worker := jobs["hello"].WorkerID
	out := workerstest.LogsOf(t, s, jobs["hello"].ID)
	for _, want := range []string{"hello from " + worker + " as 65532", "read-only agent volume"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if w := pod.Annotations[kubernetes.KubeLabelWorker]; w != worker {
		t.Errorf("the job ran on worker %s, the pod is worker %s's", worker, w)
	}
	e.waitPodsDeleted(t, s, "pods", "the ephemeral worker's pod to be deleted")
}

// TestKubernetesKubeletAgentOverMutualTLS: with a NATS that requires client
// certificates, the server issues each worker pod's agent a certificate,
// stored in a Secret the pod mounts read-only (owned by the pod); the agent
// joins with it and runs a job; the Secret goes with the worker.
func TestKubernetesKubeletAgentOverMutualTLS(t *testing.T) {
	e := kubeletTest(t)
	ca, natsTLS := workerstest.MutualTLS(t)
	s := startServer(t, e.kubeletPool("tlspods"), 0, func(o *server.Options) {
		o.NATSListen, o.NATSTLS, o.AgentCA = "", natsTLS, ca
	})
	worker, out := workerstest.RunHello(t, s, "tlspods", "ls /etc/hodei-tls", 120*time.Second)
	for _, want := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	workerstest.WaitFor(t, 60*time.Second, "the worker's pod and Secret to be deleted", func() bool {
		pods, err := e.admin.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
		secs, serr := e.admin.CoreV1().Secrets(e.ns).List(t.Context(), metav1.ListOptions{})
		n := 0
		if serr == nil {
			for _, sec := range secs.Items {
				if sec.Name == kubernetes.TLSSecretName(worker) {
					n++
				}
			}
		}
		return err == nil && serr == nil && len(pods.Items) == 0 && n == 0
	})
}

// TestKubernetesKubeletJobServices: a job with an image and a service on a
// kubernetes pool gets a pod of its own (made for its container), on the
// real kubelet: the agent container runs in the job's image, the service
// (busybox httpd serving a file it wrote) is a native sidecar the kubelet
// starts first and waits for (a TCP startup probe on its port), the agent
// waits for the port as well, and the steps fetch the file at
// 127.0.0.1:PORT and by the service's name (a host alias). The pod, its
// sidecar with it, is deleted after the job.
func TestKubernetesKubeletJobServices(t *testing.T) {
	e := kubeletTest(t)
	s := startServer(t, e.kubeletPool("svcpods"), 0, func(o *server.Options) { o.NATSListen = "" })
	// The pods are on the node's network: the service listens on a port
	// of the machine that is free now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	token := fmt.Sprintf("served-by-the-sidecar-%d", time.Now().UnixNano())
	start := time.Now()
	run := workerstest.Submit(t, s, fmt.Sprintf(`name: services-in-a-pod
jobs:
  fetch:
    image: %[1]s
    runs-on: {labels: [svcpods], cpu: 500m, memory: 128Mi}
    services:
      web:
        image: %[1]s
        command: [sh, -c, 'mkdir -p /tmp/www && echo "$TOKEN" >/tmp/www/index.html && exec httpd -f -p %[2]d -h /tmp/www']
        env: {TOKEN: %[3]s}
        ports: [%[2]d]
    steps:
      - run: 'echo "by port: $(wget -qO- http://127.0.0.1:%[2]d/index.html)"'
      - run: 'echo "by name: $(wget -qO- http://web:%[2]d/index.html)"'
`, e.image, port, token))
	pod := e.runningPod(t, 90*time.Second, "the job's pod running on the node")
	r, jobs := workerstest.WaitRun(t, s, run.ID, 120*time.Second)
	out := workerstest.LogsOf(t, s, jobs["fetch"].ID)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v\n%s", r.State, jobs["fetch"], out)
	}
	t.Logf("submit to run succeeded in a pod with a sidecar: %s", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"==> services web (" + e.image + ")", "<== services ready in", "by port: " + token, "by name: " + token} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	inits := pod.Spec.InitContainers
	if len(inits) != 2 || inits[1].Name != "svc-web" || inits[1].RestartPolicy == nil || *inits[1].RestartPolicy != corev1.ContainerRestartPolicyAlways ||
		inits[1].StartupProbe == nil || inits[1].StartupProbe.TCPSocket == nil {
		t.Errorf("the pod's init containers are not the agent's binary and the web sidecar: %+v", inits)
	}
	if pod.Annotations[kubernetes.KubeLabelContainer] == "" || pod.Annotations[kubernetes.KubeLabelWorker] != jobs["fetch"].WorkerID {
		t.Errorf("pod annotations %v; the job ran on %s", pod.Annotations, jobs["fetch"].WorkerID)
	}
	e.waitPodsDeleted(t, s, "svcpods", "the job's pod (and its sidecar) to be deleted")
	// The sidecar is gone with its pod: nothing answers on its port.
	workerstest.WaitFor(t, 30*time.Second, "the service's port to be closed", func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
}
