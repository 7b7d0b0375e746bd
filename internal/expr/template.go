package expr

import (
	"strings"
)

// Template is a string with ${{ }} expressions in it.
type Template struct {
	Parts []Part
}

// Part is literal text or one expression of a template.
type Part struct {
	Text string // the literal text, when Expr is nil
	Expr Node
	// Start is the offset of "${{" in the template; Src the expression's
	// source and SrcAt its offset in the template (offsets in Expr are
	// relative to Src).
	Start int
	Src   string
	SrcAt int
}

// HasExpr reports whether s holds the start of an expression.
func HasExpr(s string) bool { return strings.Contains(s, "${{") }

// ParseTemplate parses every ${{ }} of s. An error's offset is in s.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{}
	rest, off := s, 0
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			if rest != "" {
				t.Parts = append(t.Parts, Part{Text: rest, Start: off})
			}
			return t, nil
		}
		if i > 0 {
			t.Parts = append(t.Parts, Part{Text: rest[:i], Start: off})
		}
		body := rest[i+3:]
		end := closing(body)
		if end < 0 {
			return nil, &Error{Offset: off + i, Msg: "${{ is not closed by }}"}
		}
		src := body[:end]
		srcAt := off + i + 3
		if strings.TrimSpace(src) == "" {
			return nil, &Error{Offset: off + i, Msg: "empty expression ${{ }}"}
		}
		n, err := Parse(src)
		if err != nil {
			e := err.(*Error)
			return nil, &Error{Offset: srcAt + e.Offset, Msg: e.Msg}
		}
		t.Parts = append(t.Parts, Part{Expr: n, Start: off + i, Src: src, SrcAt: srcAt})
		consumed := i + 3 + end + 2
		rest, off = rest[consumed:], off+consumed
	}
}

// closing finds the "}}" that ends an expression, skipping strings.
func closing(s string) int {
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\'':
			in = !in
		case !in && s[i] == '}' && i+1 < len(s) && s[i+1] == '}':
			return i
		}
	}
	return -1
}

// Exprs returns the expressions of the template.
func (t *Template) Exprs() []Node {
	var out []Node
	for _, p := range t.Parts {
		if p.Expr != nil {
			out = append(out, p.Expr)
		}
	}
	return out
}

// Eval evaluates every expression and joins the parts into a string.
func (t *Template) Eval(env *Env) (string, error) {
	var b strings.Builder
	for _, p := range t.Parts {
		if p.Expr == nil {
			b.WriteString(p.Text)
			continue
		}
		v, err := Eval(p.Expr, env)
		if err != nil {
			return "", err
		}
		b.WriteString(ToString(v))
	}
	return b.String(), nil
}

// Fold folds every expression (see Fold). When all of them become
// constants the result is the final string and done is true; otherwise
// the result is a template again, with the constants it could compute
// written as literals inside the expressions that remain (so that a value
// is never read as an expression later).
func (t *Template) Fold(resolve Resolver) (s string, done bool, err error) {
	folded := make([]Node, len(t.Parts))
	done = true
	for i, p := range t.Parts {
		if p.Expr == nil {
			continue
		}
		n, err := Fold(p.Expr, resolve)
		if err != nil {
			return "", false, err
		}
		folded[i] = n
		if _, ok := n.(*Literal); !ok {
			done = false
		}
	}
	var b strings.Builder
	for i, p := range t.Parts {
		switch {
		case p.Expr == nil:
			// Text parts never hold "${{" (ParseTemplate splits there),
			// so they stay literal in the template that remains.
			b.WriteString(p.Text)
		case done:
			b.WriteString(ToString(folded[i].(*Literal).Val))
		default:
			b.WriteString("${{ ")
			b.WriteString(String(folded[i]))
			b.WriteString(" }}")
		}
	}
	return b.String(), done, nil
}
