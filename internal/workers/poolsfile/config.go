package poolsfile

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlnode"

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

// ParseConfig parses a pools file. Problems come as a pipeline.ErrorList:
// each names file, line, column and field.
func ParseConfig(file string, data []byte) (*Config, error) {
	p := &cparser{file: file}
	cfg := &Config{File: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		msg := err.Error()
		line := 0
		if m := regexp.MustCompile(`line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		if err.Error() == "EOF" {
			msg = "the file is empty: it must have a pools map"
		}
		return nil, pipeline.ErrorList{{File: file, Line: line, Msg: msg}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.errAt(root, "", "must be a map with a pools key, got %s", yamlnode.Describe(root))
		return nil, p.errs
	}
	var poolsNode *yaml.Node
	for _, e := range p.fields(root, "", topFields) {
		poolsNode = e.val
	}
	if poolsNode == nil {
		p.errAt(root, "pools", "is required")
		return nil, p.errs
	}
	if poolsNode.Kind != yaml.MappingNode || len(poolsNode.Content) == 0 {
		p.errAt(poolsNode, "pools", "must be a map of pool name to pool, with at least one pool")
		return nil, p.errs
	}
	for i := 0; i+1 < len(poolsNode.Content); i += 2 {
		k, v := poolsNode.Content[i], poolsNode.Content[i+1]
		cfg.Pools = append(cfg.Pools, p.pool(k, v))
	}
	sort.SliceStable(cfg.Pools, func(i, k int) bool { return cfg.Pools[i].Name < cfg.Pools[k].Name })
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, k int) bool {
			if p.errs[i].Line != p.errs[k].Line {
				return p.errs[i].Line < p.errs[k].Line
			}
			return p.errs[i].Col < p.errs[k].Col
		})
		return nil, p.errs
	}
	return cfg, nil
}

type cparser struct {
	file string
	errs pipeline.ErrorList
	seen map[string]bool
}

func (p *cparser) errAt(n *yaml.Node, field, format string, a ...any) {
	p.errs = append(p.errs, &pipeline.Error{File: p.file, Line: n.Line, Col: n.Column, Field: field, Msg: fmt.Sprintf(format, a...)})
}

type centry struct {
	name     string
	key, val *yaml.Node
}

// fields lists the entries of map n, reporting unknown and repeated keys.
func (p *cparser) fields(n *yaml.Node, path string, allowed []string) []centry {
	var out []centry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f := yamlnode.Join(path, k.Value)
		switch {
		case !slices.Contains(allowed, k.Value):
			p.errAt(k, f, "unknown field %q; allowed fields: %s", k.Value, strings.Join(allowed, ", "))
		case seen[k.Value]:
			p.errAt(k, f, "appears twice")
		default:
			seen[k.Value] = true
			out = append(out, centry{k.Value, k, v})
		}
	}
	return out
}

func (p *cparser) pool(k, v *yaml.Node) PoolConfig {
	name := k.Value
	path := "pools." + name
	pc := PoolConfig{Name: name, IdleTimeout: DefaultIdleTimeout, Line: k.Line,
		Shape: Shape{CPUMilli: DefaultShapeCPU, Memory: DefaultShapeMemory}}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	switch {
	case !bus.ValidToken(name) || len(name) > 40:
		p.errAt(k, path, "invalid pool name %q: use up to 40 letters, digits, '-' and '_'", name)
	case p.seen[name]:
		p.errAt(k, path, "pool %q appears twice", name)
	}
	p.seen[name] = true
	if v.Kind != yaml.MappingNode {
		p.errAt(v, path, "must be a map (provider, min, max, shape...), got %s", yamlnode.Describe(v))
		return pc
	}
	var maxNode, dockerNode, kubeNode, localNode *yaml.Node
	haveMax := false
	for _, f := range p.fields(v, path, poolFields) {
		fp := path + "." + f.name
		switch f.name {
		case "provider":
			if s, ok := p.str(f.val, fp); ok {
				if !slices.Contains(providers, s) {
					p.errAt(f.val, fp, "unknown provider %q; want one of %s", s, strings.Join(providers, ", "))
				}
				pc.Provider = s
			}
		case "min":
			pc.Min = p.intIn(f.val, fp, 0, 10000)
		case "max":
			maxNode, haveMax = f.val, true
			pc.Max = p.intIn(f.val, fp, 1, 10000)
		case "idle_timeout":
			pc.IdleTimeout = p.duration(f.val, fp)
		case "startup_delay":
			pc.StartupDelay = p.duration(f.val, fp)
		case "cost_per_hour":
			pc.CostPerHour = p.number(f.val, fp)
		case "ephemeral":
			pc.Ephemeral = p.boolean(f.val, fp)
		case "shape":
			pc.Shape = p.shape(f.val, fp, pc.Shape)
		case "docker":
			dockerNode = f.val
			pc.Docker = p.docker(f.val, fp)
		case "kubernetes":
			kubeNode = f.val
			pc.Kubernetes = p.kubernetes(f.val, fp)
		case "local":
			localNode = f.val
			pc.Local = p.local(f.val, fp)
		}
	}
	if pc.Provider == "" {
		p.errAt(k, path+".provider", "is required (local, docker or kubernetes)")
	}
	if !haveMax {
		p.errAt(k, path+".max", "is required: the most workers the pool may have")
	} else if pc.Max > 0 && pc.Min > pc.Max {
		p.errAt(maxNode, path+".max", "must be at least min (%d), got %d", pc.Min, pc.Max)
	}
	switch {
	case pc.Provider == "docker" && pc.Docker.Image == "":
		n := k
		if dockerNode != nil {
			n = dockerNode
		}
		p.errAt(n, path+".docker.image", "is required for a docker pool")
	case pc.Provider != "docker" && pc.Provider != "" && dockerNode != nil:
		p.errAt(dockerNode, path+".docker", "only applies to a pool with provider docker")
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
				p.errAt(n, path+".kubernetes."+req.field, "is required for a kubernetes pool")
			}
		}
	case pc.Provider != "" && kubeNode != nil:
		p.errAt(kubeNode, path+".kubernetes", "only applies to a pool with provider kubernetes")
	}
	if pc.Provider != "local" && pc.Provider != "" && localNode != nil {
		p.errAt(localNode, path+".local", "only applies to a pool with provider local")
	}
	if pc.Provider == "docker" && pc.Docker.Network == "" {
		pc.Docker.Network = "host"
	}
	return pc
}

func (p *cparser) shape(n *yaml.Node, path string, s Shape) Shape {
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "must be a map with cpu, memory, gpu and labels, got %s", yamlnode.Describe(n))
		return s
	}
	for _, f := range p.fields(n, path, shapeFields) {
		fp := path + "." + f.name
		switch f.name {
		case "cpu":
			if f.val.Kind == yaml.ScalarNode && f.val.Tag != "!!map" {
				v, err := pipeline.ParseCPU(f.val.Value)
				if err != nil {
					p.errAt(f.val, fp, "%v", err)
				} else {
					s.CPUMilli = v
				}
			} else {
				p.errAt(f.val, fp, "must be a number of cores like 2 or 500m, got %s", yamlnode.Describe(f.val))
			}
		case "memory":
			if f.val.Kind == yaml.ScalarNode {
				v, err := pipeline.ParseMemory(f.val.Value)
				if err != nil {
					p.errAt(f.val, fp, "%v", err)
				} else {
					s.Memory = v
				}
			} else {
				p.errAt(f.val, fp, "must be an amount like 4Gi or 512Mi, got %s", yamlnode.Describe(f.val))
			}
		case "gpu":
			s.GPU = p.intIn(f.val, fp, 0, 64)
		case "labels":
			s.Labels = nil
			if f.val.Kind != yaml.SequenceNode {
				p.errAt(f.val, fp, "must be a list of labels, got %s", yamlnode.Describe(f.val))
				continue
			}
			for i, it := range f.val.Content {
				ip := fp + "[" + strconv.Itoa(i) + "]"
				if l, ok := p.str(it, ip); ok {
					if !labelPattern.MatchString(l) {
						p.errAt(it, ip, "invalid label %q", l)
						continue
					}
					s.Labels = append(s.Labels, l)
				}
			}
		}
	}
	return s
}

func (p *cparser) docker(n *yaml.Node, path string) DockerOptions {
	var d DockerOptions
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "must be a map with image, network, binary and host, got %s", yamlnode.Describe(n))
		return d
	}
	for _, f := range p.fields(n, path, dockerFields) {
		fp := path + "." + f.name
		s, ok := p.str(f.val, fp)
		if !ok {
			continue
		}
		switch f.name {
		case "image":
			d.Image = s
		case "network":
			d.Network = s
		case "binary":
			d.Binary = s
		case "host":
			d.Host = s
		}
	}
	return d
}

func (p *cparser) local(n *yaml.Node, path string) LocalOptions {
	var o LocalOptions
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "must be a map with mode and binary, got %s", yamlnode.Describe(n))
		return o
	}
	var binaryNode *yaml.Node
	for _, f := range p.fields(n, path, localFields) {
		fp := path + "." + f.name
		s, ok := p.str(f.val, fp)
		if !ok {
			continue
		}
		switch f.name {
		case "mode":
			if s != LocalModeProcess && s != LocalModeInProcess {
				p.errAt(f.val, fp, "unknown mode %q; want %s or %s", s, LocalModeProcess, LocalModeInProcess)
				continue
			}
			o.Mode = s
		case "binary":
			binaryNode = f.val
			o.Binary = s
		}
	}
	switch {
	case binaryNode != nil && o.Mode == LocalModeInProcess:
		p.errAt(binaryNode, path+".binary", "only applies to mode %s", LocalModeProcess)
	case o.Binary != "" && o.Mode == "":
		o.Mode = LocalModeProcess // a binary is for agent processes
	}
	return o
}

func (p *cparser) kubernetes(n *yaml.Node, path string) KubernetesOptions {
	var o KubernetesOptions
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "must be a map with namespace, image, agent_image, service_account, automount_service_account_token, host_network and kubeconfig, got %s", yamlnode.Describe(n))
		return o
	}
	for _, f := range p.fields(n, path, kubeFields) {
		fp := path + "." + f.name
		switch f.name {
		case "automount_service_account_token":
			o.AutomountServiceAccountToken = p.boolean(f.val, fp)
			continue
		case "host_network":
			o.HostNetwork = p.boolean(f.val, fp)
			continue
		}
		s, ok := p.str(f.val, fp)
		if !ok {
			continue
		}
		switch f.name {
		case "namespace":
			if !dns1123Label.MatchString(s) || len(s) > 63 {
				p.errAt(f.val, fp, "invalid namespace %q: up to 63 lower-case letters, digits and '-'", s)
			}
			o.Namespace = s
		case "image":
			o.Image = s
		case "agent_image":
			o.AgentImage = s
		case "service_account":
			if !dns1123Label.MatchString(s) || len(s) > 63 {
				p.errAt(f.val, fp, "invalid service account %q: up to 63 lower-case letters, digits and '-'", s)
			}
			o.ServiceAccount = s
		case "kubeconfig":
			o.Kubeconfig = s
		}
	}
	return o
}

func (p *cparser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || strings.TrimSpace(n.Value) == "" {
		p.errAt(n, field, "must be a non-empty string, got %s", yamlnode.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *cparser) intIn(n *yaml.Node, field string, lo, hi int) int {
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || i < lo || i > hi {
		p.errAt(n, field, "must be an integer from %d to %d, got %s", lo, hi, valueOf(n))
		return 0
	}
	return i
}

func (p *cparser) number(n *yaml.Node, field string) float64 {
	var f float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		p.errAt(n, field, "must be a number, 0 or more, got %s", valueOf(n))
		return 0
	}
	return f
}

func (p *cparser) boolean(n *yaml.Node, field string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.errAt(n, field, "must be true or false, got %s", valueOf(n))
		return false
	}
	return b
}

func (p *cparser) duration(n *yaml.Node, field string) time.Duration {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errAt(n, field, "must be a duration such as 30s, 5m or 1h, got %s", valueOf(n))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || d <= 0 {
		p.errAt(n, field, "must be a positive duration such as 30s, 5m or 1h, got %q", n.Value)
		return 0
	}
	return d
}

func valueOf(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
		return strconv.Quote(n.Value)
	}
	return yamlnode.Describe(n)
}
