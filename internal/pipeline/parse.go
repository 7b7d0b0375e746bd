package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlnode"
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
	// matrixExpr matches ${{ matrix.KEY }}; the key is captured loosely so
	// that a malformed one is reported rather than silently left alone.
	matrixExpr = regexp.MustCompile(`\$\{\{\s*matrix\.([^\s}]*)\s*\}\}`)
	// yamlLine extracts the line from a yaml.v3 error message.
	yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// The fields allowed at each level, in the order the documentation gives.
var (
	pipelineFields    = []string{"name", "env", "priority", "concurrency", "jobs"}
	concurrencyFields = []string{"group", "limit"}
	jobFields         = []string{"name", "needs", "if", "runs-on", "image", "network", "env", "secrets", "timeout", "retry", "infra_retries", "priority", "matrix", "steps"}
	runsOnFields      = []string{"labels", "cpu", "memory", "gpu"}
	stepFields        = []string{"name", "run", "env", "timeout"}
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
	return Parse(path, data)
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
	lim = lim.WithDefaults()
	if len(data) > lim.MaxFileBytes {
		return nil, ErrorList{SizeError(file, int64(len(data)), lim.MaxFileBytes)}
	}
	p := &parser{file: file, lines: strings.Split(string(data), "\n"), maxJobs: lim.MaxJobs}
	var pl *Pipeline
	if root := p.decode(data); root != nil {
		pl = p.pipeline(root)
	}
	if len(p.errs) > 0 {
		p.errs.sort()
		return nil, p.errs
	}
	return pl, nil
}

// parser walks the YAML node tree, collecting errors as it goes.
type parser struct {
	file    string
	lines   []string
	errs    ErrorList
	jobs    []*jobInfo
	maxJobs int
}

// jobInfo keeps, next to a parsed job, the nodes needed to place errors found
// once every job is known.
type jobInfo struct {
	job         *Job
	needs       []*yaml.Node // parallel to job.Needs
	prioritySet bool
}

// exprRef is a string field in which ${{ matrix.KEY }} is substituted.
type exprRef struct {
	node  *yaml.Node
	field string
}

// entry is one key/value pair of a YAML map.
type entry struct {
	name     string
	key, val *yaml.Node
}

func (p *parser) errAt(n *yaml.Node, field, format string, args ...any) {
	e := &Error{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
		if e.Line > len(p.lines) {
			// Only an implicit node at the very end gets a line past the
			// last one.
			e.Line, e.Col = len(p.lines), 0
		}
	}
	p.errs = append(p.errs, e)
}

// decode reads the single YAML document in data and returns its root node,
// or nil after recording why it can't.
func (p *parser) decode(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs = append(p.errs, &Error{File: p.file, Msg: "the file is empty: a pipeline needs at least a name and jobs"})
		} else {
			p.syntaxError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntaxError(data, err)
		return nil
	default:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		p.errAt(at, "", "found a second YAML document: a file holds one pipeline")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 ||
		doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null" && doc.Content[0].Value == "" {
		p.errs = append(p.errs, &Error{File: p.file, Msg: "the file is empty: a pipeline needs at least a name and jobs"})
		return nil
	}
	return doc.Content[0]
}

// syntaxError records a YAML error, with the line yaml.v3 gives or, when it
// gives none, the best position that can be found.
func (p *parser) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: p.file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		e.Line, e.Col = p.locate(data, msg)
	}
	if e.Line > len(p.lines) {
		e.Line = len(p.lines)
	}
	e.Msg = "invalid YAML: " + msg
	p.errs = append(p.errs, e)
}

// locate finds where a YAML error that yaml.v3 reports without a line lies.
// yaml.v3 leaves the line out when it is the first one, and for problems of
// encoding, which are found by scanning for the offending character.
func (p *parser) locate(data []byte, msg string) (line, col int) {
	switch {
	case strings.Contains(msg, "control characters") || strings.Contains(msg, "UTF-8") ||
		strings.Contains(msg, "Unicode"):
		line, col = 1, 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 || !printable(r) && !(r == 0xFEFF && i == 0) {
				return line, col
			}
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i += size
		}
		return 0, 0
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		for i, l := range p.lines {
			if j := strings.Index(l, "*"+name); j >= 0 {
				return i + 1, utf8.RuneCountInString(l[:j]) + 1
			}
		}
	}
	return 1, 0
}

