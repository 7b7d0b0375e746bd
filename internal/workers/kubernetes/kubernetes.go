// Package kubernetes is the provider of kubernetes pools (`provider:
// kubernetes`): each worker is a pod running `hodei agent`, made with
// client-go. It is the only package of Hodei that links client-go.
package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Provider is the provider of worker pods: each worker is one pod in the
// pool's namespace. An init container of the agent image copies the hodei
// binary into an emptyDir volume; the agent container (the pool's image)
// runs it as `hodei agent`, connected to the server's NATS, with the pool's
// shape as its requests and limits (equal: the pod's QoS is Guaranteed).
// Pods run as a non-root user with a read-only root file system, no
// privilege escalation, every capability dropped, no service account token
// (unless asked) and restartPolicy Never, so a pod whose agent exited stays
// exited; Terminate deletes it.
//
// Pods carry the labels hodei.dev/pool, hodei.dev/worker and hodei.dev/owner
// (label-safe values) and the same keys as annotations (exact values). A
// watch on the pool's label selector reports their lifecycle.
//
// After a restart of the server (the same Owner), List finds the pods that
// the previous run left in the pool, by label, and the Manager adopts the
// live ones into the pool and deletes the others (see
// docs/workers.md#kubernetes).
type Provider struct {
	pool      poolsfile.PoolConfig
	env       workers.ProviderEnv
	opts      poolsfile.KubernetesOptions
	client    kubernetes.Interface
	namespace string
	selector  string
	events    chan workers.Event
	stop      chan struct{}
	stopOnce  sync.Once
	informer  cache.SharedIndexInformer

	mu      sync.Mutex
	workers map[string]*kubeWorker
}

// kubeWorker is what the provider last reported of a worker pod.
type kubeWorker struct {
	started, exited, gone bool
}

var (
	_ workers.Provider         = (*Provider)(nil)
	_ workers.Lister           = (*Provider)(nil)
	_ workers.ContainerWorkers = (*Provider)(nil)
)

// MakesContainerWorkers: a kubernetes pool runs a job with an image in a
// pod of its own, whose agent container is the job's image and whose
// services are sidecars (WorkerSpec.Container).
func (p *Provider) MakesContainerWorkers() bool { return true }

// Names, labels and paths of worker pods.
const (
	KubeLabelPool   = "hodei.dev/pool"
	KubeLabelWorker = "hodei.dev/worker"
	KubeLabelOwner  = "hodei.dev/owner"
	// KubeLabelContainer is the container key of a pod made for the jobs
	// of one container (WorkerSpec.Container).
	KubeLabelContainer = "hodei.dev/container"
	kubeManagedBy      = "app.kubernetes.io/managed-by"
	kubeAgentName      = "agent"
	kubeInitName       = "hodei-bin"
	// kubeServicePrefix starts the container names of services.
	kubeServicePrefix = "svc-"
	kubeBinVolume     = "hodei-bin"
	kubeBinDir        = "/opt/hodei"
	kubeWorkVolume    = "workspace"
	kubeWorkDir       = "/workspace"
	kubeTmpVolume     = "tmp"
	kubeTLSVolume     = "hodei-tls"
	kubeTLSDir        = "/etc/hodei-tls"
	kubeAgentSource   = "/hodei"
	kubeRunAsUser     = int64(65532)
	kubeGPUResource   = "nvidia.com/gpu"
)

// New makes the provider of a kubernetes pool (a
// Factory). It connects with pool.Kubernetes.Kubeconfig, else in the
// cluster with the pod's service account, else KUBECONFIG or
// ~/.kube/config.
func New(pool poolsfile.PoolConfig, env workers.ProviderEnv) (workers.Provider, error) {
	o := pool.Kubernetes
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	return NewForConfig(pool, env, cfg)
}

