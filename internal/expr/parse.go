// Package expr is the expression language of pipeline files: the text
// between ${{ and }}.
//
// An expression is a literal (a 'single-quoted' string, with ” for a
// quote; a number; true, false or null), a reference into a context
// (hodei.ref, matrix.os, needs.build.outputs.version), a call of one of
// the Functions, or operators over them: ! == != < <= > >= && || and
// parentheses. Parse reads one expression, ParseTemplate a string holding
// any number of ${{ }}; Eval computes a value, Fold computes what is known
// now and leaves the rest as an expression to evaluate later (String
// prints it back). Values are nil (null), bool, float64, string,
// map[string]any and []any.
package expr

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Node is a parsed expression.
type Node interface {
	// Pos is the byte offset of the node in the expression's source.
	Pos() int
}

// Literal is a constant: nil, bool, float64 or string.
type Literal struct {
	Val any
	At  int
}

// Ref reads a context: Path[0] is the context's name, the rest are
// properties. Offs holds the offset of each segment.
type Ref struct {
	Path []string
	Offs []int
}

// Unary is !X.
type Unary struct {
	Op string
	X  Node
	At int
}

// Binary is X Op Y.
type Binary struct {
	Op   string
	X, Y Node
	At   int // offset of the operator
}

// Call is a function call.
type Call struct {
	Name string
	Args []Node
	At   int
}

func (n *Literal) Pos() int { return n.At }
func (n *Ref) Pos() int     { return n.Offs[0] }
func (n *Unary) Pos() int   { return n.At }
func (n *Binary) Pos() int  { return n.X.Pos() }
func (n *Call) Pos() int    { return n.At }

// Error is a problem in an expression at a byte offset of its source (of
// the template's text for ParseTemplate).
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Function describes a function the language knows.
type Function struct {
	MinArgs, MaxArgs int // MaxArgs < 0: no limit
	// Status functions read how the job or step got here (success(),
	// failure(), always(), cancelled()); they only make sense in `if`.
	Status bool
}

// Functions are the functions an expression may call.
var Functions = map[string]Function{
	"startsWith": {MinArgs: 2, MaxArgs: 2},
	"endsWith":   {MinArgs: 2, MaxArgs: 2},
	"contains":   {MinArgs: 2, MaxArgs: 2},
	"format":     {MinArgs: 1, MaxArgs: -1},
	"success":    {Status: true},
	"failure":    {Status: true},
	"always":     {Status: true},
	"cancelled":  {Status: true},
}

// MaxDepth bounds the nesting of an expression, so that a hostile one
// cannot exhaust the stack.
const MaxDepth = 100

// Parse parses one expression (without ${{ }}).
func Parse(src string) (Node, error) {
	p := &parser{src: src}
	p.next()
	n := p.or(0)
	if p.err == nil && p.tok.kind != tEOF {
		p.fail(p.tok.at, "unexpected %s after the end of the expression", p.tok.describe())
	}
	if p.err != nil {
		return nil, p.err
	}
	return n, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tOp // operators and punctuation
	tBad
)

type token struct {
	kind tokKind
	text string // identifier, operator, or the literal's source
	val  any    // value of a number or string literal
	at   int
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tString:
		return "string " + t.text
	}
	return strconv.Quote(t.text)
}

type parser struct {
	src string
	pos int
	tok token
	err *Error
}

