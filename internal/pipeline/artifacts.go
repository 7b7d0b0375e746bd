package pipeline

import (
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Artifacts is what a job keeps of its workspace when it ends, for the jobs
// that need it and for people (hodei artifacts, the API).
type Artifacts struct {
	// Name names the artifact within the job ("artifacts" by default).
	Name string `json:"name"`
	// Paths are globs relative to the workspace; ** matches any number of
	// directories, and a directory matched keeps everything under it.
	Paths []string `json:"paths"`
	// ExpireIn is how long the artifact is kept (0: the server's default).
	ExpireIn time.Duration `json:"expire_in,omitempty"`
	// When says after which outcome it is uploaded.
	When ArtifactsWhen `json:"when"`
}

// ArtifactsWhen says after which outcome of a job its artifacts are uploaded.
type ArtifactsWhen string

// The values of artifacts.when.
const (
	OnSuccess ArtifactsWhen = "on_success"
	OnFailure ArtifactsWhen = "on_failure"
	AlwaysUp  ArtifactsWhen = "always"
)

// Uploads reports whether artifacts with this when are uploaded after a job
// that succeeded (or not).
func (w ArtifactsWhen) Uploads(succeeded bool) bool {
	switch w {
	case AlwaysUp:
		return true
	case OnFailure:
		return !succeeded
	default:
		return succeeded
	}
}

// Cache is a set of paths saved under a key after a successful job and
// restored before the first step of later runs.
type Cache struct {
	// Key may hold ${{ hashFiles('glob', ...) }}, evaluated by the worker
	// in the workspace when the job starts.
	Key string `json:"key"`
	// Paths are relative to the workspace, or to the job's HOME with ~/.
	Paths []string `json:"paths"`
	// RestoreKeys are prefixes tried, newest entry first, when no entry
	// has the exact key.
	RestoreKeys []string `json:"restore_keys,omitempty"`
}

// DefaultArtifactsName is the name of a job's artifacts that has none.
const DefaultArtifactsName = "artifacts"

// MaxCaches bounds the caches of one job.
const MaxCaches = 8

var (
	artifactsFields = []string{"name", "paths", "expire_in", "when"}
	cacheFields     = []string{"key", "paths", "restore_keys"}
	needFields      = []string{"job", "artifacts"}
	// artifactNamePattern keeps names usable in URLs and file names
	// (compiled at its first use: its counted repetition is a large
	// program, which every start of the binary would pay for).
	artifactNamePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })
	// cacheExpr is an expression a cache key may hold.
	cacheExpr = regexp.MustCompile(`\$\{\{(.*?)\}\}`)
	// hashFilesCall is the one function a cache key may call.
	hashFilesCall = regexp.MustCompile(`^\s*hashFiles\(\s*('[^']*'(\s*,\s*'[^']*')*)\s*\)\s*$`)
)

// artifacts reads a job's artifacts map.
func (p *parser) artifacts(n *yaml.Node, field string) *Artifacts {
	v, ok := p.Map(n, field, "a map with paths, name, expire_in and when")
	if !ok {
		return nil
	}
	a := &Artifacts{Name: DefaultArtifactsName, When: OnSuccess}
	havePaths := false
	for _, f := range p.Fields(v, field, artifactsFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "name":
			if s, ok := p.Text(f.Val, fp); ok {
				if !artifactNamePattern().MatchString(s) {
					p.Errorf(f.Val, fp, "invalid name %q: 1 to 64 letters, digits, ., _ and -, starting with a letter or digit", s)
				} else {
					a.Name = s
				}
			}
		case "paths":
			havePaths = true
			a.Paths = p.workspacePaths(f.Val, fp, false)
		case "expire_in":
			a.ExpireIn = p.expireIn(f.Val, fp)
		case "when":
			if s, ok := p.Text(f.Val, fp); ok {
				switch w := ArtifactsWhen(s); w {
				case OnSuccess, OnFailure, AlwaysUp:
					a.When = w
				default:
					p.Errorf(f.Val, fp, "must be on_success, on_failure or always, got %q", s)
				}
			}
		}
	}
	if !havePaths {
		p.Errorf(v, field+".paths", "is required")
	}
	return a
}