// NewForConfig makes the provider of a kubernetes pool that
// reaches the API server with cfg.
func NewForConfig(pool poolsfile.PoolConfig, env workers.ProviderEnv, cfg *rest.Config) (*Provider, error) {
	o := pool.Kubernetes
	switch {
	case env.NATSURL == "":
		return nil, errors.New("kubernetes workers need the server's NATS to listen on TCP (--nats-listen) at an address the pods reach")
	case o.Namespace == "":
		return nil, errors.New("kubernetes.namespace is required")
	case o.Image == "" || o.AgentImage == "":
		return nil, errors.New("kubernetes.image and kubernetes.agent_image are required")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "hodei-worker-provider"
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		pool: pool, env: env, opts: o, client: cs, namespace: o.Namespace,
		events: make(chan workers.Event, 256), stop: make(chan struct{}), workers: map[string]*kubeWorker{},
	}
	p.selector = labels.SelectorFromSet(p.poolLabels()).String()
	p.startWatch()
	return p, nil
}

// Close stops the watch. Pods are left as they are.
func (p *Provider) Close() { p.stopOnce.Do(func() { close(p.stop) }) }

// owner names this server's pool among others in the namespace.
func (p *Provider) owner() string { return p.env.Owner + "." + p.pool.Name }

// poolLabels select the pods of this pool made by this server.
func (p *Provider) poolLabels() map[string]string {
	return map[string]string{
		kubeManagedBy:  "hodei",
		KubeLabelPool:  labelValue(p.pool.Name),
		KubeLabelOwner: labelValue(p.owner()),
	}
}

// Selector is the label selector of this pool's pods.
func (p *Provider) Selector() string { return p.selector }

// Namespace is where the pool's pods are.
func (p *Provider) Namespace() string { return p.namespace }

// List returns the worker pods of this pool made by this server (the same
// Owner), a previous run's included, found by label (and checked against
// the exact owner in the annotation), and makes them this provider's own:
// their events are reported from now on. A pod being deleted is reported
// gone; Succeeded and Failed ones exited.
func (p *Provider) List(ctx context.Context) ([]workers.ListedWorker, error) {
	if p.env.Owner == "" {
		return nil, nil
	}
	pods, err := p.client.CoreV1().Pods(p.namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector})
	if err != nil {
		return nil, classifyKube(err)
	}
	out := make([]workers.ListedWorker, 0, len(pods.Items))
	var known []*corev1.Pod
	p.mu.Lock()
	for i := range pods.Items {
		pod := &pods.Items[i]
		id := pod.Annotations[KubeLabelWorker]
		if id == "" || pod.Annotations[KubeLabelOwner] != p.owner() {
			continue
		}
		st := podStatus(id, pod)
		if pod.DeletionTimestamp != nil {
			st.Phase = workers.PhaseGone
		}
		out = append(out, workers.ListedWorker{
			Ref:       workers.WorkerRef{ID: id, Pool: p.pool.Name, Provider: "kubernetes", Handle: p.namespace + "/" + pod.Name},
			Status:    st,
			CreatedAt: pod.CreationTimestamp.Time,
		})
		if _, ok := p.workers[id]; !ok {
			p.workers[id] = &kubeWorker{started: st.Phase == workers.PhaseRunning || st.Phase == workers.PhaseExited, exited: st.Phase == workers.PhaseExited}
		}
		known = append(known, pod)
	}
	p.mu.Unlock()
	// A change the watch saw between the list and now was dropped (the
	// worker was not known yet): look again at what the watch has.
	for _, pod := range known {
		if obj, ok, _ := p.informer.GetStore().Get(pod); ok {
			p.observe(obj)
		}
	}
	return out, nil
}

var (
	labelValueOK = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	dnsLabelOK   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	notDNS       = regexp.MustCompile(`[^a-z0-9-]+`)
	notLabel     = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
)

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:5])
}

// labelValue is s if it is a valid label value, else a valid one made from
// it with a hash of s (the exact value is in the annotation).
func labelValue(s string) string {
	if len(s) <= 63 && labelValueOK.MatchString(s) {
		return s
	}
	v := notLabel.ReplaceAllString(s, "-")
	if len(v) > 52 {
		v = v[:52]
	}
	v = strings.Trim(v, "-_.")
	if v == "" {
		return "h" + shortHash(s)
	}
	return v + "-" + shortHash(s)
}

