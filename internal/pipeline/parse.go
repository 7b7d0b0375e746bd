package pipeline

import (
	"fmt"
	"math"
	"math/big"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Limits of the file format.
const (
	// MaxMatrixCombinations is the most jobs a single matrix may expand into.
	MaxMatrixCombinations = 256
	MaxRetry              = 10
	// MaxPriority bounds priorities: -MaxPriority to MaxPriority, default 0;
	// below 0 runs after everything else (see docs/scheduling.md).
	MaxPriority = 100
	MaxGPU      = 64
)

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// anyExpr matches a ${{ }} expression, for checks of the text around
	// expressions.
	anyExpr = regexp.MustCompile(`\$\{\{.*?\}\}`)
)

// The fields allowed at each level, in the order the documentation gives.
var (
	pipelineFields    = []string{"name", "on", "inputs", "env", "priority", "concurrency", "include", "jobs"}
	concurrencyFields = []string{"group", "limit"}
	jobFields         = []string{"extends", "name", "needs", "if", "runs-on", "image", "network", "env", "secrets", "timeout", "retry", "infra_retries", "priority", "matrix", "continue-on-error", "steps", "checkout", "artifacts", "cache", "outputs", "services", "environment"}
	runsOnFields      = []string{"labels", "cpu", "memory", "gpu"}
	stepFields        = []string{"name", "if", "run", "shell", "working-directory", "env", "timeout", "continue-on-error"}
)

// reservedEnvPrefix starts the names of the variables Hodei sets itself.
const reservedEnvPrefix = "HODEI_"

// ParseFile reads and parses the pipeline file at path, within the default
// Limits. Messages name the file by path as given. An error reading the
// file is returned as is; problems in its content (and a file too large)
// come as an ErrorList.
func ParseFile(path string) (*Pipeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := ReadFile(path, f, 0)
	if err != nil {
		return nil, err
	}
	return ParseWith(path, data, Limits{}, FileLoader(0))
}

// Parse parses and validates a pipeline file within the default Limits.
// file names the file in messages. On failure the error is an ErrorList
// holding every problem found, sorted by position.
func Parse(file string, data []byte) (*Pipeline, error) {
	return ParseWithLimits(file, data, Limits{})
}

// ParseWithLimits is Parse with other limits than the defaults (a zero
// field keeps its default). A file over MaxFileBytes is refused before
// it is read; a pipeline over MaxJobs is reported at its jobs key.
func ParseWithLimits(file string, data []byte, lim Limits) (*Pipeline, error) {
	return ParseWith(file, data, lim, nil)
}

