package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/expr"
	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// HodeiContext lists the properties of the hodei context of expressions.
var HodeiContext = []string{"event", "ref", "branch", "tag", "pr", "commit", "repo", "run_id", "pipeline"}

// contexts are the contexts expressions may read, for messages.
const contexts = "hodei, inputs, matrix, needs, env"

// githubNames maps the GitHub Actions names people reach for to Hodei's.
var githubNames = map[string]string{
	"sha": "commit", "ref": "ref", "ref_name": "branch", "event_name": "event",
	"repository": "repo", "run_id": "run_id", "workflow": "pipeline",
}

// scope says where an expression is and so what it may read.
type scope int

const (
	// atPipeline: the pipeline's name, env and concurrency group.
	atPipeline scope = iota
	// atRunMade: a job's name, labels and image, known when the run is
	// made (no needs, no hodei.run_id).
	atRunMade
	// atJob: a job's env and its steps' names, scripts and env, evaluated
	// when the job is ready.
	atJob
)

// exprRef is a string field that may hold expressions.
type exprRef struct {
	node  *yaml.Node
	field string
	scope scope
	// cond: the field is an `if`, one expression with or without ${{ }},
	// where the status functions may be called.
	cond bool
	job  *jobInfo // nil at the pipeline's level
	// rd reads the file the field is in.
	rd *yamlpos.Reader
}

// parseCondition reads an `if`: a bare expression, or one inside ${{ }}.
func parseCondition(s string) (expr.Node, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "${{") {
		tp, err := expr.ParseTemplate(s)
		if err != nil {
			return nil, err
		}
		var only expr.Node
		n := 0
		for _, part := range tp.Parts {
			switch {
			case part.Expr != nil:
				only = part.Expr
				n++
			case strings.TrimSpace(part.Text) != "":
				n += 2
			}
		}
		if n == 1 {
			return only, nil
		}
		return nil, &expr.Error{Offset: 0, Msg: "an if is one expression: write it bare or inside a single ${{ }}"}
	}
	n, err := expr.Parse(s)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// conditionText is the canonical text of an `if`.
func conditionText(s string) (Condition, error) {
	n, err := parseCondition(s)
	if err != nil {
		return "", err
	}
	return Condition(expr.String(n)), nil
}

// checkExprs checks every expression of the file once the inputs and the
// jobs' needs and matrices are known.
func (p *parser) checkExprs(inputs map[string]bool) {
	main := p.Reader
	defer func() { p.Reader = main }()
	for _, r := range p.exprs {
		p.Reader = r.rd
		p.checkExpr(r, inputs)
	}
}

// checkExpr reports the syntax errors and the references a field cannot
// read, each at its place in the file.
func (p *parser) checkExpr(r exprRef, inputs map[string]bool) {
	text := yamlpos.Deref(r.node).Value
	if r.cond {
		n, err := parseCondition(text)
		if err != nil {
			p.exprError(r, text, err)
			return
		}
		p.checkNode(r, text, n, 0, inputs, nil)
		return
	}
	if !expr.HasExpr(text) {
		return
	}
	tp, err := expr.ParseTemplate(text)
	if err != nil {
		p.exprError(r, text, err)
		return
	}
	reported := make(map[string]bool)
	for _, part := range tp.Parts {
		if part.Expr != nil {
			p.checkNode(r, text, part.Expr, part.SrcAt, inputs, &templatePart{part: part, reported: reported})
		}
	}
}

// templatePart is the ${{ }} an expression comes from, for the messages
// that quote it.
type templatePart struct {
	part     expr.Part
	reported map[string]bool
}

func (t *templatePart) text(value string) string {
	return value[t.part.Start : t.part.SrcAt+len(t.part.Src)+2]
}

func (p *parser) exprError(r exprRef, text string, err error) {
	off := 0
	msg := err.Error()
	if e, ok := err.(*expr.Error); ok {
		off, msg = e.Offset, e.Msg
	}
	line, col := p.offsetPos(r.node, text, off)
	p.ErrorAt(line, col, r.field, "%s", msg)
}

// checkNode checks the references and calls of one expression whose
// source starts at byte base of the field's value.
func (p *parser) checkNode(r exprRef, text string, n expr.Node, base int, inputs map[string]bool, tp *templatePart) {
	at := func(off int, format string, args ...any) {
		line, col := p.offsetPos(r.node, text, base+off)
		p.ErrorAt(line, col, r.field, format, args...)
	}
	expr.Walk(n, func(n expr.Node) {
		switch n := n.(type) {
		case *expr.Call:
			if expr.Functions[n.Name].Status && !r.cond {
				at(n.At, "%s() can only be used in if", n.Name)
			}
		case *expr.Ref:
			p.checkRef(r, text, n, inputs, tp, at)
		}
	})
}