// PodName is the name of the pod of worker id: "hodei-" and the id when
// it is a valid DNS label, else a valid one made from it with a hash.
func PodName(id string) string {
	name := "hodei-" + id
	if len(name) <= 63 && dnsLabelOK.MatchString(name) {
		return name
	}
	v := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(id), "-"), "-")
	if len(v) > 45 {
		v = strings.TrimRight(v[:45], "-")
	}
	if v == "" {
		return "hodei-" + shortHash(id)
	}
	return "hodei-" + v + "-" + shortHash(id)
}

// PodSpec is the pod of a worker (what Create sends).
func (p *Provider) PodSpec(spec workers.WorkerSpec, env []corev1.EnvVar) *corev1.Pod {
	image := spec.Image
	if image == "" {
		image = p.opts.Image
	}
	args := workers.WalledAgentArgs(kubeBinDir+"/hodei", kubeWorkDir, spec, p.env)
	if spec.Container != "" {
		// The agent container is the jobs' container: their steps run in
		// it, once their services answer.
		args = append(args, "--job-container", spec.Container)
	}
	if p.env.AgentCert != nil {
		args = append(args, "--tls-cert", kubeTLSDir+"/tls.crt", "--tls-key", kubeTLSDir+"/tls.key", "--ca", kubeTLSDir+"/ca.crt")
	}
	res := corev1.ResourceList{}
	if spec.Resources.CPUMilli > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(spec.Resources.CPUMilli, resource.DecimalSI)
	}
	if spec.Resources.Memory > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(spec.Resources.Memory, resource.BinarySI)
	}
	if spec.Resources.GPU > 0 {
		res[kubeGPUResource] = *resource.NewQuantity(int64(spec.Resources.GPU), resource.DecimalSI)
	}
	resources := corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()}
	secCtx := func() *corev1.SecurityContext {
		return &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                new(kubeRunAsUser),
			RunAsGroup:               new(kubeRunAsUser),
			AllowPrivilegeEscalation: new(false),
			Privileged:               new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	lbls := p.poolLabels()
	lbls[KubeLabelWorker] = labelValue(spec.ID)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(spec.ID),
			Namespace: p.namespace,
			Labels:    lbls,
			Annotations: map[string]string{
				KubeLabelPool:   spec.Pool,
				KubeLabelWorker: spec.ID,
				KubeLabelOwner:  p.owner(),
			},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ServiceAccountName:            p.opts.ServiceAccount,
			AutomountServiceAccountToken:  new(p.opts.AutomountServiceAccountToken),
			EnableServiceLinks:            new(false),
			HostNetwork:                   p.opts.HostNetwork,
			TerminationGracePeriodSeconds: new(int64(30)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				RunAsUser:      new(kubeRunAsUser),
				RunAsGroup:     new(kubeRunAsUser),
				FSGroup:        new(kubeRunAsUser),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{{
				Name:            kubeInitName,
				Image:           p.opts.AgentImage,
				Command:         []string{"cp", kubeAgentSource, kubeBinDir + "/hodei"},
				Resources:       *resources.DeepCopy(),
				SecurityContext: secCtx(),
				VolumeMounts:    []corev1.VolumeMount{{Name: kubeBinVolume, MountPath: kubeBinDir}},
			}},
			Containers: []corev1.Container{{
				Name:            kubeAgentName,
				Image:           image,
				Command:         args,
				Env:             env,
				WorkingDir:      kubeWorkDir,
				Resources:       resources,
				SecurityContext: secCtx(),
				VolumeMounts: []corev1.VolumeMount{
					{Name: kubeBinVolume, MountPath: kubeBinDir, ReadOnly: true},
					{Name: kubeWorkVolume, MountPath: kubeWorkDir},
					{Name: kubeTmpVolume, MountPath: "/tmp"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: kubeBinVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: kubeWorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: kubeTmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if spec.Container != "" {
		pod.Labels[KubeLabelContainer] = labelValue(spec.Container)
		pod.Annotations[KubeLabelContainer] = spec.Container
	}
	if len(spec.Services) > 0 {
		sidecars, aliases := serviceSidecars(spec.Services, *resources.DeepCopy())
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, sidecars...)
		pod.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: aliases}}
	}
	if p.env.AgentCert != nil {
		// The agent's certificate, from the worker's Secret (TLSSecretName),
		// readable by the pod's group only.
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: kubeTLSVolume, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: TLSSecretName(spec.ID), DefaultMode: new(int32(0o440))}}})
		c := &pod.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: kubeTLSVolume, MountPath: kubeTLSDir, ReadOnly: true})
	}
	return pod
}

