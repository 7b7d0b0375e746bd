package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Service is a container that runs beside a job's container for the whole
// attempt (a database, a cache...): the job's steps reach it by its Name
// on a network of the attempt's own. Image and Env may read what is known
// when the run is made (matrix, inputs), like the job's image.
type Service struct {
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	Env        map[string]string `json:"env,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Command    []string          `json:"command,omitempty"`
	// Ports are the ports the service listens on: documentation, and
	// exposed on the attempt's network; never published on the host.
	Ports []int `json:"ports,omitempty"`
	// Health, when set, is the check that says the service is ready;
	// without it, the image's own HEALTHCHECK, or else the service is
	// ready once it runs.
	Health *ServiceHealth `json:"health,omitempty"`
}

// ServiceHealth is a service's health check: Cmd runs in the service
// (with its image's shell) every Interval, each run bounded by Timeout;
// the service is ready at the first success and fails the job after
// Retries failures in a row.
type ServiceHealth struct {
	Cmd      string        `json:"cmd"`
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	Retries  int           `json:"retries"`
}

// Defaults and bounds of services.
const (
	MaxServices           = 8
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = 10 * time.Second
	DefaultHealthRetries  = 30
	MaxHealthRetries      = 1000
)

var (
	serviceFields = []string{"image", "env", "entrypoint", "command", "ports", "health"}
	healthFields  = []string{"cmd", "interval", "timeout", "retries"}
	// serviceNamePattern: a service's name is a host name on the job's
	// network (and a container name in a Kubernetes pod), so a DNS
	// label. Compiled at its first use, as artifactNamePattern.
	serviceNamePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`) })
)

// services reads a job's services: a map of names to services (each a map,
// or an image), or a list of images named after them (redis:7 is redis).
func (p *parser) services(n *yaml.Node, field string, job *jobInfo) []Service {
	v := yamlpos.Deref(n)
	var out []Service
	add := func(at *yaml.Node, f string, s Service) {
		for _, o := range out {
			if o.Name == s.Name {
				p.Errorf(at, f, "two services are named %q: give them names with the map form (services: {name: {image: ...}})", s.Name)
				return
			}
		}
		out = append(out, s)
	}
	if (v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0 {
		p.Errorf(n, field, "must name at least one service")
		return nil
	}
	switch v.Kind {
	case yaml.SequenceNode:
		for i, it := range v.Content {
			f := yamlpos.Index(field, i)
			img, ok := p.image(it, f)
			if !ok {
				continue
			}
			name := ServiceNameOf(img)
			if !serviceNamePattern().MatchString(name) {
				p.Errorf(it, f, "cannot name a service after image %q: use the map form (services: {name: {image: %s}}) with a name of lowercase letters, digits and -", img, img)
				continue
			}
			p.expr(it, f, atRunMade, job)
			add(it, f, Service{Name: name, Image: img})
		}
	case yaml.MappingNode:
		for _, e := range p.Entries(v, field) {
			f := field + "." + e.Name
			if !serviceNamePattern().MatchString(e.Name) {
				p.Errorf(e.Key, f, "invalid service name %q: it is the service's host name, so 1 to 63 lowercase letters, digits and -, starting with a letter and not ending with -", e.Name)
				continue
			}
			if s, ok := p.service(e.Val, f, job); ok {
				s.Name = e.Name
				add(e.Key, f, s)
			}
		}
	default:
		p.Errorf(n, field, "must be a map of service names to services, or a list of images, got %s", yamlpos.Describe(v))
		return nil
	}
	if len(out) > MaxServices {
		p.Errorf(n, field, "has %d services, more than %d", len(out), MaxServices)
	}
	return out
}

// service reads one service: a map, or its image alone.
func (p *parser) service(n *yaml.Node, field string, job *jobInfo) (Service, bool) {
	v := yamlpos.Deref(n)
	if v.Kind == yaml.ScalarNode {
		img, ok := p.image(n, field)
		if ok {
			p.expr(n, field, atRunMade, job)
		}
		return Service{Image: img}, ok
	}
	v, ok := p.Map(n, field, "a map with image, env, ports, health, command and entrypoint, or an image")
	if !ok {
		return Service{}, false
	}
	var s Service
	haveImage := false
	for _, f := range p.Fields(v, field, serviceFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "image":
			haveImage = true
			if img, ok := p.image(f.Val, fp); ok {
				s.Image = img
				p.expr(f.Val, fp, atRunMade, job)
			}
		case "env":
			s.Env = p.env(f.Val, fp, atRunMade, job)
		case "entrypoint":
			s.Entrypoint = p.argv(f.Val, fp)
		case "command":
			s.Command = p.argv(f.Val, fp)
		case "ports":
			s.Ports = p.ports(f.Val, fp)
		case "health":
			s.Health = p.health(f.Val, fp)
		}
	}
	if !haveImage {
		p.Errorf(v, field+".image", "is required")
	}
	return s, s.Image != ""
}