// expireIn reads a duration, with d for days as well (7d, 36h).
func (p *parser) expireIn(n *yaml.Node, field string) time.Duration {
	v := yamlpos.Deref(n)
	if s, ok := strings.CutSuffix(v.Value, "d"); ok && yamlpos.IsString(v) {
		days, err := strconv.Atoi(s)
		if err != nil || days <= 0 || days > 3650 {
			p.Errorf(n, field, "invalid duration %q: use a number of days from 1 to 3650 (7d) or a duration such as 36h", v.Value)
			return 0
		}
		return time.Duration(days) * 24 * time.Hour
	}
	d, _ := p.Duration(n, field)
	return d
}

// workspacePaths reads a list of paths (globs) that must stay inside the
// workspace, or inside HOME when home allows ~/.
func (p *parser) workspacePaths(n *yaml.Node, field string, home bool) []string {
	items, ok := p.List(n, field, "a list of paths", "must list at least one path")
	if !ok {
		return nil
	}
	var out []string
	for i, it := range items {
		f := yamlpos.Index(field, i)
		s, ok := p.Text(it, f)
		if !ok {
			continue
		}
		rel := s
		if home {
			if rest, ok := strings.CutPrefix(s, "~/"); ok {
				rel = rest
			} else if s == "~" {
				rel = "."
			}
		}
		if _, err := path.Match(rel, ""); err != nil {
			p.Errorf(it, f, "invalid pattern %q: %v", s, err)
			continue
		}
		if path.IsAbs(rel) || slices.Contains(strings.Split(rel, "/"), "..") {
			where := "the workspace"
			if home {
				where = "the workspace (or ~/, the job's HOME)"
			}
			p.Errorf(it, f, "path %q must stay inside %s: no leading / and no ..", s, where)
			continue
		}
		out = append(out, s)
	}
	return out
}

// caches reads a job's list of caches.
func (p *parser) caches(n *yaml.Node, field string) []Cache {
	items, ok := p.List(n, field, "a list of caches (key and paths)", "must list at least one cache")
	if !ok {
		return nil
	}
	if len(items) > MaxCaches {
		p.Errorf(n, field, "has %d caches; at most %d are allowed", len(items), MaxCaches)
		return nil
	}
	var out []Cache
	keys := make(map[string]bool)
	for i, it := range items {
		f := yamlpos.Index(field, i)
		m, ok := p.Map(it, f, "a map with key, paths and restore_keys")
		if !ok {
			continue
		}
		var c Cache
		var haveKey, havePaths bool
		for _, e := range p.Fields(m, f, cacheFields) {
			fp := f + "." + e.Name
			switch e.Name {
			case "key":
				haveKey = true
				if s, ok := p.cacheKey(e.Val, fp); ok {
					c.Key = s
					if keys[s] {
						p.Errorf(e.Val, fp, "cache key %q is used twice in this job", s)
					}
					keys[s] = true
				}
			case "paths":
				havePaths = true
				c.Paths = p.workspacePaths(e.Val, fp, true)
			case "restore_keys":
				c.RestoreKeys = p.restoreKeys(e.Val, fp)
			}
		}
		if !haveKey {
			p.Errorf(m, f+".key", "is required")
		}
		if !havePaths {
			p.Errorf(m, f+".paths", "is required")
		}
		out = append(out, c)
	}
	return out
}

// cacheKey reads a cache key: text in which the only expressions are
// hashFiles calls and matrix values.
func (p *parser) cacheKey(n *yaml.Node, field string) (string, bool) {
	s, ok := p.Text(n, field)
	if !ok {
		return "", false
	}
	if len(s) > 512 {
		p.Errorf(n, field, "is %d characters long; at most 512 are allowed", len(s))
		return "", false
	}
	for _, m := range cacheExpr.FindAllStringSubmatch(s, -1) {
		inner := strings.TrimSpace(m[1])
		if hashFilesCall.MatchString(inner) || strings.HasPrefix(inner, "matrix.") {
			continue
		}
		p.Errorf(n, field, "a cache key may use only ${{ hashFiles('glob', ...) }} and ${{ matrix.KEY }}, got %s", m[0])
		return "", false
	}
	return s, true
}