// TLSSecretName is the Secret that holds the agent certificate of worker
// id's pod (with ProviderEnv.AgentCert).
func TLSSecretName(id string) string { return PodName(id) + "-tls" }

// createTLSSecret stores the certificate issued for worker id in the
// Secret its pod mounts, owned by the pod so that the cluster removes it
// with the pod; one that exists (a retried create) is kept.
func (p *Provider) createTLSSecret(ctx context.Context, id string, pod *corev1.Pod) error {
	c, err := p.env.AgentCert(id)
	if err != nil {
		return fmt.Errorf("agent certificate for %s: %w", id, err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: TLSSecretName(id), Namespace: p.namespace, Labels: pod.Labels,
			Annotations:     map[string]string{KubeLabelWorker: id, KubeLabelOwner: p.owner()},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: c.CertPEM, corev1.TLSPrivateKeyKey: c.KeyPEM, "ca.crt": c.CAPEM},
	}
	_, err = p.client.CoreV1().Secrets(p.namespace).Create(ctx, sec, metav1.CreateOptions{FieldManager: "hodei"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return classifyKube(err)
	}
	return nil
}

// Create creates a worker pod. A pod of the same worker that exists (a
// retried create) is returned as it is.
func (p *Provider) Create(ctx context.Context, spec workers.WorkerSpec) (workers.WorkerRef, error) {
	env := make([]corev1.EnvVar, 0, len(spec.Env)+len(spec.Secrets))
	for k, v := range spec.Env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	secrets, err := workers.SecretValues(ctx, p.env, spec.Secrets)
	if err != nil {
		return workers.WorkerRef{}, err
	}
	for i, name := range spec.Secrets {
		env = append(env, corev1.EnvVar{Name: name, Value: secrets[i]})
	}
	sort.Slice(env, func(i, k int) bool { return env[i].Name < env[k].Name })
	pod := p.PodSpec(spec, env)
	got, err := p.client.CoreV1().Pods(p.namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: "hodei"})
	if apierrors.IsAlreadyExists(err) {
		got, err = p.client.CoreV1().Pods(p.namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && got.Annotations[KubeLabelWorker] != spec.ID {
			return workers.WorkerRef{}, fmt.Errorf("pod %s/%s exists and is not worker %s", p.namespace, pod.Name, spec.ID)
		}
	}
	if err != nil {
		return workers.WorkerRef{}, classifyKube(err)
	}
	if p.env.AgentCert != nil {
		// The pod waits for its Secret (the kubelet retries the mount).
		if err := p.createTLSSecret(ctx, spec.ID, got); err != nil {
			return workers.WorkerRef{}, err
		}
	}
	p.mu.Lock()
	_, known := p.workers[spec.ID]
	if !known {
		p.workers[spec.ID] = &kubeWorker{}
	}
	p.mu.Unlock()
	if !known {
		workers.Emit(p.events, workers.Event{Kind: workers.EventCreated, ID: spec.ID, Pool: spec.Pool})
	}
	p.observe(got)
	return workers.WorkerRef{ID: spec.ID, Pool: spec.Pool, Provider: "kubernetes", Handle: p.namespace + "/" + got.Name}, nil
}

// deletePod deletes a pod; one that is not there is deleted.
func (p *Provider) deletePod(ctx context.Context, name string) error {
	err := p.client.CoreV1().Pods(p.namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: new(metav1.DeletePropagationBackground),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return classifyKube(err)
	}
	return nil
}

// Terminate deletes a worker pod (the kubelet stops the agent and its jobs,
// with the pod's grace period). A pod that is not there is a success.
func (p *Provider) Terminate(ctx context.Context, id string) error {
	if err := p.deletePod(ctx, PodName(id)); err != nil {
		return err
	}
	if p.env.AgentCert != nil {
		err := p.client.CoreV1().Secrets(p.namespace).Delete(ctx, TLSSecretName(id), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return classifyKube(err)
		}
	}
	p.markGone(id)
	return nil
}

// markGone reports a worker gone, once.
func (p *Provider) markGone(id string) {
	p.mu.Lock()
	w, known := p.workers[id]
	if known {
		delete(p.workers, id)
	}
	p.mu.Unlock()
	if known && !w.gone {
		workers.Emit(p.events, workers.Event{Kind: workers.EventGone, ID: id, Pool: p.pool.Name})
	}
}

// Status reads the pod's phase: Pending is creating, Running is running,
// Succeeded and Failed are exited (with the agent container's exit code).
func (p *Provider) Status(ctx context.Context, id string) (workers.WorkerStatus, error) {
	pod, err := p.client.CoreV1().Pods(p.namespace).Get(ctx, PodName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return workers.WorkerStatus{}, workers.ErrNotFound
	}
	if err != nil {
		return workers.WorkerStatus{}, classifyKube(err)
	}
	return podStatus(id, pod), nil
}

func podStatus(id string, pod *corev1.Pod) workers.WorkerStatus {
	ws := workers.WorkerStatus{ID: id, Detail: string(pod.Status.Phase)}
	if pod.Status.Reason != "" {
		ws.Detail += ": " + pod.Status.Reason
	}
	switch pod.Status.Phase {
	case corev1.PodPending, "":
		ws.Phase = workers.PhaseCreating
		if w := waitingReason(pod); w != "" {
			ws.Detail += ": " + w
		}
	case corev1.PodSucceeded, corev1.PodFailed:
		ws.Phase, ws.ExitCode = workers.PhaseExited, agentExitCode(pod)
	default: // Running, Unknown (the node is not reachable)
		ws.Phase = workers.PhaseRunning
	}
	if pod.DeletionTimestamp != nil {
		ws.Detail += " (terminating)"
	}
	return ws
}

func waitingReason(pod *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return cs.Name + " " + w.Reason
		}
	}
	return ""
}