// ParseWith is ParseWithLimits that reads the files the pipeline includes
// with load (nil: include is an error). The pipeline's Includes hold what
// was read, by name, so that MapLoader reads the same again.
func ParseWith(file string, data []byte, lim Limits, load Loader) (*Pipeline, error) {
	lim = lim.WithDefaults()
	if len(data) > lim.MaxFileBytes {
		return nil, ErrorList{SizeError(file, int64(len(data)), lim.MaxFileBytes)}
	}
	if load != nil {
		inner := load
		load = func(name string) ([]byte, error) {
			data, err := inner(name)
			if err == nil && len(data) > lim.MaxFileBytes {
				return nil, ErrorList{SizeError(name, int64(len(data)), lim.MaxFileBytes)}
			}
			return data, err
		}
	}
	p := &parser{Reader: yamlpos.NewReader(file, data), maxJobs: lim.MaxJobs,
		inc: &includeState{load: load, read: make(map[string][]byte)}}
	p.main = p.Reader
	var pl *Pipeline
	if root := p.Decode(data, "a pipeline needs at least a name and jobs", "a file holds one pipeline"); root != nil {
		pl = p.pipeline(root)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return pl, nil
}

// parser walks the YAML node tree, collecting errors as it goes (in its
// Reader).
type parser struct {
	*yamlpos.Reader
	jobs    []*jobInfo
	exprs   []exprRef // checked once the whole file is read
	maxJobs int
	// bases are what jobs may extend (see extend); extendSeen the extends
	// already reported on.
	bases      map[string]*yaml.Node
	extendSeen map[*yaml.Node]bool
	// inc is what the includes have read (include.go); main reads the
	// pipeline's own file.
	inc  *includeState
	main *yamlpos.Reader
}

// jobInfo keeps, next to a parsed job, the nodes needed to place errors found
// once every job is known.
type jobInfo struct {
	job         *Job
	needs       []*yaml.Node // parallel to job.Needs
	prioritySet bool
	// axes names the axes of the job's matrix; matrixBroken says that the
	// matrix was too broken to name them (already reported).
	axes         map[string]bool
	matrixBroken bool
	// rd reads the file the job is in (the pipeline's, or one it
	// includes).
	rd *yamlpos.Reader
}

// expr records a field that may hold expressions.
func (p *parser) expr(n *yaml.Node, field string, sc scope, job *jobInfo) {
	p.exprs = append(p.exprs, exprRef{node: n, field: field, scope: sc, job: job, rd: p.Reader})
}

// pipeline reads the root map.
func (p *parser) pipeline(root *yaml.Node) *Pipeline {
	n := yamlpos.Deref(root)
	if n.Kind != yaml.MappingNode {
		p.Errorf(root, "", "a pipeline file must be a map with name and jobs, got %s", yamlpos.Describe(n))
		return nil
	}
	pl := &Pipeline{File: p.File}
	var haveName, haveJobs bool
	var jobsNode, jobsKey *yaml.Node
	var includes []includeRef
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlpos.Deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "jobs" {
			jobsNode = yamlpos.Deref(n.Content[i+1])
		}
	}
	p.templates(n, jobsNode)
	// Top-level keys starting with x- hold anchors for merge keys and
	// aliases elsewhere in the file: they are not read.
	for _, e := range p.FieldsWithExtensions(n, "", pipelineFields) {
		switch e.Name {
		case "name":
			haveName = true
			pl.Name, _ = p.name(e.Val, "name")
			p.expr(e.Val, "name", atPipeline, nil)
		case "on":
			pl.On = p.on(e.Val, "on")
		case "inputs":
			pl.Inputs = p.inputs(e.Val, "inputs")
		case "env":
			pl.Env = p.env(e.Val, "env", atPipeline, nil)
		case "priority":
			pl.Priority, _ = p.IntIn(e.Val, "priority", -MaxPriority, MaxPriority)
		case "concurrency":
			pl.Concurrency = p.concurrency(e.Val, "concurrency")
		case "include":
			includes = p.includes(e.Val, "include", p.File)
		case "jobs":
			haveJobs = true
			jobsKey = e.Key
			p.jobList(e.Val)
		}
	}
	if !haveName {
		p.Errorf(n, "name", "is required")
	}
	if !haveJobs && len(includes) == 0 {
		p.Errorf(n, "jobs", "is required")
	}
	p.include(includes, []string{p.File})
	if len(p.inc.read) > 0 {
		pl.Includes = p.inc.read
	}
	if !haveJobs && len(includes) > 0 && len(p.jobs) == 0 && !p.Failed() {
		p.Errorf(n, "jobs", "is required: the pipeline and the files it includes define no job")
	}
	if p.maxJobs > 0 {
		at := jobsKey
		if at == nil {
			at = n
		}
		p.checkJobCount(at, p.maxJobs)
	}
	for _, info := range p.jobs {
		if !info.prioritySet {
			info.job.Priority = pl.Priority
		}
		pl.Jobs = append(pl.Jobs, info.job)
	}
	p.checkNeeds()
	names := make(map[string]bool, len(pl.Inputs))
	for _, in := range pl.Inputs {
		names[in.Name] = true
	}
	p.checkExprs(names)
	return pl
}

// concurrency reads a pipeline's concurrency group.
func (p *parser) concurrency(n *yaml.Node, field string) *Concurrency {
	v, ok := p.Map(n, field, "a map with group and limit")
	if !ok {
		return nil
	}
	c := &Concurrency{Limit: 1}
	haveGroup := false
	for _, f := range p.Fields(v, field, concurrencyFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "group":
			haveGroup = true
			if s, ok := p.name(f.Val, fp); ok {
				c.Group = s
				p.expr(f.Val, fp, atPipeline, nil)
				if s == "" {
					p.Errorf(f.Val, fp, "must not be empty")
				}
			}
		case "limit":
			c.Limit, _ = p.IntIn(f.Val, fp, 1, MaxConcurrencyLimit)
		}
	}
	if !haveGroup {
		p.Errorf(n, field+".group", "is required")
	}
	return c
}

