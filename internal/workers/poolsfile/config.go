package poolsfile

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// Config is a pools file: the pools the Manager keeps.
type Config struct {
	File  string
	Pools []PoolConfig // sorted by name
}

// PoolConfig is one pool.
type PoolConfig struct {
	Name     string
	Provider string // local, docker or kubernetes
	// Min workers are kept at all times; at most Max exist.
	Min, Max int
	// IdleTimeout is how long a worker may stay idle before it is drained
	// and removed (never below Min).
	IdleTimeout time.Duration
	// StartupDelay is how long a new worker is expected to take to join;
	// the autoscaler provisions that much ahead.
	StartupDelay time.Duration
	CostPerHour  float64
	// Ephemeral workers run one job, then exit.
	Ephemeral bool
	Shape     Shape
	Docker    DockerOptions
	// Kubernetes are the options of a kubernetes pool.
	Kubernetes KubernetesOptions
	// Local are the options of a local pool.
	Local LocalOptions
	Line  int // of the pool's key
}

// Shape is what each worker of a pool offers.
type Shape struct {
	CPUMilli int64
	Memory   int64
	GPU      int
	Labels   []string
}

// DockerOptions are the options of a docker pool.
type DockerOptions struct {
	// Image of worker containers; it needs nothing but a /bin/sh for the
	// jobs' steps: the hodei binary is mounted into it.
	Image string
	// Network of worker containers: "host" by default, so that agents
	// reach a server's NATS that listens on 127.0.0.1.
	Network string
	// Binary is the hodei binary mounted read-only into the containers
	// (default: the running executable). It must be a static build.
	Binary string
	// Host is the engine's address (default: DOCKER_HOST, else the
	// default socket).
	Host string
}

// Modes of a local pool (LocalOptions.Mode).
const (
	// LocalModeProcess: each worker is a `hodei agent` process on this
	// machine.
	LocalModeProcess = "process"
	// LocalModeInProcess: each worker is an agent inside the server's own
	// process.
	LocalModeInProcess = "inprocess"
)

// LocalOptions are the options of a local pool (see
// docs/workers.md#local).
type LocalOptions struct {
	// Mode is LocalModeProcess or LocalModeInProcess. Empty when the file
	// does not say: NewLocal then runs agents in process; `hodei server`
	// sets its own default first (Config.SetLocalMode).
	Mode string
	// Binary is the hodei executable of agent processes (default: the
	// running executable).
	Binary string
}

// SetLocalMode gives the local pools that name no mode the given one, and
// returns the names of the pools that name another.
func (c *Config) SetLocalMode(mode string) (others []string) {
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.Provider != "local" {
			continue
		}
		switch p.Local.Mode {
		case "":
			p.Local.Mode = mode
		case mode:
		default:
			others = append(others, p.Name)
		}
	}
	return others
}

// KubernetesOptions are the options of a kubernetes pool (see
// docs/workers.md#kubernetes).
type KubernetesOptions struct {
	// Namespace of the worker pods (required).
	Namespace string
	// Image of the agent container of worker pods, where the jobs' steps
	// run (required); the hodei binary is copied into it.
	Image string
	// AgentImage is the image that holds the hodei binary at /hodei (and a
	// cp): an init container copies it into a volume the agent container
	// runs it from (required).
	AgentImage string
	// ServiceAccount of the worker pods (default: the namespace's
	// default).
	ServiceAccount string
	// AutomountServiceAccountToken mounts the service account's token into
	// worker pods; false unless asked.
	AutomountServiceAccountToken bool
	// HostNetwork runs worker pods in the node's network namespace: the
	// agent reaches a NATS on the node's loopback, and no pod network is
	// needed (false unless asked; the "restricted" Pod Security level
	// forbids it).
	HostNetwork bool
	// Kubeconfig is the file that says how to reach the API server
	// (default: in the cluster, the pod's service account; outside it,
	// KUBECONFIG or ~/.kube/config).
	Kubeconfig string
}

// Defaults of pool fields.
const (
	DefaultIdleTimeout = 5 * time.Minute
	DefaultShapeCPU    = 1000
	DefaultShapeMemory = 1 << 30
)

var (
	topFields    = []string{"pools"}
	poolFields   = []string{"provider", "min", "max", "idle_timeout", "startup_delay", "cost_per_hour", "ephemeral", "shape", "docker", "kubernetes", "local"}
	shapeFields  = []string{"cpu", "memory", "gpu", "labels"}
	dockerFields = []string{"image", "network", "binary", "host"}
	localFields  = []string{"mode", "binary"}
	kubeFields   = []string{"namespace", "image", "agent_image", "service_account", "automount_service_account_token", "host_network", "kubeconfig"}
	// dns1123Label is a Kubernetes namespace or service account name.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	providers    = []string{"local", "docker", "kubernetes"}
	labelPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
)

