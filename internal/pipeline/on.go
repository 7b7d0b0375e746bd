package pipeline

// The triggers of a pipeline (`on:`) and the checkout of a job
// (`checkout:`): which forge events start a run of the file, and how the
// commit lands in each job's workspace.

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// The events a run starts from (HODEI_EVENT).
const (
	EventPush        = "push"         // a branch was pushed
	EventTag         = "tag"          // a tag was pushed
	EventPullRequest = "pull_request" // a pull or merge request opened, updated or reopened
	EventManual      = "manual"       // a person asked for a run
)

// DefaultCheckoutDepth is the history a job's checkout fetches when its
// pipeline does not say (one commit).
const DefaultCheckoutDepth = 1

// MaxCheckoutDepth bounds checkout.depth.
const MaxCheckoutDepth = 1 << 20

var (
	onFields          = []string{"push", "pull_request", "schedule", "manual"}
	pushFields        = []string{"branches", "tags", "paths"}
	pullRequestFields = []string{"branches", "paths"}
	checkoutFields    = []string{"depth", "submodules", "lfs", "fetch_tags"}
)

// On is what starts runs of a pipeline. A pipeline without `on:` runs on
// every push (branches and tags) and on manual runs (DefaultOn).
type On struct {
	Push        *PushFilter // nil: pushes start nothing
	PullRequest *PullRequestFilter
	// Schedules make runs at the times they name (runs of a file of a
	// repository only).
	Schedules []*Schedule
	Manual    bool
}

// PushFilter selects pushes: by branch, by tag and by the files they
// change. Each list holds globs (`*` within a path segment, `**` across
// segments, `?` one character), a `!` in front excludes; the last pattern
// that matches decides. A filter with branches but no tags starts nothing
// on tags, and the reverse; with neither, both.
type PushFilter struct {
	Branches []string
	Tags     []string
	Paths    []string
}

// PullRequestFilter selects pull requests by their target branch and the
// files they change.
type PullRequestFilter struct {
	Branches []string
	Paths    []string
}

// DefaultOn is the trigger of a pipeline without `on:`.
func DefaultOn() *On { return &On{Push: &PushFilter{}, Manual: true} }

// Event is what happened, as the filters see it.
type Event struct {
	Kind   string // EventPush, EventTag, EventPullRequest, EventManual
	Branch string // the pushed branch, or a pull request's target branch
	Tag    string
	// Changed are the paths the push or pull request changes; nil when
	// they are not known, and then a paths filter lets the event through.
	Changed []string
}

// Matches reports whether ev starts a run of a pipeline with these
// triggers (nil: DefaultOn).
func (o *On) Matches(ev Event) bool {
	if o == nil {
		o = DefaultOn()
	}
	switch ev.Kind {
	case EventManual:
		return o.Manual
	case EventSchedule:
		return len(o.Schedules) > 0
	case EventPush:
		f := o.Push
		if f == nil || len(f.Branches) == 0 && len(f.Tags) > 0 {
			return false
		}
		return (len(f.Branches) == 0 || MatchGlobs(f.Branches, ev.Branch)) && matchPaths(f.Paths, ev.Changed)
	case EventTag:
		f := o.Push
		if f == nil || len(f.Tags) == 0 && len(f.Branches) > 0 {
			return false
		}
		// Like GitHub, a tag push ignores paths: a tag changes no file.
		return len(f.Tags) == 0 || MatchGlobs(f.Tags, ev.Tag)
	case EventPullRequest:
		f := o.PullRequest
		if f == nil {
			return false
		}
		return (len(f.Branches) == 0 || MatchGlobs(f.Branches, ev.Branch)) && matchPaths(f.Paths, ev.Changed)
	}
	return false
}

// matchPaths: some changed path is selected by the patterns (no patterns,
// or unknown changes, select everything).
func matchPaths(patterns, changed []string) bool {
	if len(patterns) == 0 || changed == nil {
		return true
	}
	for _, c := range changed {
		if MatchGlobs(patterns, c) {
			return true
		}
	}
	return false
}

// MatchGlobs reports whether patterns select s: the last pattern that
// matches s decides (a `!` pattern excludes); when none does, s is
// selected only if every pattern is an exclusion.
func MatchGlobs(patterns []string, s string) bool {
	selected := true
	for _, p := range patterns {
		if !strings.HasPrefix(p, "!") {
			selected = false
			break
		}
	}
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		if globRegexp(strings.TrimPrefix(p, "!")).MatchString(s) {
			selected = !neg
		}
	}
	return selected
}

