package pipeline

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// DefaultApprovalTimeout is how long a job of an environment waits for its
// approval when the pipeline does not say; MaxApprovalTimeout bounds
// environment.timeout.
const (
	DefaultApprovalTimeout = 24 * time.Hour
	MaxApprovalTimeout     = 30 * 24 * time.Hour
)

var environmentFields = []string{"name", "approvers", "timeout"}

// Environment is a job's `environment:`: the job deploys there, so it
// waits in waiting_approval, once it is ready, until someone approves or
// rejects it (or Timeout passes, which rejects it). Who may decide: a
// principal the policies allow approveJob on the run and, when Approvers
// is not empty, that holds one of those roles or groups.
type Environment struct {
	Name      string        `json:"name"`
	Approvers []string      `json:"approvers,omitempty"`
	Timeout   time.Duration `json:"timeout"`
}

// environment reads a job's `environment:`: a name, or a map with name,
// approvers and timeout.
func (p *parser) environment(n *yaml.Node, field string) *Environment {
	e := &Environment{Timeout: DefaultApprovalTimeout}
	v := yamlpos.Deref(n)
	if v.Kind == yaml.ScalarNode {
		if s, ok := p.environmentName(n, field); ok {
			e.Name = s
		}
		return e
	}
	m, ok := p.Map(n, field, "an environment name or a map with name, approvers and timeout")
	if !ok {
		return e
	}
	haveName := false
	for _, f := range p.Fields(m, field, environmentFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "name":
			haveName = true
			if s, ok := p.environmentName(f.Val, fp); ok {
				e.Name = s
			}
		case "approvers":
			e.Approvers = p.approvers(f.Val, fp)
		case "timeout":
			if d, ok := p.Duration(f.Val, fp); ok {
				switch {
				case d <= 0:
					p.Errorf(f.Val, fp, "must be positive (a job waits at most %s for its approval)", MaxApprovalTimeout)
				case d > MaxApprovalTimeout:
					p.Errorf(f.Val, fp, "must be at most %s, got %s", MaxApprovalTimeout, d)
				default:
					e.Timeout = d
				}
			}
		}
	}
	if !haveName {
		p.Errorf(n, field+".name", "is required")
	}
	return e
}

// environmentName reads the name of an environment.
func (p *parser) environmentName(n *yaml.Node, field string) (string, bool) {
	s, ok := p.name(n, field)
	if ok && s == "" {
		p.Errorf(n, field, "must not be empty")
		return "", false
	}
	return s, ok
}

// approvers reads environment.approvers: the roles or groups whose members
// may decide.
func (p *parser) approvers(n *yaml.Node, field string) []string {
	items, ok := p.List(n, field, "a list of roles or groups", "")
	if !ok {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for i, it := range items {
		f := yamlpos.Index(field, i)
		s, ok := p.name(it, f)
		switch {
		case !ok:
		case s == "":
			p.Errorf(it, f, "must not be empty")
		case seen[s]:
			p.Errorf(it, f, "%q is named twice", s)
		default:
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(items) == 0 {
		p.Errorf(n, field, "must name at least one role or group (leave it out to let whoever the policies allow decide)")
	}
	return out
}