// checkRef checks one reference against the contexts the field may read.
func (p *parser) checkRef(r exprRef, text string, ref *expr.Ref, inputs map[string]bool, tp *templatePart, at func(off int, format string, args ...any)) {
	path, offs := ref.Path, ref.Offs
	switch path[0] {
	case "hodei":
		if len(path) < 2 {
			return
		}
		if !slices.Contains(HodeiContext, path[1]) {
			at(offs[1], "unknown property hodei.%s%s (hodei has %s)", path[1], yamlpos.DidYouMean(path[1], HodeiContext), strings.Join(HodeiContext, ", "))
			return
		}
		if path[1] == "run_id" && (r.scope == atPipeline || r.scope == atRunMade) && !r.cond {
			at(offs[1], "hodei.run_id is not known when the run is made: a pipeline's or job's name, labels and image cannot read it (env, steps and if can)")
		}
	case "inputs":
		if len(path) < 2 || inputs[path[1]] {
			return
		}
		if len(inputs) == 0 {
			at(offs[1], "unknown input %q: the pipeline declares no inputs", path[1])
			return
		}
		names := sortedKeys(inputs)
		at(offs[1], "unknown input %q%s (inputs: %s)", path[1], yamlpos.DidYouMean(path[1], names), strings.Join(names, ", "))
	case "matrix":
		if r.job == nil {
			if tp == nil {
				at(offs[0], "matrix expressions are only allowed inside jobs")
			} else if !tp.reported["\x00outside"] {
				tp.reported["\x00outside"] = true
				line, col := p.offsetPos(r.node, text, tp.part.Start)
				p.ErrorAt(line, col, r.field, "matrix expressions are only allowed inside jobs")
			}
			return
		}
		if len(path) < 2 || r.job.matrixBroken || r.job.axes[path[1]] {
			return
		}
		key := path[1]
		where := ""
		if tp != nil {
			if tp.reported[key] {
				return
			}
			tp.reported[key] = true
			where = " in " + tp.text(text)
		}
		msg := fmt.Sprintf("unknown matrix key %q%s", key, where)
		if len(r.job.axes) == 0 {
			msg += " (the job has no matrix)"
		} else {
			msg += " (matrix keys: " + strings.Join(sortedKeys(r.job.axes), ", ") + ")"
		}
		if tp != nil {
			line, col := p.offsetPos(r.node, text, tp.part.Start)
			p.ErrorAt(line, col, r.field, "%s", msg)
			return
		}
		at(offs[1], "%s", msg)
	case "needs":
		switch {
		case r.job == nil:
			at(offs[0], "needs is only known inside jobs")
			return
		case r.scope == atRunMade && !r.cond:
			at(offs[0], "needs is not known when the run is made: a job's name, labels and image cannot read it")
			return
		case len(path) < 2:
			return
		}
		if !slices.Contains(r.job.job.Needs, path[1]) {
			if len(r.job.job.Needs) == 0 {
				at(offs[1], "job %q is not in the needs of job %q (it needs nothing): add needs: [%s]", path[1], r.job.job.ID, path[1])
			} else {
				at(offs[1], "job %q is not in the needs of job %q (needs: %s)", path[1], r.job.job.ID, strings.Join(r.job.job.Needs, ", "))
			}
			return
		}
		if len(path) >= 3 && path[2] != "result" && path[2] != "outputs" {
			at(offs[2], "unknown property needs.%s.%s (a need has result and outputs)", path[1], path[2])
		}
		if len(path) >= 3 && path[2] == "outputs" {
			p.checkOutputRef(path[1], path, offs, at)
		}
	case "env":
	case "secrets":
		name := "NAME"
		if len(path) > 1 {
			name = path[1]
		}
		at(offs[0], "secrets cannot be read in expressions: secrets are given with secrets: [%s] and read as $%s", name, name)
	case "github":
		hint := ""
		if len(path) > 1 {
			if h, ok := githubNames[path[1]]; ok {
				hint = fmt.Sprintf(" (did you mean hodei.%s?)", h)
			}
		}
		at(offs[0], "unknown context github: github.* is hodei.*%s", hint)
	default:
		at(offs[0], "unknown context %q%s (contexts: %s)", path[0], yamlpos.DidYouMean(path[0], strings.Split(contexts, ", ")), contexts)
	}
}

// offsetPos is the line and column of byte off of a scalar's value. The
// text from the ${{ before off (or from the start of its line of the
// value) up to off is found in the source, which works in every style of
// scalar but for escapes in quoted strings; then the scalar's own position
// is used.
func (p *parser) offsetPos(n *yaml.Node, value string, off int) (int, int) {
	off = min(max(off, 0), len(value))
	lineStart := strings.LastIndexByte(value[:off], '\n') + 1
	start := lineStart
	if i := strings.LastIndex(value[lineStart:min(off+3, len(value))], "${{"); i >= 0 && lineStart+i <= off {
		start = lineStart + i
	}
	end := off
	if end == start {
		// Find at least one character (or the ${{ itself).
		end = min(start+3, len(value))
		if nl := strings.IndexByte(value[start:end], '\n'); nl >= 0 {
			end = start + nl
		}
	}
	if end == start {
		v := yamlpos.Deref(n)
		return v.Line, v.Column
	}
	line, col, ok := p.find(n, value, start, value[start:end])
	if !ok {
		return line, col
	}
	return line, col + utf8.RuneCountInString(value[start:off])
}
