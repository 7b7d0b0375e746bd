package authz

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/hodei-ci/hodei/internal/auth"
)

//go:embed defaults/hodei.cedarschema defaults/policies.cedar
var defaults embed.FS

// Names of the embedded defaults.
const (
	DefaultSchemaFile   = "hodei.cedarschema"
	DefaultPoliciesFile = "policies.cedar"
)

// DefaultSchema returns the embedded schema's text.
func DefaultSchema() []byte { b, _ := defaults.ReadFile("defaults/" + DefaultSchemaFile); return b }

// DefaultPolicyText returns the embedded default policies' text.
func DefaultPolicyText() []byte {
	b, _ := defaults.ReadFile("defaults/" + DefaultPoliciesFile)
	return b
}

// Namespace of Hodei's entity types and actions.
const Namespace = "Hodei"

// Policies are a validated policy set with its schema.
type Policies struct {
	set    *cedar.PolicySet
	ids    []string // in load order
	roles  []string // named by the policies, sorted
	schema *resolved.Schema
	Source string // where they came from: "embedded defaults" or a directory
}

// Roles returns the roles the policies name (Hodei::Role::"…"), sorted: a
// principal with another role gets nothing from it.
func (p *Policies) Roles() []string { return slices.Clone(p.roles) }

// rolePattern finds the roles a policy file names.
var rolePattern = regexp.MustCompile(`Role::"((?:[^"\\]|\\.)*)"`)

// Roles implements RoleLister.
func (c *Cedar) Roles() []string { return c.p.Roles() }

// IDs returns the ids of the policies, in the order they were loaded.
func (p *Policies) IDs() []string { return slices.Clone(p.ids) }

// LoadError lists every problem found in policy files; each line starts
// with file:line:column.
type LoadError struct{ Problems []string }

func (e *LoadError) Error() string {
	return "invalid policies:\n  " + strings.Join(e.Problems, "\n  ")
}

// Default returns the embedded schema and default policies.
func Default() (*Policies, error) {
	p, err := Load(DefaultSchemaFile, DefaultSchema(), map[string][]byte{DefaultPoliciesFile: DefaultPolicyText()})
	if err != nil {
		return nil, fmt.Errorf("authz: embedded defaults: %w", err)
	}
	p.Source = "embedded defaults"
	return p, nil
}

// LoadDir loads the *.cedar files of dir, validated against the
// *.cedarschema file of dir (at most one), or the embedded schema when
// there is none.
func LoadDir(dir string) (*Policies, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("authz: policies: %w", err)
	}
	var schemaName string
	var schemaSrc []byte
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".cedarschema"):
			if schemaName != "" {
				return nil, fmt.Errorf("authz: policies: two schema files in %s: %s and %s", dir, filepath.Base(schemaName), e.Name())
			}
			if schemaSrc, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("authz: policies: %w", err)
			}
			schemaName = path
		case strings.HasSuffix(e.Name(), ".cedar"):
			if files[path], err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("authz: policies: %w", err)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("authz: policies: no .cedar file in %s", dir)
	}
	if schemaName == "" {
		schemaName, schemaSrc = DefaultSchemaFile+" (embedded)", DefaultSchema()
	}
	p, err := Load(schemaName, schemaSrc, files)
	if err != nil {
		return nil, err
	}
	p.Source = dir
	return p, nil
}

// Load parses a schema and policy files (name -> text), and validates every
// policy against the schema. Errors are a *LoadError naming file:line:col.
func Load(schemaName string, schemaSrc []byte, files map[string][]byte) (*Policies, error) {
	var problems []string
	var s schema.Schema
	s.SetFilename(schemaName)
	if err := s.UnmarshalCedar(schemaSrc); err != nil {
		return nil, &LoadError{Problems: []string{prefixFile(schemaName, err.Error())}}
	}
	rs, err := s.Resolve()
	if err != nil {
		return nil, &LoadError{Problems: []string{schemaName + ": " + err.Error()}}
	}
	v := validate.New(rs)
	p := &Policies{set: cedar.NewPolicySet(), schema: rs}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, name := range names {
		list, err := cedar.NewPolicyListFromBytes(name, files[name])
		if err != nil {
			problems = append(problems, prefixFile(name, err.Error()))
			continue
		}
		for i, pol := range list {
			pos := pol.Position()
			at := fmt.Sprintf("%s:%d:%d", name, pos.Line, pos.Column)
			id := fmt.Sprintf("%s#%d", filepath.Base(name), i)
			if a, ok := pol.Annotations()["id"]; ok && a != "" {
				id = string(a)
			}
			if prev, dup := seen[id]; dup {
				problems = append(problems, fmt.Sprintf("%s: policy id %q is already used at %s", at, id, prev))
				continue
			}
			seen[id] = at
			if err := v.Policy(id, (*xast.Policy)(pol.AST())); err != nil {
				problems = append(problems, fmt.Sprintf("%s: policy %q does not fit the schema: %s", at, id, validationMsg(id, err)))
				continue
			}
			p.set.Add(cedar.PolicyID(id), pol)
			p.ids = append(p.ids, id)
		}
		for _, m := range rolePattern.FindAllSubmatch(files[name], -1) {
			if r := string(m[1]); !slices.Contains(p.roles, r) {
				p.roles = append(p.roles, r)
			}
		}
	}
	sort.Strings(p.roles)
	if len(problems) > 0 {
		return nil, &LoadError{Problems: problems}
	}
	return p, nil
}