// printable reports whether YAML allows r in a stream.
func printable(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7E || r == 0x85 ||
		r >= 0xA0 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD && r != 0xFEFF || r >= 0x10000 && r <= 0x10FFFF
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// describe names the type of a node for messages.
func describe(n *yaml.Node) string { return yamlnode.Describe(n) }

// isString reports whether n is a string scalar. Unquoted dates count: they
// are text to a pipeline.
func isString(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp", "!!merge":
		return true
	}
	return false
}

// entries lists the pairs of map n, reporting (and leaving out) keys that
// are not scalars, merge keys and duplicates.
func (p *parser) entries(n *yaml.Node, path string) []entry {
	seen := make(map[string]*yaml.Node)
	var out []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kd := deref(k)
		switch {
		case kd.Kind != yaml.ScalarNode || kd.ShortTag() == "!!null":
			p.errAt(k, path, "keys must be names, got %s", describe(kd))
			continue
		case kd.ShortTag() == "!!merge" && kd.Style == 0:
			p.errAt(k, path, "merge keys (<<) are not supported")
			continue
		}
		name := kd.Value
		if first, dup := seen[name]; dup {
			p.errAt(k, join(path, name), "duplicate key %q (first defined at line %d)", name, first.Line)
			continue
		}
		seen[name] = k
		out = append(out, entry{name: name, key: k, val: v})
	}
	return out
}

// fields is entries for a map with a fixed set of keys: unknown ones are
// reported and left out.
func (p *parser) fields(n *yaml.Node, path string, allowed []string) []entry {
	var out []entry
	for _, e := range p.entries(n, path) {
		if !slices.Contains(allowed, e.name) {
			hint := ""
			if s := suggest(e.name, allowed); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.errAt(e.key, join(path, e.name), "unknown field %q%s; allowed fields: %s", e.name, hint, strings.Join(allowed, ", "))
			continue
		}
		out = append(out, e)
	}
	return out
}

func join(path, name string) string { return yamlnode.Join(path, name) }

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// pipeline reads the root map.
func (p *parser) pipeline(root *yaml.Node) *Pipeline {
	n := deref(root)
	if n.Kind != yaml.MappingNode {
		p.errAt(root, "", "a pipeline file must be a map with name and jobs, got %s", describe(n))
		return nil
	}
	pl := &Pipeline{File: p.file}
	var haveName, haveJobs bool
	for _, e := range p.fields(n, "", pipelineFields) {
		switch e.name {
		case "name":
			haveName = true
			pl.Name, _ = p.name(e.val, "name")
			p.noMatrixExpr(e.val, "name")
		case "env":
			pl.Env = p.env(e.val, "env", nil)
		case "priority":
			pl.Priority, _ = p.intIn(e.val, "priority", -MaxPriority, MaxPriority)
		case "concurrency":
			pl.Concurrency = p.concurrency(e.val, "concurrency")
		case "jobs":
			haveJobs = true
			p.jobList(e.val)
			if p.maxJobs > 0 {
				p.checkJobCount(e.key, p.maxJobs)
			}
		}
	}
	if !haveName {
		p.errAt(n, "name", "is required")
	}
	if !haveJobs {
		p.errAt(n, "jobs", "is required")
	}
	for _, info := range p.jobs {
		if !info.prioritySet {
			info.job.Priority = pl.Priority
		}
		pl.Jobs = append(pl.Jobs, info.job)
	}
	p.checkNeeds()
	return pl
}

// concurrency reads a pipeline's concurrency group.
func (p *parser) concurrency(n *yaml.Node, field string) *Concurrency {
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		p.errAt(n, field, "must be a map with group and limit, got %s", describe(v))
		return nil
	}
	c := &Concurrency{Limit: 1}
	haveGroup := false
	for _, f := range p.fields(v, field, concurrencyFields) {
		fp := field + "." + f.name
		switch f.name {
		case "group":
			haveGroup = true
			if s, ok := p.name(f.val, fp); ok {
				c.Group = s
				p.noMatrixExpr(f.val, fp)
				if s == "" {
					p.errAt(f.val, fp, "must not be empty")
				}
			}
		case "limit":
			c.Limit, _ = p.intIn(f.val, fp, 1, MaxConcurrencyLimit)
		}
	}
	if !haveGroup {
		p.errAt(n, field+".group", "is required")
	}
	return c
}

