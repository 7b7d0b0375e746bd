package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// manifest is one object of deploy/kubernetes, decoded.
type manifest struct {
	file string
	obj  runtime.Object
}

// loadManifests reads the Kustomize base deploy/kubernetes: the files its
// kustomization.yaml lists, each document decoded strictly (an unknown or
// repeated field is an error) into the API's own types.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	dir := filepath.Join(repoRoot(), "deploy", "kubernetes")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	onDisk, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, p := range onDisk {
		if name := filepath.Base(p); name != "kustomization.yaml" && !slices.Contains(k.Resources, name) {
			t.Errorf("deploy/kubernetes/%s is not in kustomization.yaml's resources", name)
		}
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	for _, name := range k.Resources {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", name, err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out = append(out, manifest{file: name, obj: obj})
		}
		f.Close()
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range strings.SplitSeq(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// TestManifestsHoldTogether: every object of the Kustomize base decodes
// strictly into its API type and names its namespace; the references
// between objects resolve (Services select pods of a workload,
// StatefulSets name a headless Service, pods name ServiceAccounts and
// ConfigMaps that are there, RoleBindings a Role that is); every pod runs
// as the restricted Pod Security profile asks, with a read-only root file
// system and requests; the server has its probes on /readyz and /healthz,
// a volume for its data directory, and a pools file that the server's own
// parser accepts; the NATS reference has 3 nodes, each routed to all.
func TestManifestsHoldTogether(t *testing.T) {
	ms := loadManifests(t)
	type key struct{ kind, ns, name string }
	objs := map[key]runtime.Object{}
	type workload struct {
		name, ns string
		tmpl     corev1.PodTemplateSpec
	}
	var workloads []workload
	statefulSets := map[string]*appsv1.StatefulSet{}
	for _, m := range ms {
		acc, err := apimeta.Accessor(m.obj)
		if err != nil {
			t.Fatalf("%s: %v", m.file, err)
		}
		kind := reflect.TypeOf(m.obj).Elem().Name()
		if kind != "Namespace" && acc.GetNamespace() == "" {
			t.Errorf("%s: %s %s names no namespace", m.file, kind, acc.GetName())
		}
		k := key{kind, acc.GetNamespace(), acc.GetName()}
		if _, dup := objs[k]; dup {
			t.Errorf("%s: %s %s/%s twice", m.file, kind, k.ns, k.name)
		}
		objs[k] = m.obj
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			workloads = append(workloads, workload{o.Name, o.Namespace, o.Spec.Template})
			checkSelector(t, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
		case *appsv1.StatefulSet:
			workloads = append(workloads, workload{o.Name, o.Namespace, o.Spec.Template})
			statefulSets[o.Name] = o
			checkSelector(t, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
		}
	}
	has := func(kind, ns, name string) bool { _, ok := objs[key{kind, ns, name}]; return ok }
	for _, ns := range []string{"hodei", "hodei-workers"} {
		if !has("Namespace", "", ns) {
			t.Errorf("no Namespace %s", ns)
		}
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			n := 0
			for _, w := range workloads {
				if w.ns == o.Namespace && labels.SelectorFromSet(o.Spec.Selector).Matches(labels.Set(w.tmpl.Labels)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("Service %s selects the pods of %d workloads, want 1", o.Name, n)
			}
		case *rbacv1.RoleBinding:
			if !has("Role", o.Namespace, o.RoleRef.Name) {
				t.Errorf("RoleBinding %s/%s: no Role %s", o.Namespace, o.Name, o.RoleRef.Name)
			}
			for _, s := range o.Subjects {
				if s.Kind == "ServiceAccount" && !has("ServiceAccount", s.Namespace, s.Name) {
					t.Errorf("RoleBinding %s/%s: no ServiceAccount %s/%s", o.Namespace, o.Name, s.Namespace, s.Name)
				}
			}
		case *appsv1.StatefulSet:
			svc, ok := objs[key{"Service", o.Namespace, o.Spec.ServiceName}].(*corev1.Service)
			if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("StatefulSet %s: its serviceName %q is not a headless Service", o.Name, o.Spec.ServiceName)
			}
		}
	}
	for _, w := range workloads {
		checkPod(t, w.name, w.tmpl.Spec, func(kind, name string) bool { return has(kind, w.ns, name) })
	}

	server := statefulSets["hodei-server"]
	if server == nil {
		t.Fatal("no StatefulSet hodei-server")
	}
	c := server.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("server: want a readiness probe on /readyz and a liveness probe on /healthz, got %+v and %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/var/lib/hodei" && m.Name == "data" }) ||
		len(server.Spec.VolumeClaimTemplates) != 1 || server.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("server: its data directory /var/lib/hodei is not a volume of its own")
	}
	if server.Spec.Template.Spec.ServiceAccountName != "hodei-server" {
		t.Errorf("server: service account %q, want hodei-server (the worker pools' RBAC)", server.Spec.Template.Spec.ServiceAccountName)
	}
	pools, ok := objs[key{"ConfigMap", "hodei", "hodei-pools"}].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap hodei/hodei-pools")
	}
	cfg, err := poolsfile.ParseConfig("hodei-pools/pools.yaml", []byte(pools.Data["pools.yaml"]))
	if err != nil {
		t.Fatalf("the pools file of the ConfigMap: %v", err)
	}
	for _, p := range cfg.Pools {
		if p.Provider == "kubernetes" && !has("Role", p.Kubernetes.Namespace, "hodei-worker-provider") {
			t.Errorf("pool %s makes pods in %s, where the server has no Role", p.Name, p.Kubernetes.Namespace)
		}
	}
	env, ok := objs[key{"ConfigMap", "hodei", "hodei-server-env"}].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap hodei/hodei-server-env")
	}
	for k := range maps.Keys(env.Data) {
		if !strings.HasPrefix(k, "HODEI_") {
			t.Errorf("hodei-server-env: %s is not a HODEI_* setting", k)
		}
	}

	nats := statefulSets["nats"]
	if nats == nil || nats.Spec.Replicas == nil || *nats.Spec.Replicas != 3 {
		t.Fatalf("want a NATS StatefulSet of 3 nodes, got %+v", nats)
	}
	conf := objs[key{"ConfigMap", "hodei", "nats"}].(*corev1.ConfigMap).Data["nats.conf"]
	for i := range 3 {
		route := "nats://nats-" + string(rune('0'+i)) + ".nats.hodei.svc:6222"
		if !strings.Contains(conf, route) {
			t.Errorf("nats.conf has no route to node %d (%s)", i, route)
		}
		url := "nats://nats-" + string(rune('0'+i)) + ".nats.hodei.svc:4222"
		if !strings.Contains(env.Data["HODEI_NATS"], url) {
			t.Errorf("the server's HODEI_NATS does not name node %d (%s)", i, url)
		}
	}
}