// jobList reads the jobs map.
func (p *parser) jobList(n *yaml.Node) {
	v := yamlpos.Deref(n)
	if v.Kind != yaml.MappingNode {
		p.Errorf(n, "jobs", "must be a map of job ids to jobs, got %s", yamlpos.Describe(v))
		return
	}
	if len(v.Content) == 0 {
		p.Errorf(n, "jobs", "must define at least one job")
		return
	}
	for _, e := range p.Entries(v, "jobs") {
		if at := p.jobAt(e.Name); at != "" {
			p.Errorf(e.Key, "jobs."+e.Name, "job %q is defined twice: also at %s (job ids are one namespace across included files)", e.Name, at)
			continue
		}
		e.Val = p.extend(e.Val, "jobs."+e.Name, []string{e.Name})
		p.jobs = append(p.jobs, p.job(e))
	}
}

// job reads one job.
func (p *parser) job(e yamlpos.Entry) *jobInfo {
	path := "jobs." + e.Name
	if !idPattern.MatchString(e.Name) {
		p.Errorf(e.Key, path, "invalid job id %q: must start with a letter or _ and hold only letters, digits, _ and -", e.Name)
	}
	j := &Job{ID: e.Name, Name: e.Name, If: Success, Line: e.Key.Line}
	if p.Reader != p.main {
		j.File = p.File
	}
	info := &jobInfo{job: j, rd: p.Reader}
	v := yamlpos.Deref(e.Val)
	if v.Kind != yaml.MappingNode {
		p.Errorf(e.Val, path, "must be a map with the job's steps, got %s", yamlpos.Describe(v))
		return info
	}
	var secretRefs []exprRef
	var haveSteps, haveMatrix bool
	var networkNode, servicesNode *yaml.Node
	for _, f := range p.Fields(v, path, jobFields) {
		fp := path + "." + f.Name
		switch f.Name {
		case "extends":
			// Merged away by extend; a job only gets here with one that
			// is not a plain key.
		case "name":
			if s, ok := p.name(f.Val, fp); ok {
				j.Name = s
				p.expr(f.Val, fp, atRunMade, info)
			}
		case "needs":
			j.Needs, info.needs, j.NoArtifacts = p.needs(f.Val, fp)
		case "if":
			j.If = p.condition(f.Val, fp, info)
		case "runs-on":
			j.RunsOn = p.runsOn(f.Val, fp, info)
		case "image":
			if s, ok := p.image(f.Val, fp); ok {
				j.Image = s
				p.expr(f.Val, fp, atRunMade, info)
			}
		case "network":
			networkNode = f.Val
			j.Network, _ = p.Bool(f.Val, fp)
		case "env":
			j.Env = p.env(f.Val, fp, atJob, info)
		case "secrets":
			j.Secrets, secretRefs = p.secrets(f.Val, fp)
		case "timeout":
			j.Timeout, _ = p.Duration(f.Val, fp)
		case "retry":
			j.Retry, _ = p.IntIn(f.Val, fp, 0, MaxRetry)
		case "infra_retries":
			if n, ok := p.IntIn(f.Val, fp, 0, MaxRetry); ok {
				j.InfraRetries = &n
			}
		case "priority":
			j.Priority, info.prioritySet = p.IntIn(f.Val, fp, -MaxPriority, MaxPriority)
		case "matrix":
			haveMatrix = true
			j.Matrix, info.axes = p.matrix(f.Val, fp, j.ID)
		case "continue-on-error":
			j.ContinueOnError, _ = p.Bool(f.Val, fp)
		case "steps":
			haveSteps = true
			j.Steps = p.steps(f.Val, fp, info)
		case "checkout":
			j.Checkout = p.checkout(f.Val, fp)
		case "artifacts":
			j.Artifacts = p.artifacts(f.Val, fp)
		case "cache":
			j.Cache = p.caches(f.Val, fp)
		case "outputs":
			j.Outputs = p.outputs(f.Val, fp)
		case "services":
			servicesNode = f.Val
			j.Services = p.services(f.Val, fp, info)
		case "environment":
			j.Environment = p.environment(f.Val, fp)
		}
	}
	if !haveSteps {
		p.Errorf(v, path+".steps", "is required")
	}
	if networkNode != nil && j.Image == "" {
		p.Errorf(networkNode, path+".network", "only applies to a job with an image (a job without one uses the worker's network)")
	}
	if servicesNode != nil && j.Image == "" {
		p.Errorf(servicesNode, path+".services", servicesNeedImage)
	}
	p.checkSecretEnv(j, secretRefs, path)
	// A matrix broken beyond naming its axes is reported already.
	info.matrixBroken = haveMatrix && len(info.axes) == 0
	return info
}