// LoadConfig reads and parses a pools file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig parses a pools file. Problems come as a yamlpos.ErrorList:
// each names file, line, column and field.
func ParseConfig(file string, data []byte) (*Config, error) {
	p := &cparser{Reader: yamlpos.NewReader(file, data)}
	cfg := &Config{File: file}
	root := p.Decode(data, "it must have a pools map", "a file holds one pools map")
	if root == nil {
		return nil, p.Err()
	}
	top, ok := p.Map(root, "", "a map with a pools key")
	if !ok {
		return nil, p.Err()
	}
	var poolsNode *yaml.Node
	for _, e := range p.Fields(top, "", topFields) {
		poolsNode = e.Val
	}
	if poolsNode == nil {
		p.Errorf(root, "pools", "is required")
		return nil, p.Err()
	}
	pools := yamlpos.Deref(poolsNode)
	if pools.Kind != yaml.MappingNode || len(pools.Content) == 0 {
		p.Errorf(poolsNode, "pools", "must be a map of pool name to pool, with at least one pool")
		return nil, p.Err()
	}
	for _, e := range p.Entries(pools, "pools") {
		cfg.Pools = append(cfg.Pools, p.pool(e.Key, e.Val))
	}
	sort.SliceStable(cfg.Pools, func(i, k int) bool { return cfg.Pools[i].Name < cfg.Pools[k].Name })
	if err := p.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// cparser reads a pools file, collecting errors as it goes (in its Reader).
type cparser struct {
	*yamlpos.Reader
}

func (p *cparser) pool(k, v *yaml.Node) PoolConfig {
	name := yamlpos.Deref(k).Value
	path := "pools." + name
	pc := PoolConfig{Name: name, IdleTimeout: DefaultIdleTimeout, Line: k.Line,
		Shape: Shape{CPUMilli: DefaultShapeCPU, Memory: DefaultShapeMemory}}
	if !bus.ValidToken(name) || len(name) > 40 {
		p.Errorf(k, path, "invalid pool name %q: use up to 40 letters, digits, '-' and '_'", name)
	}
	m, ok := p.Map(v, path, "a map (provider, min, max, shape...)")
	if !ok {
		return pc
	}
	var maxNode, dockerNode, kubeNode, localNode *yaml.Node
	haveMax := false
	for _, f := range p.Fields(m, path, poolFields) {
		fp := path + "." + f.Name
		switch f.Name {
		case "provider":
			if s, ok := p.Text(f.Val, fp); ok {
				if !slices.Contains(providers, s) {
					p.Errorf(f.Val, fp, "unknown provider %q%s; want one of %s", s, yamlpos.DidYouMean(s, providers), strings.Join(providers, ", "))
				}
				pc.Provider = s
			}
		case "min":
			pc.Min, _ = p.IntIn(f.Val, fp, 0, 10000)
		case "max":
			maxNode, haveMax = f.Val, true
			pc.Max, _ = p.IntIn(f.Val, fp, 1, 10000)
		case "idle_timeout":
			pc.IdleTimeout, _ = p.Duration(f.Val, fp)
		case "startup_delay":
			pc.StartupDelay, _ = p.Duration(f.Val, fp)
		case "cost_per_hour":
			pc.CostPerHour, _ = p.Number(f.Val, fp, 0)
		case "ephemeral":
			pc.Ephemeral, _ = p.Bool(f.Val, fp)
		case "shape":
			pc.Shape = p.shape(f.Val, fp, pc.Shape)
		case "docker":
			dockerNode = f.Val
			pc.Docker = p.docker(f.Val, fp)
		case "kubernetes":
			kubeNode = f.Val
			pc.Kubernetes = p.kubernetes(f.Val, fp)
		case "local":
			localNode = f.Val
			pc.Local = p.local(f.Val, fp)
		}
	}
	if pc.Provider == "" {
		p.Errorf(k, path+".provider", "is required (local, docker or kubernetes)")
	}
	if !haveMax {
		p.Errorf(k, path+".max", "is required: the most workers the pool may have")
	} else if pc.Max > 0 && pc.Min > pc.Max {
		p.Errorf(maxNode, path+".max", "must be at least min (%d), got %d", pc.Min, pc.Max)
	}
	switch {
	case pc.Provider == "docker" && pc.Docker.Image == "":
		n := k
		if dockerNode != nil {
			n = dockerNode
		}
		p.Errorf(n, path+".docker.image", "is required for a docker pool")
	case pc.Provider != "docker" && pc.Provider != "" && dockerNode != nil:
		p.Errorf(dockerNode, path+".docker", "only applies to a pool with provider docker")
	}
	switch {
	case pc.Provider == "kubernetes":
		n := k
		if kubeNode != nil {
			n = kubeNode
		}
		for _, req := range []struct{ field, val string }{
			{"namespace", pc.Kubernetes.Namespace}, {"image", pc.Kubernetes.Image}, {"agent_image", pc.Kubernetes.AgentImage},
		} {
			if req.val == "" {
				p.Errorf(n, path+".kubernetes."+req.field, "is required for a kubernetes pool")
			}
		}
	case pc.Provider != "" && kubeNode != nil:
		p.Errorf(kubeNode, path+".kubernetes", "only applies to a pool with provider kubernetes")
	}
	if pc.Provider != "local" && pc.Provider != "" && localNode != nil {
		p.Errorf(localNode, path+".local", "only applies to a pool with provider local")
	}
	if pc.Provider == "docker" && pc.Docker.Network == "" {
		pc.Docker.Network = "host"
	}
	return pc
}

func (p *cparser) shape(n *yaml.Node, path string, s Shape) Shape {
	m, ok := p.Map(n, path, "a map with cpu, memory, gpu and labels")
	if !ok {
		return s
	}
	for _, f := range p.Fields(m, path, shapeFields) {
		fp := path + "." + f.Name
		switch f.Name {
		case "cpu":
			s.CPUMilli = pipeline.ReadCPU(p.Reader, f.Val, fp)
		case "memory":
			s.Memory = pipeline.ReadMemory(p.Reader, f.Val, fp)
		case "gpu":
			s.GPU, _ = p.IntIn(f.Val, fp, 0, 64)
		case "labels":
			s.Labels = nil
			list := yamlpos.Deref(f.Val)
			if list.Kind != yaml.SequenceNode {
				p.Errorf(f.Val, fp, "must be a list of labels, got %s", yamlpos.Describe(list))
				continue
			}
			for i, it := range list.Content {
				ip := yamlpos.Index(fp, i)
				if l, ok := p.Text(it, ip); ok {
					if !labelPattern.MatchString(l) {
						p.Errorf(it, ip, "invalid label %q", l)
						continue
					}
					s.Labels = append(s.Labels, l)
				}
			}
		}
	}
	return s
}

// eachText reads the map n at path (want describes it, for the error when
// it is not one) whose fields are allowed: other, if not nil, reads the
// fields that are not strings (it returns false for the others); set is
// given every other field whose value is a non-empty string.
func (p *cparser) eachText(n *yaml.Node, path, want string, allowed []string, other func(f yamlpos.Entry, fp string) bool, set func(f yamlpos.Entry, fp, s string)) {
	m, ok := p.Map(n, path, want)
	if !ok {
		return
	}
	for _, f := range p.Fields(m, path, allowed) {
		fp := path + "." + f.Name
		if other != nil && other(f, fp) {
			continue
		}
		if s, ok := p.Text(f.Val, fp); ok {
			set(f, fp, s)
		}
	}
}

func (p *cparser) docker(n *yaml.Node, path string) DockerOptions {
	var d DockerOptions
	into := map[string]*string{"image": &d.Image, "network": &d.Network, "binary": &d.Binary, "host": &d.Host}
	p.eachText(n, path, "a map with image, network, binary and host", dockerFields, nil,
		func(f yamlpos.Entry, _, s string) { *into[f.Name] = s })
	return d
}

func (p *cparser) local(n *yaml.Node, path string) LocalOptions {
	var o LocalOptions
	var binaryNode *yaml.Node
	p.eachText(n, path, "a map with mode and binary", localFields, nil, func(f yamlpos.Entry, fp, s string) {
		switch f.Name {
		case "mode":
			if s != LocalModeProcess && s != LocalModeInProcess {
				p.Errorf(f.Val, fp, "unknown mode %q; want %s or %s", s, LocalModeProcess, LocalModeInProcess)
				return
			}
			o.Mode = s
		case "binary":
			binaryNode = f.Val
			o.Binary = s
		}
	})
	switch {
	case binaryNode != nil && o.Mode == LocalModeInProcess:
		p.Errorf(binaryNode, path+".binary", "only applies to mode %s", LocalModeProcess)
	case o.Binary != "" && o.Mode == "":
		o.Mode = LocalModeProcess // a binary is for agent processes
	}
	return o
}

// kubeNames are the fields of a kubernetes pool that name a Kubernetes
// object (a DNS-1123 label), by what the error calls them.
var kubeNames = map[string]string{"namespace": "namespace", "service_account": "service account"}

func (p *cparser) kubernetes(n *yaml.Node, path string) KubernetesOptions {
	var o KubernetesOptions
	into := map[string]*string{"namespace": &o.Namespace, "image": &o.Image, "agent_image": &o.AgentImage,
		"service_account": &o.ServiceAccount, "kubeconfig": &o.Kubeconfig}
	p.eachText(n, path, "a map with namespace, image, agent_image, service_account, automount_service_account_token, host_network and kubeconfig", kubeFields,
		func(f yamlpos.Entry, fp string) bool {
			switch f.Name {
			case "automount_service_account_token":
				o.AutomountServiceAccountToken, _ = p.Bool(f.Val, fp)
			case "host_network":
				o.HostNetwork, _ = p.Bool(f.Val, fp)
			default:
				return false
			}
			return true
		},
		func(f yamlpos.Entry, fp, s string) {
			if what, ok := kubeNames[f.Name]; ok && (!dns1123Label.MatchString(s) || len(s) > 63) {
				p.Errorf(f.Val, fp, "invalid %s %q: up to 63 lower-case letters, digits and '-'", what, s)
			}
			*into[f.Name] = s
		})
	return o
}