// parsePos finds the position in cedar-go's parse errors ("parser error:
// parse error at <input>:3:1 ...").
var parsePos = regexp.MustCompile(`^(?:parser error: )?parse error at [^:]*:(\d+):(\d+) (.*)$`)

// prefixFile makes a parser message start with file:line:col.
func prefixFile(name, msg string) string {
	if m := parsePos.FindStringSubmatch(msg); m != nil {
		detail := m[3]
		if e := exactMsg.FindStringSubmatch(detail); e != nil {
			got := e[1]
			if got == "" {
				got = "the end of the file"
			}
			detail = fmt.Sprintf("expected %q, got %s", e[2], got)
		}
		return fmt.Sprintf("%s:%s:%s: syntax error: %s", name, m[1], m[2], detail)
	}
	if strings.HasPrefix(msg, name) {
		return msg
	}
	return name + ":" + msg
}

// exactMsg is cedar-go's "token: exact got X want Y".
var exactMsg = regexp.MustCompile(`^"[^"]*": exact got (.*) want (.*)$`)

// validationMsg joins the validator's lines, without their "for policy
// `id`, " prefix.
func validationMsg(id string, err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), "for policy `"+id+"`, ")
		if l != "" && !slices.Contains(parts, l) {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// Cedar evaluates requests with cedar-go, in-process.
type Cedar struct {
	p *Policies
	// principals keeps the entities of recent principals (the principal,
	// its roles, groups and tenant), by everything they are built from:
	// a client's requests reuse them. Read-only once built.
	mu         sync.Mutex
	principals map[string]types.EntityMap
	// decisions keeps recent decisions by everything they depend on (the
	// principal, the action, the resource and its attributes): with no
	// context and fixed policies, the same request always gets the same
	// answer. Emptied when it reaches maxDecisions.
	decisions map[string]Decision
}

var _ Authorizer = (*Cedar)(nil)

// maxPrincipals bounds the principals whose entities a Cedar keeps; past it
// the set is emptied and refilled by the next requests.
const maxPrincipals = 1024

// maxDecisions bounds the decisions a Cedar keeps.
const maxDecisions = 8192

// NewCedar returns an authorizer over validated policies.
func NewCedar(p *Policies) *Cedar {
	return &Cedar{p: p, principals: map[string]types.EntityMap{}, decisions: map[string]Decision{}}
}

// Policies returns the policies it evaluates.
func (c *Cedar) Policies() *Policies { return c.p }

func uid(typ, id string) types.EntityUID {
	return types.NewEntityUID(types.EntityType(Namespace+"::"+typ), types.String(id))
}

// CedarRequest builds the Cedar request and the entities it needs: the
// principal with its roles, groups and tenant, and the resource with its
// tenant. It is exported for backends that send them elsewhere.
func CedarRequest(req Request) (types.Request, types.EntityMap, error) {
	cr, res, err := resourceRequest(req)
	if err != nil {
		return types.Request{}, nil, err
	}
	ents := principalEntities(req.Principal)
	maps.Copy(ents, res)
	return cr, ents, nil
}

// principalEntities are the entities of a principal: itself, its roles,
// groups and tenant.
func principalEntities(p auth.Principal) types.EntityMap {
	ents := types.EntityMap{}
	add := func(e types.Entity) { ents[e.UID] = e }
	pu := uid("User", p.ID)
	parents := []types.EntityUID{}
	attrs := types.RecordMap{"name": types.String(p.Name), "kind": types.String(p.Kind)}
	for _, r := range p.Roles {
		parents = append(parents, uid("Role", r))
		add(types.Entity{UID: uid("Role", r)})
	}
	for _, g := range p.Groups {
		parents = append(parents, uid("Group", g))
		add(types.Entity{UID: uid("Group", g)})
	}
	if p.Tenant != "" {
		parents = append(parents, uid("Tenant", p.Tenant))
		add(types.Entity{UID: uid("Tenant", p.Tenant)})
		attrs["tenant"] = uid("Tenant", p.Tenant)
	}
	add(types.Entity{UID: pu, Parents: types.NewEntityUIDSet(parents...), Attributes: types.NewRecord(attrs)})
	return ents
}

// resourceRequest builds the Cedar request and the entities of its
// resource (with the resource's tenant or cluster).
func resourceRequest(req Request) (types.Request, types.EntityMap, error) {
	if !slices.Contains(Actions, req.Action) {
		return types.Request{}, nil, fmt.Errorf("%w %q", ErrUnknownAction, req.Action)
	}
	ents := make(types.EntityMap, 2)
	add := func(e types.Entity) { ents[e.UID] = e }
	r := req.Resource
	ru := uid(r.Type, r.ID)
	str := func(k string) types.String { return types.String(r.Attrs[k]) }
	tenantOf := func() types.EntityUID {
		t := uid("Tenant", r.Tenant)
		add(types.Entity{UID: t})
		return t
	}
	switch r.Type {
	case TypeCluster, TypeTenant:
		// A tenant the principal is in is already an entity, with no
		// attributes either: the same entity.
		add(types.Entity{UID: ru})
	case TypePipeline:
		t := tenantOf()
		add(types.Entity{UID: ru, Parents: types.NewEntityUIDSet(t),
			Attributes: types.NewRecord(types.RecordMap{"tenant": t, "file": str("file")})})
	case TypeRun:
		t := tenantOf()
		add(types.Entity{UID: ru, Parents: types.NewEntityUIDSet(t),
			Attributes: types.NewRecord(types.RecordMap{"tenant": t, "pipeline": str("pipeline"), "state": str("state")})})
	case TypeSecret, TypeRepo:
		t := tenantOf()
		add(types.Entity{UID: ru, Parents: types.NewEntityUIDSet(t), Attributes: types.NewRecord(types.RecordMap{"tenant": t})})
	case TypeWorker:
		c := uid(TypeCluster, ClusterID)
		add(types.Entity{UID: c})
		add(types.Entity{UID: ru, Parents: types.NewEntityUIDSet(c), Attributes: types.NewRecord(types.RecordMap{"pool": str("pool")})})
	default:
		return types.Request{}, nil, fmt.Errorf("unknown resource type %q", r.Type)
	}
	cr := types.Request{
		Principal: uid("User", req.Principal.ID),
		Action:    types.NewEntityUID(types.EntityType(Namespace+"::Action"), types.String(req.Action)),
		Resource:  ru,
		Context:   types.NewRecord(nil),
	}
	return cr, ents, nil
}

// principalKey is everything a principal's entities are built from.
func principalKey(p auth.Principal) string {
	var b strings.Builder
	for _, s := range []string{p.ID, p.Name, p.Kind, p.Tenant} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, r := range p.Roles {
		b.WriteString(r)
		b.WriteByte(1)
	}
	b.WriteByte(0)
	for _, g := range p.Groups {
		b.WriteString(g)
		b.WriteByte(1)
	}
	return b.String()
}

// entitiesOf returns the principal's entities, built once per principal.
func (c *Cedar) entitiesOf(k string, p auth.Principal) types.EntityMap {
	c.mu.Lock()
	ents, ok := c.principals[k]
	c.mu.Unlock()
	if ok {
		return ents
	}
	ents = principalEntities(p)
	c.mu.Lock()
	if len(c.principals) >= maxPrincipals {
		clear(c.principals)
	}
	c.principals[k] = ents
	c.mu.Unlock()
	return ents
}

// layered finds an entity in the request's own entities, then in the
// principal's (shared, never written).
type layered struct{ own, principal types.EntityMap }

func (l layered) Get(u types.EntityUID) (types.Entity, bool) {
	if e, ok := l.own[u]; ok {
		return e, true
	}
	e, ok := l.principal[u]
	return e, ok
}

// requestKey is everything a decision depends on.
func requestKey(pk string, req Request) string {
	var b strings.Builder
	b.WriteString(pk)
	for _, s := range []string{req.Action, req.Resource.Type, req.Resource.ID, req.Resource.Tenant} {
		b.WriteByte(2)
		b.WriteString(s)
	}
	keys := make([]string, 0, len(req.Resource.Attrs))
	for k := range req.Resource.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(3)
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(req.Resource.Attrs[k])
	}
	return b.String()
}