// globRegexp compiles a glob: `**` any characters, `*` any but `/`, `?`
// one but `/`; everything else literal.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case c == '*' && i+1 < len(glob) && glob[i+1] == '*':
			i++
			if i+1 < len(glob) && glob[i+1] == '/' {
				// "**/" also matches no directory at all.
				i++
				b.WriteString("(?:.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// on reads `on:`: an event name, a list of them, or a map of event to
// filter.
func (p *parser) on(n *yaml.Node, field string) *On {
	v := yamlpos.Deref(n)
	o := &On{}
	set := func(name string, node, val *yaml.Node) {
		fp := field + "." + name
		switch name {
		case EventPush:
			o.Push = &PushFilter{}
			if val != nil && !isNull(val) {
				o.Push = p.pushFilter(val, fp)
			}
		case EventPullRequest:
			o.PullRequest = &PullRequestFilter{}
			if val != nil && !isNull(val) {
				o.PullRequest = p.pullRequestFilter(val, fp)
			}
		case EventSchedule:
			if val == nil {
				p.Errorf(node, fp, "needs a list of schedules: schedule: [{cron: \"0 3 * * *\"}]")
				return
			}
			o.Schedules = p.schedules(val, fp)
		case EventManual:
			o.Manual = true
			if val != nil && !isNull(val) {
				if b, ok := p.Bool(val, fp); ok {
					o.Manual = b
				}
			}
		default:
			p.Errorf(node, fp, "unknown event %q%s; events: %s", name, yamlpos.DidYouMean(name, onFields), strings.Join(onFields, ", "))
		}
	}
	switch v.Kind {
	case yaml.ScalarNode:
		if s, ok := p.Text(n, field); ok {
			set(s, n, nil)
		}
	case yaml.SequenceNode:
		for i, it := range v.Content {
			if s, ok := p.Text(it, yamlpos.Index(field, i)); ok {
				set(s, it, nil)
			}
		}
	case yaml.MappingNode:
		for _, e := range p.Fields(v, field, onFields) {
			set(e.Name, e.Key, e.Val)
		}
	default:
		p.Errorf(n, field, "must be an event, a list of events or a map of events to filters, got %s", yamlpos.Describe(v))
	}
	return o
}

func isNull(n *yaml.Node) bool {
	v := yamlpos.Deref(n)
	return v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null"
}

func (p *parser) pushFilter(n *yaml.Node, field string) *PushFilter {
	f := &PushFilter{}
	p.globFields(n, field, "a map with branches, tags and paths", pushFields,
		map[string]*[]string{"branches": &f.Branches, "tags": &f.Tags, "paths": &f.Paths})
	return f
}

func (p *parser) pullRequestFilter(n *yaml.Node, field string) *PullRequestFilter {
	f := &PullRequestFilter{}
	p.globFields(n, field, "a map with branches and paths", pullRequestFields,
		map[string]*[]string{"branches": &f.Branches, "paths": &f.Paths})
	return f
}

// globFields reads a filter: the map n (want describes it) whose allowed
// fields are lists of globs, each read into the list into names.
func (p *parser) globFields(n *yaml.Node, field, want string, allowed []string, into map[string]*[]string) {
	v, ok := p.Map(n, field, want)
	if !ok {
		return
	}
	for _, e := range p.Fields(v, field, allowed) {
		*into[e.Name] = p.globs(e.Val, field+"."+e.Name)
	}
}

// globs reads a list of glob patterns (a single string is a list of one).
func (p *parser) globs(n *yaml.Node, field string) []string {
	v := yamlpos.Deref(n)
	items := []*yaml.Node{n}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) == 0 {
			p.Errorf(n, field, "must list at least one pattern")
		}
	}
	var out []string
	for i, it := range items {
		f := field
		if v.Kind == yaml.SequenceNode {
			f = yamlpos.Index(field, i)
		}
		s, ok := p.Text(it, f)
		if !ok {
			continue
		}
		if strings.TrimPrefix(s, "!") == "" {
			p.Errorf(it, f, "a pattern must not be empty")
			continue
		}
		out = append(out, s)
	}
	return out
}

// Checkout is how a job of a run from a repository gets its commit. The
// pipeline gives Disabled, Depth, Submodules, LFS and FetchTags; the
// server fills in the rest when it submits a run from a repository (URL
// empty: the run comes from no repository, nothing is checked out).
type Checkout struct {
	Disabled bool `json:"disabled,omitempty"`
	// Depth is the history fetched: 1 by default, 0 for all of it.
	Depth      int  `json:"depth"`
	Submodules bool `json:"submodules,omitempty"`
	LFS        bool `json:"lfs,omitempty"`
	FetchTags  bool `json:"fetch_tags,omitempty"`

	URL    string `json:"url,omitempty"`
	Commit string `json:"commit,omitempty"`
	Ref    string `json:"ref,omitempty"`
	// TokenSecret names the secret (of the run's tenant) that holds the
	// repository's token, given to the fetch only; AuthUser is the user
	// name the forge expects beside a token.
	TokenSecret string `json:"token_secret,omitempty"`
	AuthUser    string `json:"auth_user,omitempty"`
}

// checkout reads a job's `checkout:`: false, or a map of options.
func (p *parser) checkout(n *yaml.Node, field string) *Checkout {
	v := yamlpos.Deref(n)
	c := &Checkout{Depth: DefaultCheckoutDepth}
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		if b, ok := p.Bool(n, field); ok && !b {
			c.Disabled = true
		}
		return c
	}
	m, ok := p.Map(n, field, "false or a map with depth, submodules, lfs and fetch_tags")
	if !ok {
		return c
	}
	for _, e := range p.Fields(m, field, checkoutFields) {
		fp := field + "." + e.Name
		switch e.Name {
		case "depth":
			c.Depth, _ = p.IntIn(e.Val, fp, 0, MaxCheckoutDepth)
		case "submodules":
			c.Submodules, _ = p.Bool(e.Val, fp)
		case "lfs":
			c.LFS, _ = p.Bool(e.Val, fp)
		case "fetch_tags":
			c.FetchTags, _ = p.Bool(e.Val, fp)
		}
	}
	return c
}

// SecretNames are the secrets an attempt of the job needs: those it names
// and its checkout's token.
func (s JobSpec) SecretNames() []string {
	if c := s.Checkout; c != nil && c.TokenSecret != "" && !c.Disabled {
		for _, n := range s.Secrets {
			if n == c.TokenSecret {
				return s.Secrets
			}
		}
		return append(append([]string(nil), s.Secrets...), c.TokenSecret)
	}
	return s.Secrets
}