func (p *parser) fail(at int, format string, args ...any) {
	if p.err == nil {
		p.err = &Error{Offset: at, Msg: fmt.Sprintf(format, args...)}
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c == '-' || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// next reads the next token into p.tok.
func (p *parser) next() {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	if start >= len(s) {
		p.tok = token{kind: tEOF, at: start}
		return
	}
	c := s[start]
	switch {
	case isIdentStart(c):
		for p.pos < len(s) && isIdentChar(s[p.pos]) {
			p.pos++
		}
		p.tok = token{kind: tIdent, text: s[start:p.pos], at: start}
	case isDigit(c) || c == '-' && start+1 < len(s) && isDigit(s[start+1]):
		p.pos++
		for p.pos < len(s) && (isDigit(s[p.pos]) || s[p.pos] == '.' || s[p.pos] == 'e' || s[p.pos] == 'E' ||
			(s[p.pos] == 'x' || s[p.pos] >= 'a' && s[p.pos] <= 'f' || s[p.pos] >= 'A' && s[p.pos] <= 'F')) {
			p.pos++
		}
		text := s[start:p.pos]
		f, err := parseNumber(text)
		if err != nil {
			p.tok = token{kind: tBad, text: text, at: start}
			p.fail(start, "invalid number %s", text)
			return
		}
		p.tok = token{kind: tNumber, text: text, val: f, at: start}
	case c == '\'':
		var b strings.Builder
		p.pos++
		for {
			if p.pos >= len(s) {
				p.tok = token{kind: tBad, at: start}
				p.fail(start, "unterminated string: a string ends with ' (write '' for a quote inside it)")
				return
			}
			if s[p.pos] == '\'' {
				if p.pos+1 < len(s) && s[p.pos+1] == '\'' {
					b.WriteByte('\'')
					p.pos += 2
					continue
				}
				p.pos++
				break
			}
			b.WriteByte(s[p.pos])
			p.pos++
		}
		p.tok = token{kind: tString, text: s[start:p.pos], val: b.String(), at: start}
	case c == '"':
		p.tok = token{kind: tBad, at: start}
		p.fail(start, "strings are written in single quotes: 'text'")
	default:
		for _, op := range []string{"==", "!=", "<=", ">=", "&&", "||", "!", "<", ">", "(", ")", ".", ","} {
			if strings.HasPrefix(s[start:], op) {
				p.pos += len(op)
				p.tok = token{kind: tOp, text: op, at: start}
				return
			}
		}
		p.tok = token{kind: tBad, text: string(c), at: start}
		hint := ""
		switch c {
		case '=':
			hint = " (compare with ==)"
		case '&', '|':
			hint = " (use && and ||)"
		case '[', '*':
			hint = " (properties are read with a dot: needs.build.result)"
		}
		p.fail(start, "unexpected character %q%s", c, hint)
	}
}

// parseNumber reads a decimal, exponent or 0x number.
func parseNumber(text string) (float64, error) {
	neg := strings.HasPrefix(text, "-")
	t := strings.TrimPrefix(text, "-")
	var f float64
	if strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X") {
		i, err := strconv.ParseUint(t[2:], 16, 64)
		if err != nil {
			return 0, err
		}
		f = float64(i)
	} else {
		var err error
		if f, err = strconv.ParseFloat(t, 64); err != nil {
			return 0, err
		}
	}
	if neg {
		f = -f
	}
	return f, nil
}

func (p *parser) isOp(op string) bool { return p.tok.kind == tOp && p.tok.text == op }

func (p *parser) depth(d int) bool {
	if d > MaxDepth {
		p.fail(p.tok.at, "expression nested too deeply (more than %d levels)", MaxDepth)
		return false
	}
	return true
}

// binaryOps are the binary operators by level, the loosest first.
var binaryOps = [][]string{{"||"}, {"&&"}, {"==", "!="}, {"<", "<=", ">", ">="}}

func (p *parser) or(d int) Node { return p.binary(0, d) }

// binary parses the operators of a level, left to right, over the level
// below (unary after the last).
func (p *parser) binary(level, d int) Node {
	next := func() Node {
		if level+1 < len(binaryOps) {
			return p.binary(level+1, d)
		}
		return p.unary(d)
	}
	x := next()
	for p.err == nil && p.tok.kind == tOp && slices.Contains(binaryOps[level], p.tok.text) {
		op, at := p.tok.text, p.tok.at
		p.next()
		x = &Binary{Op: op, X: x, Y: next(), At: at}
	}
	return x
}

func (p *parser) unary(d int) Node {
	if !p.depth(d) {
		return nil
	}
	if p.isOp("!") {
		at := p.tok.at
		p.next()
		return &Unary{Op: "!", X: p.unary(d + 1), At: at}
	}
	return p.primary(d)
}

func (p *parser) primary(d int) Node {
	t := p.tok
	if p.err != nil {
		return nil
	}
	switch t.kind {
	case tEOF:
		p.fail(t.at, "expected a value, found the end of the expression")
		return nil
	case tNumber, tString:
		p.next()
		return &Literal{Val: t.val, At: t.at}
	case tOp:
		if t.text == "(" {
			p.next()
			x := p.or(d + 1)
			if p.err == nil && !p.isOp(")") {
				p.fail(p.tok.at, "expected ) to close the ( at offset %d, found %s", t.at+1, p.tok.describe())
			}
			p.next()
			return x
		}
		p.fail(t.at, "expected a value, found %s", t.describe())
		return nil
	case tIdent:
		p.next()
		switch t.text {
		case "true":
			return &Literal{Val: true, At: t.at}
		case "false":
			return &Literal{Val: false, At: t.at}
		case "null":
			return &Literal{Val: nil, At: t.at}
		}
		if p.isOp("(") {
			return p.call(t, d)
		}
		r := &Ref{Path: []string{t.text}, Offs: []int{t.at}}
		for p.err == nil && p.isOp(".") {
			p.next()
			if p.tok.kind != tIdent {
				p.fail(p.tok.at, "expected a property name after %s., found %s", strings.Join(r.Path, "."), p.tok.describe())
				return nil
			}
			r.Path = append(r.Path, p.tok.text)
			r.Offs = append(r.Offs, p.tok.at)
			p.next()
		}
		return r
	}
	return nil
}

func (p *parser) call(name token, d int) Node {
	f, known := Functions[name.text]
	if !known {
		p.fail(name.at, "unknown function %s (functions: %s)", name.text, functionNames())
		return nil
	}
	p.next() // (
	c := &Call{Name: name.text, At: name.at}
	if !p.isOp(")") {
		for p.err == nil {
			c.Args = append(c.Args, p.or(d+1))
			if p.isOp(",") {
				p.next()
				continue
			}
			break
		}
	}
	if p.err != nil {
		return nil
	}
	if !p.isOp(")") {
		p.fail(p.tok.at, "expected , or ) in the call of %s, found %s", name.text, p.tok.describe())
		return nil
	}
	p.next()
	n := len(c.Args)
	switch {
	case n < f.MinArgs || f.MaxArgs >= 0 && n > f.MaxArgs:
		want := fmt.Sprintf("%d", f.MinArgs)
		if f.MaxArgs < 0 {
			want = fmt.Sprintf("at least %d", f.MinArgs)
		} else if f.MaxArgs != f.MinArgs {
			want = fmt.Sprintf("%d to %d", f.MinArgs, f.MaxArgs)
		}
		p.fail(name.at, "%s takes %s argument%s, got %d", name.text, want, plural(f.MinArgs, f.MaxArgs), n)
		return nil
	}
	if c.Name == "format" {
		// A format written in the expression is checked now.
		if l, ok := c.Args[0].(*Literal); ok {
			if s, ok := l.Val.(string); ok {
				if _, err := format(c, s, make([]any, n-1)); err != nil {
					p.fail(name.at, "%s", err.Error())
					return nil
				}
			}
		}
	}
	return c
}

func plural(lo, hi int) string {
	if lo == 1 && hi == 1 {
		return ""
	}
	return "s"
}

// functionNames lists the functions, in a fixed order, for messages.
func functionNames() string {
	return "startsWith, endsWith, contains, format, success, failure, always, cancelled"
}

// Walk calls f for every node of n, parents first.
func Walk(n Node, f func(Node)) {
	if n == nil {
		return
	}
	f(n)
	switch n := n.(type) {
	case *Unary:
		Walk(n.X, f)
	case *Binary:
		Walk(n.X, f)
		Walk(n.Y, f)
	case *Call:
		for _, a := range n.Args {
			Walk(a, f)
		}
	}
}

// UsesStatus reports whether n calls a status function.
func UsesStatus(n Node) bool {
	found := false
	Walk(n, func(n Node) {
		if c, ok := n.(*Call); ok && Functions[c.Name].Status {
			found = true
		}
	})
	return found
}