func agentExitCode(pod *corev1.Pod) int {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == kubeAgentName && cs.State.Terminated != nil {
			return int(cs.State.Terminated.ExitCode)
		}
	}
	if pod.Status.Phase == corev1.PodFailed {
		return 1
	}
	return 0
}

// Logs copies the agent container's output, through the API server
// (pods/log).
func (p *Provider) Logs(ctx context.Context, id string, w io.Writer) error {
	rc, err := p.client.CoreV1().Pods(p.namespace).GetLogs(PodName(id), &corev1.PodLogOptions{Container: kubeAgentName}).Stream(ctx)
	if apierrors.IsNotFound(err) {
		return workers.ErrNotFound
	}
	if err != nil {
		return classifyKube(err)
	}
	defer func() { _ = rc.Close() }()
	_, err = io.Copy(w, rc)
	return err
}

// Capacity has no known limit: the cluster's scheduler and quotas decide
// (reading nodes would need a cluster role).
func (p *Provider) Capacity(context.Context) (workers.Capacity, error) {
	return workers.Capacity{Workers: -1, CPUMilli: -1, Memory: -1}, nil
}

// Events reports worker pods created, started (Running), exited (Succeeded
// or Failed) and gone (deleted), from a watch on the pool's pods.
func (p *Provider) Events() <-chan workers.Event { return p.events }

// startWatch runs an informer on the pool's pods: it lists, then watches,
// and lists again after a broken watch.
func (p *Provider) startWatch() {
	pods := p.client.CoreV1().Pods(p.namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = p.selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = p.selector
			return pods.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	p.informer = inf
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.observe(obj) },
		UpdateFunc: func(_, obj any) { p.observe(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				if id := pod.Annotations[KubeLabelWorker]; id != "" {
					p.markGone(id)
				}
			}
		},
	})
	go inf.Run(p.stop)
}