// jobList reads the jobs map.
func (p *parser) jobList(n *yaml.Node) {
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		p.errAt(n, "jobs", "must be a map of job ids to jobs, got %s", describe(v))
		return
	}
	if len(v.Content) == 0 {
		p.errAt(n, "jobs", "must define at least one job")
		return
	}
	for _, e := range p.entries(v, "jobs") {
		p.jobs = append(p.jobs, p.job(e))
	}
}

// job reads one job.
func (p *parser) job(e entry) *jobInfo {
	path := "jobs." + e.name
	if !idPattern.MatchString(e.name) {
		p.errAt(e.key, path, "invalid job id %q: must start with a letter or _ and hold only letters, digits, _ and -", e.name)
	}
	j := &Job{ID: e.name, Name: e.name, If: Success, Line: e.key.Line}
	info := &jobInfo{job: j}
	v := deref(e.val)
	if v.Kind != yaml.MappingNode {
		p.errAt(e.val, path, "must be a map with the job's steps, got %s", describe(v))
		return info
	}
	var exprs []exprRef
	var secretRefs []exprRef
	var haveSteps, haveMatrix bool
	var axes map[string]bool
	var networkNode *yaml.Node
	for _, f := range p.fields(v, path, jobFields) {
		fp := path + "." + f.name
		switch f.name {
		case "name":
			if s, ok := p.name(f.val, fp); ok {
				j.Name = s
				exprs = append(exprs, exprRef{f.val, fp})
			}
		case "needs":
			j.Needs, info.needs = p.needs(f.val, fp)
		case "if":
			j.If = p.condition(f.val, fp)
		case "runs-on":
			j.RunsOn = p.runsOn(f.val, fp, &exprs)
		case "image":
			if s, ok := p.image(f.val, fp); ok {
				j.Image = s
				exprs = append(exprs, exprRef{f.val, fp})
			}
		case "network":
			networkNode = f.val
			j.Network = p.boolean(f.val, fp)
		case "env":
			j.Env = p.env(f.val, fp, &exprs)
		case "secrets":
			j.Secrets, secretRefs = p.secrets(f.val, fp)
		case "timeout":
			j.Timeout = p.duration(f.val, fp)
		case "retry":
			j.Retry, _ = p.intIn(f.val, fp, 0, MaxRetry)
		case "infra_retries":
			if n, ok := p.intIn(f.val, fp, 0, MaxRetry); ok {
				j.InfraRetries = &n
			}
		case "priority":
			j.Priority, info.prioritySet = p.intIn(f.val, fp, -MaxPriority, MaxPriority)
		case "matrix":
			haveMatrix = true
			j.Matrix, axes = p.matrix(f.val, fp, j.ID)
		case "steps":
			haveSteps = true
			j.Steps = p.steps(f.val, fp, &exprs)
		}
	}
	if !haveSteps {
		p.errAt(v, path+".steps", "is required")
	}
	if networkNode != nil && j.Image == "" {
		p.errAt(networkNode, path+".network", "only applies to a job with an image (a job without one uses the worker's network)")
	}
	p.checkSecretEnv(j, secretRefs, path)
	if haveMatrix && len(axes) == 0 {
		// The matrix is broken beyond naming its axes: already reported.
		return info
	}
	for _, r := range exprs {
		p.checkExprs(r, axes)
	}
	return info
}