func checkSelector(t *testing.T, name string, sel, tmpl map[string]string) {
	t.Helper()
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(tmpl)) {
		t.Errorf("%s: its selector %v does not select its own pods %v", name, sel, tmpl)
	}
}

// checkPod checks a pod template against the restricted Pod Security
// Standard and Hodei's own rules, and that the ServiceAccount and
// ConfigMaps it names exist (has); the Secret hodei-postgres is made by
// hand (kustomization.yaml says how).
func checkPod(t *testing.T, name string, spec corev1.PodSpec, has func(kind, name string) bool) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod must run as non-root with the RuntimeDefault seccomp profile", name)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", name)
	}
	if sa := spec.ServiceAccountName; sa != "" && !has("ServiceAccount", sa) {
		t.Errorf("%s: no ServiceAccount %s", name, sa)
	}
	if spec.ServiceAccountName == "" && (spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken) {
		t.Errorf("%s: a pod that does not call the API must not mount a token", name)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", name, v.Name)
		}
		if v.ConfigMap != nil && !has("ConfigMap", v.ConfigMap.Name) {
			t.Errorf("%s: no ConfigMap %s", name, v.ConfigMap.Name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || (sc.Privileged != nil && *sc.Privileged) {
			t.Errorf("%s/%s: want allowPrivilegeEscalation false, all capabilities dropped, a read-only root", name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: want cpu and memory requests and a memory limit", name, c.Name)
		}
		if c.Image == "" || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("%s/%s: image %q (name a version; the base's images: sets Hodei's)", name, c.Name, c.Image)
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil && !has("ConfigMap", ef.ConfigMapRef.Name) {
				t.Errorf("%s/%s: no ConfigMap %s", name, c.Name, ef.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name != "hodei-postgres" {
				t.Errorf("%s/%s: Secret %s is made by nobody", name, c.Name, r.SecretKeyRef.Name)
			}
		}
		mounted := map[string]bool{}
		for _, m := range c.VolumeMounts {
			mounted[m.MountPath] = true
		}
		if !mounted["/tmp"] && c.Name != "nats" {
			t.Errorf("%s/%s: no writable /tmp on its read-only root", name, c.Name)
		}
	}
}
