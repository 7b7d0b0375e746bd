//go:build kubernetes

package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hodei-ci/hodei/internal/state"
)

// TestKubernetesManifestsRunAPipeline applies every object of the
// Kustomize base deploy/kubernetes to the tests' API server (in two
// namespaces of its own, for hodei and hodei-workers), so that the API
// server validates each of them, then runs the server's StatefulSet and
// the agents' Deployment on the real kubelet (HODEI_KUBELET_NODE) and
// submits a pipeline that an agent pod runs.
//
// The tests' tier has no controller-manager, no scheduler, no registry and
// no pod network, so the test does what they would, and changes what this
// tier cannot run: it makes one pod from each template (as the StatefulSet
// and ReplicaSet controllers would, owned by their workload), binds them
// to the node (as kube-scheduler would), makes the namespaces'
// kube-root-ca.crt (as the root CA publisher would); the pods use the
// node's network (so the namespaces are "privileged" for Pod Security once
// a dry run has shown that their restricted profile admits both templates),
// HODEI_KUBELET_IMAGE (the hodei binary at /hodei), an emptyDir for the
// server's volume claim (no provisioner), and the server its embedded NATS
// and SQLite instead of the NATS and PostgreSQL references (whose images
// cannot be pulled), on free loopback ports, with --auth off (its token is
// in its log, which the API cannot read here).
func TestKubernetesManifestsRunAPipeline(t *testing.T) {
	node, image := os.Getenv("HODEI_KUBELET_NODE"), os.Getenv("HODEI_KUBELET_IMAGE")
	path := os.Getenv("KUBECONFIG")
	if node == "" || image == "" || path == "" {
		t.Fatal("KUBECONFIG, HODEI_KUBELET_NODE and HODEI_KUBELET_IMAGE must be set: scripts/test starts the API server and a kubelet for this test")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	nsOf := map[string]string{"hodei": "hodei-deploy-" + suffix, "hodei-workers": "hodei-deploy-workers-" + suffix}
	rename := func(ns string) string {
		if n, ok := nsOf[ns]; ok {
			return n
		}
		t.Fatalf("an object in namespace %q, which the test does not rename", ns)
		return ""
	}
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, ns := range nsOf {
			_ = kc.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			_ = kc.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	})

	// Apply: namespaces first, then the rest in the files' order.
	ms := loadManifests(t)
	var server *appsv1.StatefulSet
	var agents *appsv1.Deployment
	for pass := range 2 {
		for _, m := range ms {
			ns, isNS := m.obj.(*corev1.Namespace)
			if isNS != (pass == 0) {
				continue
			}
			var err error
			obj := m.obj.DeepCopyObject()
			// Every object but the namespace goes into the renamed one.
			if o, ok := obj.(metav1.Object); ok && !isNS {
				o.SetNamespace(rename(o.GetNamespace()))
			}
			switch o := obj.(type) {
			case *corev1.Namespace:
				o.Name = rename(ns.Name)
				_, err = kc.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
				if err == nil {
					_, err = kc.CoreV1().ConfigMaps(o.Name).Create(ctx, &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(ca)},
					}, metav1.CreateOptions{})
				}
				if err == nil { // the service account controller's
					_, err = kc.CoreV1().ServiceAccounts(o.Name).Create(ctx, &corev1.ServiceAccount{
						ObjectMeta: metav1.ObjectMeta{Name: "default"},
					}, metav1.CreateOptions{})
				}
			case *corev1.ServiceAccount:
				_, err = kc.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.Role:
				_, err = kc.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.RoleBinding:
				for i := range o.Subjects {
					o.Subjects[i].Namespace = rename(o.Subjects[i].Namespace)
				}
				_, err = kc.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *corev1.ConfigMap:
				if o.Name == "hodei-server-env" {
					// The embedded NATS and SQLite on loopback, no pools
					// (their pods would need the node's network too).
					delete(o.Data, "HODEI_STORE")
					delete(o.Data, "HODEI_NATS")
					delete(o.Data, "HODEI_POOLS")
					o.Data["HODEI_HTTP"] = httpAddr
					o.Data["HODEI_NATS_LISTEN"] = natsAddr
					o.Data["HODEI_AUTH"] = "off"
				}
				_, err = kc.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *corev1.Service:
				_, err = kc.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *appsv1.StatefulSet:
				var made *appsv1.StatefulSet
				made, err = kc.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
				if o.Name == "hodei-server" {
					server = made
				}
			case *appsv1.Deployment:
				var made *appsv1.Deployment
				made, err = kc.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
				if o.Name == "hodei-agent" {
					agents = made
				}
			default:
				t.Fatalf("%s: the test does not apply a %T", m.file, o)
			}
			if err != nil {
				t.Fatalf("%s: the API server refused it: %v", m.file, err)
			}
		}
	}
	if server == nil || agents == nil {
		t.Fatal("no StatefulSet hodei-server or Deployment hodei-agent")
	}
	if _, err := kc.CoreV1().Secrets(server.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "hodei-postgres"}, StringData: map[string]string{"password": suffix},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The namespaces enforce the restricted Pod Security profile: the API
	// server admits a pod of each template as it is (a dry run, with an
	// emptyDir for the server's volume claim) and refuses one on the
	// node's network. Then they are made "privileged" for the pods below,
	// which must use the node's network on this tier.
	data := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	dryRun := func(ns string, tmpl corev1.PodTemplateSpec, hostNetwork bool) error {
		spec := tmpl.Spec.DeepCopy()
		if len(spec.Containers) > 0 && slices.ContainsFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == data.Name }) {
			spec.Volumes = append(spec.Volumes, data)
		}
		spec.HostNetwork = hostNetwork
		_, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "dry-run-", Labels: tmpl.Labels}, Spec: *spec},
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	for _, w := range []struct {
		name, ns string
		tmpl     corev1.PodTemplateSpec
	}{{"StatefulSet hodei-server", server.Namespace, server.Spec.Template}, {"Deployment hodei-agent", agents.Namespace, agents.Spec.Template}} {
		if err := dryRun(w.ns, w.tmpl, false); err != nil {
			t.Errorf("a pod of the %s under the restricted profile: %v", w.name, err)
		}
		if err := dryRun(w.ns, w.tmpl, true); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
			t.Errorf("a pod of the %s on the node's network: %v, want refused by PodSecurity", w.name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, ns := range nsOf {
		patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)
		if _, err := kc.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// One pod of each workload, as their controllers would make it.
	run := func(name, ns string, owner metav1.OwnerReference, tmpl corev1.PodTemplateSpec, edit func(*corev1.PodSpec)) {
		t.Helper()
		spec := tmpl.Spec.DeepCopy()
		spec.HostNetwork = true
		spec.NodeName = node // bound as kube-scheduler would
		for i := range spec.Containers {
			c := &spec.Containers[i]
			c.Image, c.ImagePullPolicy, c.Command = image, corev1.PullNever, []string{"/hodei"}
			// The API cannot read the pods' logs here (no route to the
			// kubelet's API): a container that fails leaves the end of its
			// log in its status instead, for the test to print.
			c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
			// A pod on this node asks for little: the node is the test machine.
			c.Resources = corev1.ResourceRequirements{}
		}
		edit(spec)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{owner}}, Spec: *spec}
		if _, err := kc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("pod %s from its template: %v", name, err)
		}
	}
	isController := true
	run("hodei-server-0", server.Namespace, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: server.Name, UID: server.UID, Controller: &isController},
		server.Spec.Template, func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, data)
			c := &s.Containers[0]
			for i := range c.Ports {
				if c.Ports[i].Name == "http" {
					c.Ports[i].ContainerPort = int32(mustAtoi(t, httpPort))
				}
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p != nil && p.HTTPGet != nil {
					p.HTTPGet.Host = "127.0.0.1"
					p.HTTPGet.Port = intstr.FromString("http")
				}
			}
		})
	run("hodei-agent-"+suffix, agents.Namespace, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: agents.Name, UID: agents.UID},
		agents.Spec.Template, func(s *corev1.PodSpec) {
			c := &s.Containers[0]
			for i := range c.Env {
				switch c.Env[i].Name {
				case "HODEI_NATS":
					c.Env[i].Value = "nats://" + natsAddr
				case "HODEI_CPU":
					c.Env[i].Value = "1"
				case "HODEI_MEMORY":
					c.Env[i].Value = "1Gi"
				}
			}
		})

	// The kubelet says the server is ready when its readiness probe on
	// /readyz passes; a server that exits fails the test at once, with the
	// end of its log.
	waitFor(t, 120*time.Second, "the server pod to be Ready", func() bool {
		p, err := kc.CoreV1().Pods(server.Namespace).Get(ctx, "hodei-server-0", metav1.GetOptions{})
		if err != nil {
			return false
		}
		if exited := containerExits(p); exited != "" {
			t.Fatalf("the server pod's container exited: %s", exited)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	r, out := runPipeline(t, "http://"+httpAddr, "", `name: on-kubernetes
jobs:
  hello:
    steps: [{run: 'echo "hello from $HODEI_WORKER as $(id -u)"'}]
`)
	want := fmt.Sprintf("hello from hodei-agent-%s as 65532", suffix)
	if r.State != state.RunSucceeded || !strings.Contains(out, want) {
		var exited string
		if p, err := kc.CoreV1().Pods(agents.Namespace).Get(ctx, "hodei-agent-"+suffix, metav1.GetOptions{}); err == nil {
			exited = containerExits(p)
		}
		t.Fatalf("run %s ended %s, want %q in:\n%s\nthe agent pod's container exits: %q", r.ID, r.State, want, out, exited)
	}
	c := mustClient(t, "http://"+httpAddr, "")
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) != 1 {
		t.Fatalf("workers: %+v, %v (want the agent pod alone: the server runs no job)", ws, err)
	}
}

// containerExits describes the containers of pod that have exited (now or
// before a restart), with the end of their log, or is "".
func containerExits(pod *corev1.Pod) string {
	var b strings.Builder
	for _, c := range pod.Status.ContainerStatuses {
		for _, term := range []*corev1.ContainerStateTerminated{c.State.Terminated, c.LastTerminationState.Terminated} {
			if term != nil {
				fmt.Fprintf(&b, "%s: exit code %d (%s), restarts %d:\n%s\n", c.Name, term.ExitCode, term.Reason, c.RestartCount, term.Message)
				break
			}
		}
	}
	return b.String()
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