// checkExprs reports the ${{ matrix.KEY }} expressions of a field whose key
// is not an axis of the job's matrix.
func (p *parser) checkExprs(r exprRef, axes map[string]bool) {
	text := deref(r.node).Value
	reported := make(map[string]bool)
	for _, m := range matrixExpr.FindAllStringSubmatchIndex(text, -1) {
		key := text[m[2]:m[3]]
		if axes[key] || reported[key] {
			continue
		}
		reported[key] = true
		line, col := p.exprPos(r.node, text, m[0], text[m[0]:m[1]])
		msg := fmt.Sprintf("unknown matrix key %q in %s", key, text[m[0]:m[1]])
		if len(axes) == 0 {
			msg += " (the job has no matrix)"
		} else {
			msg += " (matrix keys: " + strings.Join(sortedKeys(axes), ", ") + ")"
		}
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: col, Field: r.field, Msg: msg})
	}
}

// noMatrixExpr reports matrix expressions outside jobs.
func (p *parser) noMatrixExpr(n *yaml.Node, field string) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode {
		return
	}
	if m := matrixExpr.FindStringIndex(v.Value); m != nil {
		line, col := p.exprPos(n, v.Value, m[0], v.Value[m[0]:m[1]])
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: col, Field: field,
			Msg: "matrix expressions are only allowed inside jobs"})
	}
}

// exprPos finds in the source the occurrence of match that starts at byte
// start of the scalar value; when it can't (escapes in a quoted string), the
// scalar's own position is used.
func (p *parser) exprPos(n *yaml.Node, value string, start int, match string) (int, int) {
	n = deref(n)
	want := strings.Count(value[:start], match)
	last := n.Line + 2*strings.Count(value, "\n") + 2
	seen := 0
	for line := n.Line; line >= 1 && line <= last && line <= len(p.lines); line++ {
		s := p.lines[line-1]
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
				return line, utf8.RuneCountInString(s[:from+i]) + 1
			}
			seen++
			from += i + len(match)
		}
	}
	return n.Line, n.Column
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
	for _, info := range p.jobs {
		for k, need := range info.job.Needs {
			if ids[need] {
				continue
			}
			hint := ""
			if s := suggest(need, all); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.errAt(info.needs[k], "jobs."+info.job.ID+".needs", "unknown job %q%s", need, hint)
		}
	}
	for _, c := range findCycles(jobs) {
		info := p.jobs[c.job]
		p.errAt(info.needs[c.need], "jobs."+info.job.ID+".needs", "dependency cycle: %s (each job needs the next)", strings.Join(c.path, " -> "))
	}
}

// text reads a non-empty string.
func (p *parser) text(n *yaml.Node, field string) (string, bool) {
	v := deref(n)
	if !isString(v) {
		p.errAt(n, field, "must be a string, got %s", describe(v))
		return "", false
	}
	if strings.TrimSpace(v.Value) == "" {
		p.errAt(n, field, "must not be empty")
		return "", false
	}
	return v.Value, true
}

// name reads a name shown to people (pipeline, job, step, concurrency
// group): non-empty text without control characters.
func (p *parser) name(n *yaml.Node, field string) (string, bool) {
	s, ok := p.text(n, field)
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
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: col, Field: field,
		Msg: fmt.Sprintf("must not contain control characters, found %U at character %d: %s, where such characters act as commands or reorder text", r, utf8.RuneCountInString(s[:i])+1, why)})
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
	s, ok := p.text(n, field)
	if !ok {
		return "", false
	}
	if strings.ContainsAny(matrixExpr.ReplaceAllString(s, "x"), " \t\n\r") {
		p.errAt(n, field, "invalid image %q: an image reference has no spaces (like alpine:3.20 or registry.example.com/tools/go:1.26)", s)
		return "", false
	}
	return s, true
}

// boolean reads true or false.
func (p *parser) boolean(n *yaml.Node, field string) bool {
	v := deref(n)
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		p.errAt(n, field, "must be true or false, got %s", describe(v))
		return false
	}
	return b
}

// scalar reads a string, number or boolean as written.
func (p *parser) scalar(n *yaml.Node, field string) (string, bool) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!str", "!!timestamp", "!!merge", "!!int", "!!float", "!!bool":
			return v.Value, true
		}
	}
	p.errAt(n, field, "must be a string, number or boolean, got %s", describe(v))
	return "", false
}