// exprPos finds in the source the occurrence of match that starts at byte
// start of the scalar value; when it can't (escapes in a quoted string), the
// scalar's own position is used.
func (p *parser) exprPos(n *yaml.Node, value string, start int, match string) (int, int) {
	line, col, _ := p.find(n, value, start, match)
	return line, col
}

// find is exprPos that also says whether the match was found in the source.
func (p *parser) find(n *yaml.Node, value string, start int, match string) (int, int, bool) {
	n = yamlpos.Deref(n)
	want := strings.Count(value[:start], match)
	last := n.Line + 2*strings.Count(value, "\n") + 2
	seen := 0
	for line := n.Line; line >= 1 && line <= last && line <= len(p.Lines); line++ {
		s := p.Lines[line-1]
		from := 0
		if line == n.Line {
			from = byteOffset(s, n.Column-1)
		}
		for {
			i := strings.Index(s[from:], match)
			if i < 0 {
				break
			}
			if seen == want {
				return line, utf8.RuneCountInString(s[:from+i]) + 1, true
			}
			seen++
			from += i + len(match)
		}
	}
	return n.Line, n.Column, false
}

// byteOffset converts a rune count into a byte offset in s.
func byteOffset(s string, runes int) int {
	for i := range s {
		if runes <= 0 {
			return i
		}
		runes--
	}
	return len(s)
}

// checkNeeds reports needs on unknown jobs and cycles, once every job is read.
func (p *parser) checkNeeds() {
	ids := make(map[string]bool, len(p.jobs))
	var all []string
	jobs := make([]*Job, len(p.jobs))
	for i, info := range p.jobs {
		ids[info.job.ID] = true
		all = append(all, info.job.ID)
		jobs[i] = info.job
	}
	main := p.Reader
	defer func() { p.Reader = main }()
	for _, info := range p.jobs {
		p.Reader = info.rd
		for k, need := range info.job.Needs {
			if ids[need] {
				continue
			}
			hint := ""
			if s := yamlpos.Suggest(need, all); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.Errorf(info.needs[k], "jobs."+info.job.ID+".needs", "unknown job %q%s", need, hint)
		}
	}
	for _, c := range findCycles(jobs) {
		info := p.jobs[c.job]
		p.Reader = info.rd
		p.Errorf(info.needs[c.need], "jobs."+info.job.ID+".needs", "dependency cycle: %s (each job needs the next)", strings.Join(c.path, " -> "))
	}
}

// name reads a name shown to people (pipeline, job, step, concurrency
// group): non-empty text without control characters.
func (p *parser) name(n *yaml.Node, field string) (string, bool) {
	s, ok := p.Text(n, field)
	if !ok || !p.noControl(n, field, s, "names are printed in terminals") {
		return "", false
	}
	return s, true
}

// noControl reports the first control character of s, the value of node n,
// and whether there was none. why says where the value ends up.
func (p *parser) noControl(n *yaml.Node, field, s, why string) bool {
	i, r := ControlChar(s)
	if i < 0 {
		return true
	}
	line, col := p.exprPos(n, s, i, string(r))
	p.ErrorAt(line, col, field, "must not contain control characters, found %U at character %d: %s, where such characters act as commands or reorder text",
		r, utf8.RuneCountInString(s[:i])+1, why)
	return false
}

// ControlChar returns the byte offset and the first rune of s that must not
// appear in a name, or -1: the C0 controls (tab and newline included), DEL,
// the C1 controls, and the Unicode bidirectional formatting characters
// (embeddings, overrides, isolates and marks), which can make a name look
// like another. Invalid UTF-8 counts too.
func ControlChar(s string) (int, rune) {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if IsControl(r) || r == utf8.RuneError && w == 1 {
			return i, r
		}
		i += w
	}
	return -1, 0
}