// Authorize implements Authorizer. The Decision's slices are shared with
// later answers to the same request: read them, do not change them.
func (c *Cedar) Authorize(_ context.Context, req Request) (Decision, error) {
	pk := principalKey(req.Principal)
	key := requestKey(pk, req)
	c.mu.Lock()
	d, ok := c.decisions[key]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := c.authorize(pk, req)
	if err != nil {
		return d, err
	}
	c.mu.Lock()
	if len(c.decisions) >= maxDecisions {
		clear(c.decisions)
	}
	c.decisions[key] = d
	c.mu.Unlock()
	return d, nil
}

func (c *Cedar) authorize(pk string, req Request) (Decision, error) {
	cr, res, err := resourceRequest(req)
	if err != nil {
		return Decision{}, fmt.Errorf("authz: %w", err)
	}
	dec, diag := cedar.Authorize(c.p.set, layered{own: res, principal: c.entitiesOf(pk, req.Principal)}, cr)
	d := Decision{Allow: dec == cedar.Allow}
	for _, r := range diag.Reasons {
		d.Reasons = append(d.Reasons, string(r.PolicyID))
	}
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, e.String())
	}
	return d, nil
}

// IsLoadError reports whether err lists problems of policy files.
func IsLoadError(err error) bool {
	var le *LoadError
	return errors.As(err, &le)
}