// intIn reads an integer in [lo, hi].
func (p *parser) intIn(n *yaml.Node, field string, lo, hi int) (int, bool) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		got := describe(v)
		if v.ShortTag() == "!!float" {
			got = v.Value
		}
		p.errAt(n, field, "must be an integer from %d to %d, got %s", lo, hi, got)
		return 0, false
	}
	var i int64
	if err := v.Decode(&i); err != nil || i < int64(lo) || i > int64(hi) {
		p.errAt(n, field, "must be an integer from %d to %d, got %s", lo, hi, v.Value)
		return 0, false
	}
	return int(i), true
}

// duration reads a positive Go duration.
func (p *parser) duration(n *yaml.Node, field string) time.Duration {
	v := deref(n)
	if !isString(v) {
		p.errAt(n, field, "must be a duration such as 30s, 10m or 1h30m, got %s", describe(v))
		return 0
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		p.errAt(n, field, "invalid duration %q: use a number with a unit (ms, s, m, h) such as 30s, 10m or 1h30m", v.Value)
		return 0
	}
	if d <= 0 {
		p.errAt(n, field, "must be greater than zero, got %s", v.Value)
		return 0
	}
	return d
}

// condition reads a job's `if`.
func (p *parser) condition(n *yaml.Node, field string) Condition {
	const allowed = "success(), failure() or always()"
	v := deref(n)
	if !isString(v) {
		p.errAt(n, field, "must be one of %s, got %s", allowed, describe(v))
		return Success
	}
	c, ok := parseCondition(v.Value)
	if !ok {
		p.errAt(n, field, "must be one of %s (optionally inside ${{ }}), got %q", allowed, v.Value)
		return Success
	}
	return c
}

// parseCondition accepts success(), failure() and always(), bare or inside
// ${{ }}.
func parseCondition(s string) (Condition, bool) {
	t := strings.TrimSpace(s)
	if inner, ok := strings.CutPrefix(t, "${{"); ok {
		if inner, ok = strings.CutSuffix(inner, "}}"); !ok {
			return "", false
		}
		t = strings.TrimSpace(inner)
	}
	switch c := Condition(t); c {
	case Success, Failure, Always:
		return c, true
	}
	return "", false
}

// needs reads a job id or a list of them.
func (p *parser) needs(n *yaml.Node, field string) ([]string, []*yaml.Node) {
	v := deref(n)
	var items []*yaml.Node
	list := false
	switch v.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items, list = v.Content, true
	default:
		p.errAt(n, field, "must be a job id or a list of job ids, got %s", describe(v))
		return nil, nil
	}
	var ids []string
	var nodes []*yaml.Node
	seen := make(map[string]bool)
	for i, it := range items {
		f := field
		if list {
			f = index(field, i)
		}
		s, ok := p.text(it, f)
		if !ok {
			continue
		}
		if seen[s] {
			p.errAt(it, f, "job %q is needed twice", s)
			continue
		}
		seen[s] = true
		ids = append(ids, s)
		nodes = append(nodes, it)
	}
	return ids, nodes
}

// env reads a map of variable names to values. Values holding matrix
// expressions are added to exprs; when exprs is nil (outside jobs) they are
// errors.
func (p *parser) env(n *yaml.Node, field string, exprs *[]exprRef) map[string]string {
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		p.errAt(n, field, "must be a map of variable names to values, got %s", describe(v))
		return nil
	}
	var m map[string]string
	for _, e := range p.entries(v, field) {
		f := field + "." + e.name
		if !envNamePattern.MatchString(e.name) {
			p.errAt(e.key, f, "invalid variable name %q: must start with a letter or _ and hold only letters, digits and _", e.name)
			continue
		}
		if strings.HasPrefix(e.name, reservedEnvPrefix) {
			p.errAt(e.key, f, "variable names starting with %s are reserved for Hodei", reservedEnvPrefix)
			continue
		}
		s, ok := p.scalar(e.val, f)
		if !ok {
			continue
		}
		if exprs == nil {
			p.noMatrixExpr(e.val, f)
		} else {
			*exprs = append(*exprs, exprRef{e.val, f})
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[e.name] = s
	}
	return m
}