// IsControl reports whether r is a character names must not hold (see
// ControlChar).
func IsControl(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7F && r <= 0x9F:
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// image reads a container image reference: text without spaces.
func (p *parser) image(n *yaml.Node, field string) (string, bool) {
	s, ok := p.Text(n, field)
	if !ok {
		return "", false
	}
	if strings.ContainsAny(anyExpr.ReplaceAllString(s, "x"), " \t\n\r") {
		p.Errorf(n, field, "invalid image %q: an image reference has no spaces (like alpine:3.20 or registry.example.com/tools/go:1.26)", s)
		return "", false
	}
	return s, true
}

// condition reads an `if` (of a job or a step): an expression, bare or
// inside ${{ }}, checked with the other expressions once the file is read.
func (p *parser) condition(n *yaml.Node, field string, job *jobInfo) Condition {
	v := yamlpos.Deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		p.Errorf(n, field, "must be an expression such as success(), failure(), always() or needs.build.result == 'failure', got %s", yamlpos.Describe(v))
		return Success
	}
	p.exprs = append(p.exprs, exprRef{node: n, field: field, scope: atJob, cond: true, job: job, rd: p.Reader})
	c, err := conditionText(v.Value)
	if err != nil {
		return Success // reported by checkExprs
	}
	return c
}

// needs reads a job id or a list of them (each an id or a map {job,
// artifacts}); it returns the ids, their nodes, and the ids whose artifacts
// the job does not want.
func (p *parser) needs(n *yaml.Node, field string) ([]string, []*yaml.Node, []string) {
	var ids, noArtifacts []string
	var nodes []*yaml.Node
	seen := make(map[string]bool)
	for _, it := range p.OneOrList(n, field, "a job id or a list of job ids") {
		f := it.Field
		s, at, artifacts, ok := p.need(it.Node, f)
		if !ok {
			continue
		}
		if seen[s] {
			p.Errorf(at, f, "job %q is needed twice", s)
			continue
		}
		seen[s] = true
		ids = append(ids, s)
		nodes = append(nodes, at)
		if !artifacts {
			noArtifacts = append(noArtifacts, s)
		}
	}
	return ids, nodes, noArtifacts
}

// env reads a map of variable names to values, which may hold expressions
// (job is nil outside jobs).
func (p *parser) env(n *yaml.Node, field string, sc scope, job *jobInfo) map[string]string {
	v, ok := p.Map(n, field, "a map of variable names to values")
	if !ok {
		return nil
	}
	var m map[string]string
	for _, e := range p.Entries(v, field) {
		f := field + "." + e.Name
		if !envNamePattern.MatchString(e.Name) {
			p.Errorf(e.Key, f, "invalid variable name %q: must start with a letter or _ and hold only letters, digits and _", e.Name)
			continue
		}
		if strings.HasPrefix(e.Name, reservedEnvPrefix) {
			p.Errorf(e.Key, f, "variable names starting with %s are reserved for Hodei", reservedEnvPrefix)
			continue
		}
		s, ok := p.Scalar(e.Val, f)
		if !ok {
			continue
		}
		p.expr(e.Val, f, sc, job)
		if m == nil {
			m = make(map[string]string)
		}
		m[e.Name] = s
	}
	return m
}

// secrets reads a job's list of secret names, with the node and field of
// each.
func (p *parser) secrets(n *yaml.Node, field string) ([]string, []exprRef) {
	items, ok := p.List(n, field, "a list of secret names", "")
	if !ok {
		return nil, nil
	}
	var names []string
	var refs []exprRef
	seen := make(map[string]bool)
	p.Texts(items, field, func(it *yaml.Node, f, s string) {
		switch {
		case !envNamePattern.MatchString(s):
			p.Errorf(it, f, "invalid secret name %q: must start with a letter or _ and hold only letters, digits and _ (it becomes an environment variable)", s)
		case strings.HasPrefix(s, reservedEnvPrefix):
			p.Errorf(it, f, "secret names starting with %s are reserved for Hodei", reservedEnvPrefix)
		case seen[s]:
			p.Errorf(it, f, "secret %q is named twice", s)
		default:
			seen[s] = true
			names = append(names, s)
			refs = append(refs, exprRef{node: it, field: f})
		}
	})
	return names, refs
}

