package pipeline

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// templates gathers what a job may extend: the top-level x- keys (by their
// full name) and the jobs (by id).
func (p *parser) templates(root, jobs *yaml.Node) {
	p.bases = make(map[string]*yaml.Node)
	for _, m := range []*yaml.Node{root, jobs} {
		if m == nil || m.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k := yamlpos.Deref(m.Content[i])
			if k.Kind != yaml.ScalarNode || m == root && !strings.HasPrefix(k.Value, yamlpos.ExtensionPrefix) {
				continue
			}
			if _, dup := p.bases[k.Value]; !dup {
				p.bases[k.Value] = m.Content[i+1]
			}
		}
	}
}

// extend returns a job's map with the maps its `extends` names merged
// under it, deeply: a map merges into a map key by key, anything else is
// replaced; of several templates the later wins, and the job's own keys win
// over all. Merged nodes keep their place in the file, so that a problem in
// an inherited field is reported where the template defines it. seen holds
// the chain of templates being extended, to report a cycle.
func (p *parser) extend(n *yaml.Node, path string, seen []string) *yaml.Node {
	v := yamlpos.Deref(n)
	if v.Kind != yaml.MappingNode {
		return n
	}
	at := -1
	for i := 0; i+1 < len(v.Content); i += 2 {
		if k := yamlpos.Deref(v.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "extends" && k.Style == 0 {
			at = i
		}
	}
	if at < 0 {
		return n
	}
	ext := v.Content[at+1]
	own := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column,
		Content: append(slices.Clone(v.Content[:at]), v.Content[at+2:]...)}
	// A template extended by several jobs has its extends reported once.
	report := !p.extendSeen[ext]
	if p.extendSeen == nil {
		p.extendSeen = make(map[*yaml.Node]bool)
	}
	p.extendSeen[ext] = true
	field := path + ".extends"
	var names []*yaml.Node
	switch ev := yamlpos.Deref(ext); ev.Kind {
	case yaml.ScalarNode:
		names = []*yaml.Node{ext}
	case yaml.SequenceNode:
		names = ev.Content
	default:
		if report {
			p.Errorf(ext, field, "must be the name of a template (a top-level x- key, or a job) or a list of them, got %s", yamlpos.Describe(ev))
		}
		return own
	}
	var base *yaml.Node
	for _, it := range names {
		name := yamlpos.Deref(it).Value
		t, ok := p.bases[name]
		switch {
		case !yamlpos.IsString(yamlpos.Deref(it)):
			if report {
				p.Errorf(it, field, "must name a template, got %s", yamlpos.Describe(yamlpos.Deref(it)))
			}
			continue
		case slices.Contains(seen, name):
			if report {
				p.Errorf(it, field, "extends cycle: %s -> %s", strings.Join(seen, " -> "), name)
			}
			continue
		case !ok:
			if report {
				p.Errorf(it, field, "unknown template %q%s: extends names a top-level x- key or a job", name, yamlpos.DidYouMean(name, sortedKeys(p.bases)))
			}
			continue
		case yamlpos.Deref(t).Kind != yaml.MappingNode:
			if report {
				p.Errorf(it, field, "template %q is %s, not a map of job fields", name, yamlpos.Describe(yamlpos.Deref(t)))
			}
			continue
		}
		base = deepMerge(base, p.extend(t, path, append(slices.Clone(seen), name)))
	}
	return deepMerge(base, own)
}

// deepMerge merges over into base (either may be nil).
func deepMerge(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	if over == nil {
		return base
	}
	b, o := yamlpos.Deref(base), yamlpos.Deref(over)
	if b.Kind != yaml.MappingNode || o.Kind != yaml.MappingNode {
		return over
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: o.Line, Column: o.Column}
	overKeys := make(map[string]int)
	for i := 0; i+1 < len(o.Content); i += 2 {
		if k := yamlpos.Deref(o.Content[i]); k.Kind == yaml.ScalarNode {
			overKeys[k.Value] = i
		}
	}
	used := make(map[int]bool)
	for i := 0; i+1 < len(b.Content); i += 2 {
		k := yamlpos.Deref(b.Content[i])
		j, both := overKeys[k.Value]
		switch {
		case k.Kind != yaml.ScalarNode || !both:
			out.Content = append(out.Content, b.Content[i], b.Content[i+1])
		default:
			used[j] = true
			out.Content = append(out.Content, o.Content[j], deepMerge(b.Content[i+1], o.Content[j+1]))
		}
	}
	for i := 0; i+1 < len(o.Content); i += 2 {
		if !used[i] {
			out.Content = append(out.Content, o.Content[i], o.Content[i+1])
		}
	}
	return out
}