// secrets reads a job's list of secret names, with the node and field of
// each.
func (p *parser) secrets(n *yaml.Node, field string) ([]string, []exprRef) {
	v := deref(n)
	if v.Kind != yaml.SequenceNode {
		p.errAt(n, field, "must be a list of secret names, got %s", describe(v))
		return nil, nil
	}
	var names []string
	var refs []exprRef
	seen := make(map[string]bool)
	for i, it := range v.Content {
		f := index(field, i)
		s, ok := p.text(it, f)
		if !ok {
			continue
		}
		switch {
		case !envNamePattern.MatchString(s):
			p.errAt(it, f, "invalid secret name %q: must start with a letter or _ and hold only letters, digits and _ (it becomes an environment variable)", s)
		case strings.HasPrefix(s, reservedEnvPrefix):
			p.errAt(it, f, "secret names starting with %s are reserved for Hodei", reservedEnvPrefix)
		case seen[s]:
			p.errAt(it, f, "secret %q is named twice", s)
		default:
			seen[s] = true
			names = append(names, s)
			refs = append(refs, exprRef{it, f})
		}
	}
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
				where = index(path+".steps", k) + ".env"
			}
		}
		if where != "" {
			p.errAt(refs[i].node, refs[i].field, "%s is a secret of the job and is also set in %s; remove one", name, where)
		}
	}
}

// runsOn reads a job's resource requirements.
func (p *parser) runsOn(n *yaml.Node, field string, exprs *[]exprRef) Resources {
	var r Resources
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		hint := ""
		if isString(v) {
			hint = fmt.Sprintf(" (to require a worker label write `labels: [%s]` under runs-on)", v.Value)
		}
		p.errAt(n, field, "must be a map with labels, cpu, memory and gpu, got %s%s", describe(v), hint)
		return r
	}
	for _, f := range p.fields(v, field, runsOnFields) {
		fp := field + "." + f.name
		switch f.name {
		case "labels":
			r.Labels = p.labels(f.val, fp, exprs)
		case "cpu":
			r.CPUMilli = p.cpu(f.val, fp)
		case "memory":
			r.MemoryBytes = p.memory(f.val, fp)
		case "gpu":
			r.GPU, _ = p.intIn(f.val, fp, 0, MaxGPU)
		}
	}
	return r
}

func (p *parser) labels(n *yaml.Node, field string, exprs *[]exprRef) []string {
	v := deref(n)
	var items []*yaml.Node
	list := false
	switch v.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items, list = v.Content, true
	default:
		p.errAt(n, field, "must be a label or a list of labels, got %s", describe(v))
		return nil
	}
	var out []string
	for i, it := range items {
		f := field
		if list {
			f = index(field, i)
		}
		if s, ok := p.text(it, f); ok {
			out = append(out, s)
			*exprs = append(*exprs, exprRef{it, f})
		}
	}
	return out
}

func (p *parser) cpu(n *yaml.Node, field string) int64 {
	v := deref(n)
	var s string
	switch {
	case isString(v):
		s = v.Value
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int":
		var i int64
		if err := v.Decode(&i); err != nil {
			p.errAt(n, field, "invalid CPU quantity %s: too large", v.Value)
			return 0
		}
		s = strconv.FormatInt(i, 10)
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!float":
		var f float64
		if err := v.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			p.errAt(n, field, "invalid CPU quantity %s", v.Value)
			return 0
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	default:
		p.errAt(n, field, "must be a number of cores or a string such as \"500m\", got %s", describe(v))
		return 0
	}
	m, err := ParseCPU(s)
	if err != nil {
		p.errAt(n, field, "%v", err)
		return 0
	}
	return m
}

func (p *parser) memory(n *yaml.Node, field string) int64 {
	v := deref(n)
	var s string
	switch {
	case isString(v):
		s = v.Value
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int":
		var i int64
		if err := v.Decode(&i); err != nil {
			p.errAt(n, field, "invalid memory quantity %s: too large", v.Value)
			return 0
		}
		s = strconv.FormatInt(i, 10)
	default:
		p.errAt(n, field, "must be a string such as \"512Mi\" or a whole number of bytes, got %s", describe(v))
		return 0
	}
	b, err := ParseMemory(s)
	if err != nil {
		p.errAt(n, field, "%v", err)
		return 0
	}
	return b
}