// checkSecretEnv reports secrets that the job's own env or one of its
// steps' env also sets: one of the two would be ignored.
func (p *parser) checkSecretEnv(j *Job, refs []exprRef, path string) {
	for i, name := range j.Secrets {
		where := ""
		if _, ok := j.Env[name]; ok {
			where = path + ".env"
		}
		for k, st := range j.Steps {
			if _, ok := st.Env[name]; ok && where == "" {
				where = yamlpos.Index(path+".steps", k) + ".env"
			}
		}
		if where != "" {
			p.Errorf(refs[i].node, refs[i].field, "%s is a secret of the job and is also set in %s; remove one", name, where)
		}
	}
}

// runsOn reads a job's resource requirements.
func (p *parser) runsOn(n *yaml.Node, field string, job *jobInfo) Resources {
	var r Resources
	v := yamlpos.Deref(n)
	if v.Kind != yaml.MappingNode {
		hint := ""
		if yamlpos.IsString(v) {
			hint = fmt.Sprintf(" (to require a worker label write `labels: [%s]` under runs-on)", v.Value)
		}
		p.Errorf(n, field, "must be a map with labels, cpu, memory and gpu, got %s%s", yamlpos.Describe(v), hint)
		return r
	}
	for _, f := range p.Fields(v, field, runsOnFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "labels":
			r.Labels = p.labels(f.Val, fp, job)
		case "cpu":
			r.CPUMilli = ReadCPU(p.Reader, f.Val, fp)
		case "memory":
			r.MemoryBytes = ReadMemory(p.Reader, f.Val, fp)
		case "gpu":
			r.GPU, _ = p.IntIn(f.Val, fp, 0, MaxGPU)
		}
	}
	return r
}

func (p *parser) labels(n *yaml.Node, field string, job *jobInfo) []string {
	var out []string
	for _, it := range p.OneOrList(n, field, "a label or a list of labels") {
		if s, ok := p.Text(it.Node, it.Field); ok {
			out = append(out, s)
			p.expr(it.Node, it.Field, atRunMade, job)
		}
	}
	return out
}

// ReadCPU reads a CPU quantity (cores as a number, or a string such as
// "500m") in milli-cores, recording a problem in r and returning 0 when it
// is not one. Pipelines (runs-on.cpu) and pools files (shape.cpu) read
// CPU with it.
func ReadCPU(r *yamlpos.Reader, n *yaml.Node, field string) int64 {
	return readQuantity(r, n, field, "CPU", `a number of cores or a string such as "500m"`, true, ParseCPU)
}

// ReadMemory reads a memory quantity (a string such as "512Mi", or a whole
// number of bytes) in bytes, recording a problem in r and returning 0 when
// it is not one. Pipelines (runs-on.memory) and pools files (shape.memory)
// read memory with it.
func ReadMemory(r *yamlpos.Reader, n *yaml.Node, field string) int64 {
	return readQuantity(r, n, field, "memory", `a string such as "512Mi" or a whole number of bytes`, false, ParseMemory)
}

// readQuantity reads a quantity written as a string, a whole number or,
// with floats, a decimal number, and parses its text with parse; what
// names the quantity and want what it must be, in the errors.
func readQuantity(r *yamlpos.Reader, n *yaml.Node, field, what, want string, floats bool, parse func(string) (int64, error)) int64 {
	v := yamlpos.Deref(n)
	var s string
	switch {
	case yamlpos.IsString(v):
		s = v.Value
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int":
		var i int64
		if err := v.Decode(&i); err != nil {
			r.Errorf(n, field, "invalid %s quantity %s: too large", what, v.Value)
			return 0
		}
		s = strconv.FormatInt(i, 10)
	case floats && v.Kind == yaml.ScalarNode && v.ShortTag() == "!!float":
		var f float64
		if err := v.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			r.Errorf(n, field, "invalid %s quantity %s", what, v.Value)
			return 0
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	default:
		r.Errorf(n, field, "must be %s, got %s", want, yamlpos.Describe(v))
		return 0
	}
	q, err := parse(s)
	if err != nil {
		r.Errorf(n, field, "%v", err)
		return 0
	}
	return q
}