// restoreKeys reads the prefixes of a cache's restore_keys.
func (p *parser) restoreKeys(n *yaml.Node, field string) []string {
	items, ok := p.List(n, field, "a list of key prefixes", "")
	if !ok {
		return nil
	}
	var out []string
	for i, it := range items {
		if s, ok := p.cacheKey(it, yamlpos.Index(field, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// need reads one item of needs: a job id, or a map {job, artifacts}. It
// returns the id, the node to place errors about it, and whether the job
// wants the needed job's artifacts.
func (p *parser) need(n *yaml.Node, field string) (id string, at *yaml.Node, artifacts, ok bool) {
	v := yamlpos.Deref(n)
	if v.Kind != yaml.MappingNode {
		id, ok = p.Text(n, field)
		return id, n, true, ok
	}
	artifacts = true
	for _, e := range p.Fields(v, field, needFields) {
		fp := field + "." + e.Name
		switch e.Name {
		case "job":
			id, ok = p.Text(e.Val, fp)
			at = e.Val
		case "artifacts":
			artifacts, _ = p.Bool(e.Val, fp)
		}
	}
	if at == nil {
		p.Errorf(n, field+".job", "is required")
	}
	return id, at, artifacts, ok
}

// CacheExprs returns the ${{ }} expressions of a cache key, for the worker
// that evaluates them.
func CacheExprs(key string) [][]int { return cacheExpr.FindAllStringSubmatchIndex(key, -1) }

// HashFilesArgs returns the glob arguments of an expression's inner text if
// it is a hashFiles call.
func HashFilesArgs(inner string) ([]string, bool) {
	m := hashFilesCall.FindStringSubmatch(inner)
	if m == nil {
		return nil, false
	}
	var out []string
	for _, q := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(m[1], -1) {
		out = append(out, q[1])
	}
	return out, true
}

// expandArtifacts fills a JobSpec's artifacts and caches from its job
// (matrix values substituted in names, paths and cache keys) and names the
// needed jobs whose artifacts it does not receive: those it opted out of,
// and those that keep none (kept: by job id), so that its worker asks for
// none of theirs.
func expandArtifacts(s *JobSpec, j *Job, mx map[string]string, keys map[string][]string, kept map[string]bool) {
	if a := j.Artifacts; a != nil {
		c := *a
		c.Paths = substituteAll(a.Paths, mx)
		s.Artifacts = &c
	}
	for _, c := range j.Cache {
		s.Cache = append(s.Cache, Cache{
			Key:         substitute(c.Key, mx),
			Paths:       substituteAll(c.Paths, mx),
			RestoreKeys: substituteAll(c.RestoreKeys, mx),
		})
	}
	for _, id := range j.Needs {
		if !kept[id] || slices.Contains(j.NoArtifacts, id) {
			s.NoArtifactsFrom = append(s.NoArtifactsFrom, keys[id]...)
		}
	}
}

// cacheMatrixExpr matches ${{ matrix.KEY }} in artifact and cache fields:
// they are filled in when the run is made; the rest of a cache key (its
// hashFiles) is the agent's.
var cacheMatrixExpr = regexp.MustCompile(`\$\{\{\s*matrix\.([^\s}]*)\s*\}\}`)

// substitute fills the matrix values of a job into s.
func substitute(s string, mx map[string]string) string {
	if len(mx) == 0 || !strings.Contains(s, "${{") {
		return s
	}
	return cacheMatrixExpr.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := mx[cacheMatrixExpr.FindStringSubmatch(m)[1]]; ok {
			return v
		}
		return m
	})
}

func substituteAll(ss []string, mx map[string]string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = substitute(s, mx)
	}
	return out
}