// observe reports the changes of a pod of a worker this provider knows.
func (p *Provider) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	id := pod.Annotations[KubeLabelWorker]
	p.mu.Lock()
	w := p.workers[id]
	var out []workers.Event
	if w != nil {
		switch pod.Status.Phase {
		case corev1.PodRunning:
			if !w.started {
				w.started = true
				out = append(out, workers.Event{Kind: workers.EventStarted, ID: id, Pool: p.pool.Name})
			}
		case corev1.PodSucceeded, corev1.PodFailed:
			if !w.started {
				w.started = true
				out = append(out, workers.Event{Kind: workers.EventStarted, ID: id, Pool: p.pool.Name})
			}
			if !w.exited {
				w.exited = true
				e := workers.Event{Kind: workers.EventExited, ID: id, Pool: p.pool.Name, ExitCode: agentExitCode(pod)}
				if pod.Status.Phase == corev1.PodFailed {
					e.Err = strings.TrimSpace(pod.Status.Reason + " " + pod.Status.Message)
				}
				out = append(out, e)
			}
		}
	}
	p.mu.Unlock()
	for _, e := range out {
		workers.Emit(p.events, e)
	}
}

// classifyKube marks the API server's errors that may go away on a retry.
func classifyKube(err error) error {
	if err == nil {
		return nil
	}
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err) {
		return workers.Transient(err)
	}
	return err
}

// serviceSidecars makes a job's services native sidecars of its pod: init
// containers that keep running (restartPolicy: Always), started in order
// after the agent's binary is copied, each one waited for until its
// startup probe (its health check) passes before the next, and the agent
// last. Containers of a pod share its network, so each service's name is
// an alias of 127.0.0.1 (hostAliases): steps reach db:5432 as on Docker.
// Each has the worker's resources as requests and limits, and the pod's
// restricted security context but for a writable root file system.
func serviceSidecars(svcs []pipeline.Service, res corev1.ResourceRequirements) ([]corev1.Container, []string) {
	always := corev1.ContainerRestartPolicyAlways
	out := make([]corev1.Container, 0, len(svcs))
	aliases := make([]string, 0, len(svcs))
	for _, s := range svcs {
		name := kubeServicePrefix + s.Name
		if len(name) > 63 {
			name = name[:63]
		}
		c := corev1.Container{
			Name:          strings.TrimRight(name, "-"),
			Image:         s.Image,
			Command:       s.Entrypoint,
			Args:          s.Command,
			RestartPolicy: &always,
			Resources:     *res.DeepCopy(),
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot:             new(true),
				AllowPrivilegeEscalation: new(false),
				Privileged:               new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		}
		for _, k := range slices.Sorted(maps.Keys(s.Env)) {
			c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: s.Env[k]})
		}
		for _, port := range s.Ports {
			c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: int32(port), Protocol: corev1.ProtocolTCP})
		}
		switch h := s.Health; {
		case h != nil:
			c.StartupProbe = &corev1.Probe{
				ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", h.Cmd}}},
				PeriodSeconds:    seconds(h.Interval),
				TimeoutSeconds:   seconds(h.Timeout),
				FailureThreshold: int32(h.Retries),
			}
		case len(s.Ports) > 0:
			// No check given: ready once its first port takes
			// connections (an image's HEALTHCHECK is Docker's, not the
			// kubelet's).
			c.StartupProbe = &corev1.Probe{
				ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(s.Ports[0])}},
				PeriodSeconds:    seconds(pipeline.DefaultHealthInterval),
				TimeoutSeconds:   seconds(pipeline.DefaultHealthTimeout),
				FailureThreshold: pipeline.DefaultHealthRetries,
			}
		}
		out = append(out, c)
		aliases = append(aliases, s.Name)
	}
	return out, aliases
}

// seconds rounds a duration up to whole seconds, at least 1 (probes count
// in seconds).
func seconds(d time.Duration) int32 {
	s := int32((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