// matrix reads a job's matrix. It returns the names of all its axes, even
// those with errors (nil if the matrix is not a map at all), so that
// expressions can be checked against them.
func (p *parser) matrix(n *yaml.Node, field, jobID string) (*Matrix, map[string]bool) {
	v, isMap := p.Map(n, field, "a map of axis names to lists of values")
	if !isMap {
		return nil, nil
	}
	names := make(map[string]bool)
	if len(v.Content) == 0 {
		p.Errorf(n, field, "must have at least one axis")
		return nil, names
	}
	m := &Matrix{}
	ok := true
	for _, e := range p.Entries(v, field) {
		f := field + "." + e.Name
		names[e.Name] = true
		if e.Name == "include" || e.Name == "exclude" {
			p.Errorf(e.Key, f, "include and exclude are not supported: a matrix is the product of its axes")
			ok = false
			continue
		}
		if !idPattern.MatchString(e.Name) {
			p.Errorf(e.Key, f, "invalid axis name %q: must start with a letter or _ and hold only letters, digits, _ and -", e.Name)
			ok = false
			continue
		}
		lv := yamlpos.Deref(e.Val)
		if lv.Kind != yaml.SequenceNode {
			p.Errorf(e.Val, f, "must be a list of values, got %s", yamlpos.Describe(lv))
			ok = false
			continue
		}
		if len(lv.Content) == 0 {
			p.Errorf(e.Val, f, "must list at least one value")
			ok = false
			continue
		}
		axis := MatrixAxis{Name: e.Name}
		seen := make(map[string]bool)
		for i, it := range lv.Content {
			s, good := p.Scalar(it, yamlpos.Index(f, i))
			if !good || !p.noControl(it, yamlpos.Index(f, i), s, "matrix values become part of job names") {
				ok = false
				continue
			}
			if seen[s] {
				p.Errorf(it, yamlpos.Index(f, i), "duplicate value %q", s)
				ok = false
				continue
			}
			seen[s] = true
			axis.Values = append(axis.Values, s)
		}
		m.Axes = append(m.Axes, axis)
	}
	if len(m.Axes) > 0 {
		if count := combinationCount(m); count.Cmp(big.NewInt(MaxMatrixCombinations)) > 0 {
			p.Errorf(n, field, "expands into %s combinations; at most %d are allowed", count, MaxMatrixCombinations)
			ok = false
		}
	}
	if !ok {
		return nil, names
	}
	if key, dup := duplicateKey(jobID, m); dup {
		p.Errorf(n, field, "two combinations make the same job key %q: avoid \", \" inside values", key)
		return nil, names
	}
	return m, names
}

// steps reads a job's steps.
func (p *parser) steps(n *yaml.Node, field string, job *jobInfo) []Step {
	items, ok := p.List(n, field, "a list of steps", "must have at least one step")
	if !ok {
		return nil
	}
	var out []Step
	for i, it := range items {
		out = append(out, p.step(it, yamlpos.Index(field, i), job))
	}
	return out
}

func (p *parser) step(n *yaml.Node, field string, job *jobInfo) Step {
	var s Step
	v, ok := p.Map(n, field, "a map with run")
	if !ok {
		return s
	}
	haveRun := false
	for _, f := range p.Fields(v, field, stepFields) {
		fp := field + "." + f.Name
		switch f.Name {
		case "name":
			if t, ok := p.name(f.Val, fp); ok {
				s.Name = t
				p.expr(f.Val, fp, atJob, job)
			}
		case "if":
			s.If = p.condition(f.Val, fp, job)
		case "run":
			haveRun = true
			if t, ok := p.Text(f.Val, fp); ok {
				s.Run = t
				p.expr(f.Val, fp, atJob, job)
			}
		case "shell":
			s.Shell = p.shell(f.Val, fp)
		case "working-directory":
			s.WorkingDirectory = p.workingDirectory(f.Val, fp)
		case "env":
			s.Env = p.env(f.Val, fp, atJob, job)
		case "timeout":
			s.Timeout, _ = p.Duration(f.Val, fp)
		case "continue-on-error":
			s.ContinueOnError, _ = p.Bool(f.Val, fp)
		}
	}
	if !haveRun {
		p.Errorf(v, field+".run", "is required")
	}
	return s
}