// argv reads a command as a list of arguments (no shell), or one string
// split at spaces.
func (p *parser) argv(n *yaml.Node, field string) []string {
	v := yamlpos.Deref(n)
	if v.Kind == yaml.ScalarNode && yamlpos.IsString(v) {
		args := strings.Fields(v.Value)
		if len(args) == 0 {
			p.Errorf(n, field, "must not be empty")
		}
		return args
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.Errorf(n, field, "must be a list of arguments such as [redis-server, --port, \"6380\"], got %s", yamlpos.Describe(v))
		return nil
	}
	var out []string
	for i, it := range v.Content {
		if s, ok := p.Scalar(it, yamlpos.Index(field, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// ports reads a list of port numbers.
func (p *parser) ports(n *yaml.Node, field string) []int {
	items, ok := p.List(n, field, "a list of port numbers such as [5432]", "")
	if !ok {
		return nil
	}
	var out []int
	for i, it := range items {
		f := yamlpos.Index(field, i)
		port, ok := p.IntIn(it, f, 1, 65535)
		if !ok {
			continue
		}
		if slices.Contains(out, port) {
			p.Errorf(it, f, "duplicate port %d", port)
			continue
		}
		out = append(out, port)
	}
	return out
}

// health reads a service's health check: a map, or its command alone.
func (p *parser) health(n *yaml.Node, field string) *ServiceHealth {
	h := &ServiceHealth{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries}
	v := yamlpos.Deref(n)
	if v.Kind == yaml.ScalarNode {
		if s, ok := p.healthCmd(n, field); ok {
			h.Cmd = s
			return h
		}
		return nil
	}
	v, ok := p.Map(n, field, "a map with cmd, interval, timeout and retries, or a command")
	if !ok {
		return nil
	}
	haveCmd := false
	for _, f := range p.Fields(v, field, healthFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "cmd":
			haveCmd = true
			h.Cmd, _ = p.healthCmd(f.Val, fp)
		case "interval", "timeout":
			d, ok := p.Duration(f.Val, fp)
			if !ok {
				continue
			}
			if d < time.Millisecond || d > time.Hour {
				p.Errorf(f.Val, fp, "must be from 1ms to 1h, got %s", d)
				continue
			}
			if f.Name == "interval" {
				h.Interval = d
			} else {
				h.Timeout = d
			}
		case "retries":
			h.Retries, _ = p.IntIn(f.Val, fp, 1, MaxHealthRetries)
		}
	}
	if !haveCmd {
		p.Errorf(v, field+".cmd", "is required")
		return nil
	}
	return h
}

// healthCmd reads a health check's command: a shell command line.
func (p *parser) healthCmd(n *yaml.Node, field string) (string, bool) {
	s, ok := p.Text(n, field)
	if !ok {
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		p.Errorf(n, field, "must not be empty")
		return "", false
	}
	return s, true
}

// ServiceNameOf names a service after its image, as the list form of
// services does: the last part of its path, without tag or digest
// (registry.example.com/db/postgres:16 is postgres).
func ServiceNameOf(image string) string {
	name := image
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.Index(name, ":"); i >= 0 {
		name = name[:i]
	}
	return name
}

// expandServices makes the services of a JobSpec, with the expressions of
// their images and env folded.
func expandServices(path string, svcs []Service, fold func(f, text string) string) []Service {
	if len(svcs) == 0 {
		return nil
	}
	out := make([]Service, len(svcs))
	for i, s := range svcs {
		f := path + ".services." + s.Name
		c := s
		c.Image = fold(f+".image", s.Image)
		if s.Env != nil {
			c.Env = make(map[string]string, len(s.Env))
			for k, v := range s.Env {
				c.Env[k] = fold(f+".env."+k, v)
			}
		}
		c.Entrypoint = slices.Clone(s.Entrypoint)
		c.Command = slices.Clone(s.Command)
		c.Ports = slices.Clone(s.Ports)
		if s.Health != nil {
			h := *s.Health
			c.Health = &h
		}
		out[i] = c
	}
	return out
}

// servicesNeedImage is the message of a job with services and no image.
const servicesNeedImage = "need the job to run in a container (image:): services run beside it on a network of its own, " +
	"and a job without an image runs its steps on the worker's machine, where Hodei starts no containers"

// ContainerLabelPrefix starts the label that names a job's container (see
// ContainerLabel). The scheduler treats such labels as exclusive: a worker
// that has one takes only the jobs that carry it, and a job's is not
// required of the workers that have none (an agent with a Docker engine
// runs every container).
const ContainerLabelPrefix = "container:"

// ContainerKey names what a job with an image runs in: its image, its
// network and its services, hashed. Jobs with the same key can run in the
// same Kubernetes worker pod (made for that key: the agent runs in the
// job's image, the services are sidecars). "" for a job without an image.
func ContainerKey(s *JobSpec) string {
	if s.Image == "" {
		return ""
	}
	b, err := json.Marshal(struct {
		Image    string    `json:"image"`
		Network  bool      `json:"network,omitempty"`
		Services []Service `json:"services,omitempty"`
	}{s.Image, s.Network, s.Services})
	if err != nil {
		// A Service always marshals; keep a key that still tells images
		// apart.
		b = []byte(s.Image)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:10])
}

// ContainerLabel is the exclusive label of the container key k (see
// ContainerLabelPrefix).
func ContainerLabel(k string) string { return ContainerLabelPrefix + k }