// matrix reads a job's matrix. It returns the names of all its axes, even
// those with errors (nil if the matrix is not a map at all), so that
// expressions can be checked against them.
func (p *parser) matrix(n *yaml.Node, field, jobID string) (*Matrix, map[string]bool) {
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		p.errAt(n, field, "must be a map of axis names to lists of values, got %s", describe(v))
		return nil, nil
	}
	names := make(map[string]bool)
	if len(v.Content) == 0 {
		p.errAt(n, field, "must have at least one axis")
		return nil, names
	}
	m := &Matrix{}
	ok := true
	for _, e := range p.entries(v, field) {
		f := field + "." + e.name
		names[e.name] = true
		if e.name == "include" || e.name == "exclude" {
			p.errAt(e.key, f, "include and exclude are not supported: a matrix is the product of its axes")
			ok = false
			continue
		}
		if !idPattern.MatchString(e.name) {
			p.errAt(e.key, f, "invalid axis name %q: must start with a letter or _ and hold only letters, digits, _ and -", e.name)
			ok = false
			continue
		}
		lv := deref(e.val)
		if lv.Kind != yaml.SequenceNode {
			p.errAt(e.val, f, "must be a list of values, got %s", describe(lv))
			ok = false
			continue
		}
		if len(lv.Content) == 0 {
			p.errAt(e.val, f, "must list at least one value")
			ok = false
			continue
		}
		axis := MatrixAxis{Name: e.name}
		seen := make(map[string]bool)
		for i, it := range lv.Content {
			s, good := p.scalar(it, index(f, i))
			if !good || !p.noControl(it, index(f, i), s, "matrix values become part of job names") {
				ok = false
				continue
			}
			if seen[s] {
				p.errAt(it, index(f, i), "duplicate value %q", s)
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
			p.errAt(n, field, "expands into %s combinations; at most %d are allowed", count, MaxMatrixCombinations)
			ok = false
		}
	}
	if !ok {
		return nil, names
	}
	if key, dup := duplicateKey(jobID, m); dup {
		p.errAt(n, field, "two combinations make the same job key %q: avoid \", \" inside values", key)
		return nil, names
	}
	return m, names
}

// steps reads a job's steps.
func (p *parser) steps(n *yaml.Node, field string, exprs *[]exprRef) []Step {
	v := deref(n)
	if v.Kind != yaml.SequenceNode {
		p.errAt(n, field, "must be a list of steps, got %s", describe(v))
		return nil
	}
	if len(v.Content) == 0 {
		p.errAt(n, field, "must have at least one step")
		return nil
	}
	var out []Step
	for i, it := range v.Content {
		out = append(out, p.step(it, index(field, i), exprs))
	}
	return out
}

func (p *parser) step(n *yaml.Node, field string, exprs *[]exprRef) Step {
	var s Step
	v := deref(n)
	if v.Kind != yaml.MappingNode {
		p.errAt(n, field, "must be a map with run, got %s", describe(v))
		return s
	}
	haveRun := false
	for _, f := range p.fields(v, field, stepFields) {
		fp := field + "." + f.name
		switch f.name {
		case "name":
			if t, ok := p.name(f.val, fp); ok {
				s.Name = t
				*exprs = append(*exprs, exprRef{f.val, fp})
			}
		case "run":
			haveRun = true
			if t, ok := p.text(f.val, fp); ok {
				s.Run = t
				*exprs = append(*exprs, exprRef{f.val, fp})
			}
		case "env":
			s.Env = p.env(f.val, fp, exprs)
		case "timeout":
			s.Timeout = p.duration(f.val, fp)
		}
	}
	if !haveRun {
		p.errAt(v, field+".run", "is required")
	}
	return s
}

// suggest returns the candidate closest to s, if one is close enough to be
// a likely typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	norm := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	for _, c := range candidates {
		if norm == strings.ToLower(strings.ReplaceAll(c, "_", "-")) {
			return c
		}
		if d := distance(s, c); d < bestDist && (d == 1 || 2*d < max(len(s), len(c))) {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
