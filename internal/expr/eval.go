package expr

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Status is how the needs (for a job's `if`) or the steps before (for a
// step's `if`) ended, as the status functions read it: success(),
// failure() and cancelled() return these fields.
type Status struct {
	Success   bool // every need succeeded, or no earlier step failed
	Failure   bool // a need, or an earlier step, failed
	Cancelled bool // the run is being cancelled
}

// Env is what an expression is evaluated against.
type Env struct {
	// Contexts maps a context's name (hodei, inputs, matrix, needs, env) to
	// its value, usually a map[string]any. A context that is absent reads
	// as an error; a property that is absent reads as null.
	Contexts map[string]any
	// Status answers the status functions; nil makes them an error.
	Status *Status
}

// Resolver says what is known of a reference now: its value and true, or
// false to leave it for later.
type Resolver func(r *Ref) (any, bool)

// Eval evaluates n.
func Eval(n Node, env *Env) (any, error) {
	return eval(n, func(r *Ref) (any, bool) { return lookup(env.Contexts, r) }, env.Status)
}

// Condition evaluates an `if`: an expression that calls no status
// function holds only when success() holds too, as a job or step whose
// needs or earlier steps failed does not run unless its condition says so.
func Condition(n Node, env *Env) (bool, error) {
	v, err := Eval(n, env)
	if err != nil {
		return false, err
	}
	if !UsesStatus(n) && env.Status != nil && !env.Status.Success {
		return false, nil
	}
	return Truthy(v), nil
}

// Fold evaluates what resolve knows and returns the rest as an expression
// in which the known parts are literals. Status functions are left alone.
func Fold(n Node, resolve Resolver) (Node, error) {
	switch n := n.(type) {
	case *Literal:
		return n, nil
	case *Ref:
		if v, ok := resolve(n); ok {
			return &Literal{Val: v, At: n.Pos()}, nil
		}
		return n, nil
	case *Unary:
		x, err := Fold(n.X, resolve)
		if err != nil {
			return nil, err
		}
		if l, ok := x.(*Literal); ok {
			return &Literal{Val: !Truthy(l.Val), At: n.At}, nil
		}
		return &Unary{Op: n.Op, X: x, At: n.At}, nil
	case *Binary:
		x, err := Fold(n.X, resolve)
		if err != nil {
			return nil, err
		}
		y, err := Fold(n.Y, resolve)
		if err != nil {
			return nil, err
		}
		lx, okx := x.(*Literal)
		ly, oky := y.(*Literal)
		if okx && oky {
			return &Literal{Val: binary(n.Op, lx.Val, ly.Val), At: n.Pos()}, nil
		}
		return &Binary{Op: n.Op, X: x, Y: y, At: n.At}, nil
	case *Call:
		c := &Call{Name: n.Name, At: n.At}
		all := !Functions[n.Name].Status
		var vals []any
		for _, a := range n.Args {
			f, err := Fold(a, resolve)
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, f)
			if l, ok := f.(*Literal); ok {
				vals = append(vals, l.Val)
			} else {
				all = false
			}
		}
		if all {
			v, err := call(n, vals, nil)
			if err != nil {
				return nil, err
			}
			return &Literal{Val: v, At: n.At}, nil
		}
		return c, nil
	}
	return nil, fmt.Errorf("expr: unknown node %T", n)
}

// lookup reads a reference from contexts.
func lookup(contexts map[string]any, r *Ref) (any, bool) {
	v, ok := contexts[r.Path[0]]
	if !ok {
		return nil, false
	}
	for _, p := range r.Path[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, true
		}
		v = m[p]
	}
	return v, true
}

func eval(n Node, resolve Resolver, st *Status) (any, error) {
	switch n := n.(type) {
	case *Literal:
		return n.Val, nil
	case *Ref:
		v, ok := resolve(n)
		if !ok {
			return nil, &Error{Offset: n.Pos(), Msg: fmt.Sprintf("unknown context %s", n.Path[0])}
		}
		return v, nil
	case *Unary:
		x, err := eval(n.X, resolve, st)
		if err != nil {
			return nil, err
		}
		return !Truthy(x), nil
	case *Binary:
		x, err := eval(n.X, resolve, st)
		if err != nil {
			return nil, err
		}
		// && and || give one of their operands, and stop early.
		switch n.Op {
		case "&&":
			if !Truthy(x) {
				return x, nil
			}
			return eval(n.Y, resolve, st)
		case "||":
			if Truthy(x) {
				return x, nil
			}
			return eval(n.Y, resolve, st)
		}
		y, err := eval(n.Y, resolve, st)
		if err != nil {
			return nil, err
		}
		return binary(n.Op, x, y), nil
	case *Call:
		vals := make([]any, len(n.Args))
		for i, a := range n.Args {
			v, err := eval(a, resolve, st)
			if err != nil {
				return nil, err
			}
			vals[i] = v
		}
		return call(n, vals, st)
	}
	return nil, fmt.Errorf("expr: unknown node %T", n)
}

// binary applies an operator other than && and || (which Fold and eval
// treat for their short-circuit), or those too on two known values.
func binary(op string, x, y any) any {
	switch op {
	case "&&":
		if !Truthy(x) {
			return x
		}
		return y
	case "||":
		if Truthy(x) {
			return x
		}
		return y
	case "==":
		return Equal(x, y)
	case "!=":
		return !Equal(x, y)
	}
	// Ordering: two strings compare without case, anything else as numbers;
	// NaN compares false.
	var c int
	if sx, ok := x.(string); ok {
		if sy, ok := y.(string); ok {
			c = strings.Compare(strings.ToLower(sx), strings.ToLower(sy))
			return order(op, c)
		}
	}
	a, b := ToNumber(x), ToNumber(y)
	if math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	switch {
	case a < b:
		c = -1
	case a > b:
		c = 1
	}
	return order(op, c)
}

func order(op string, c int) bool {
	switch op {
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

func call(n *Call, args []any, st *Status) (any, error) {
	switch n.Name {
	case "startsWith":
		return strings.HasPrefix(strings.ToLower(ToString(args[0])), strings.ToLower(ToString(args[1]))), nil
	case "endsWith":
		return strings.HasSuffix(strings.ToLower(ToString(args[0])), strings.ToLower(ToString(args[1]))), nil
	case "contains":
		if list, ok := args[0].([]any); ok {
			for _, v := range list {
				if Equal(v, args[1]) {
					return true, nil
				}
			}
			return false, nil
		}
		return strings.Contains(strings.ToLower(ToString(args[0])), strings.ToLower(ToString(args[1]))), nil
	case "format":
		return format(n, ToString(args[0]), args[1:])
	}
	if st == nil {
		return nil, &Error{Offset: n.At, Msg: fmt.Sprintf("%s() can only be used in if", n.Name)}
	}
	switch n.Name {
	case "success":
		return st.Success, nil
	case "failure":
		return st.Failure, nil
	case "always":
		return true, nil
	case "cancelled":
		return st.Cancelled, nil
	}
	return nil, &Error{Offset: n.At, Msg: "unknown function " + n.Name}
}

// format replaces {0}, {1}... by the arguments; {{ and }} are braces.
func format(n *Call, f string, args []any) (string, error) {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '{' && i+1 < len(f) && f[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '}' && i+1 < len(f) && f[i+1] == '}':
			b.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				return "", &Error{Offset: n.At, Msg: fmt.Sprintf("format: unclosed { in %q", f)}
			}
			k, err := strconv.Atoi(f[i+1 : i+end])
			if err != nil || k < 0 || k >= len(args) {
				return "", &Error{Offset: n.At, Msg: fmt.Sprintf("format: %s does not name one of the %d arguments in %q", f[i:i+end+1], len(args), f)}
			}
			b.WriteString(ToString(args[k]))
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Truthy is a value's truth: false, 0, NaN, "" and null are false.
func Truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0 && !math.IsNaN(v)
	case string:
		return v != ""
	}
	return true
}

// Equal compares two values: strings without case; values of different
// kinds as numbers (null is 0, true 1, a string its number or NaN); maps
// and lists only to themselves.
func Equal(x, y any) bool {
	switch a := x.(type) {
	case string:
		if b, ok := y.(string); ok {
			return strings.EqualFold(a, b)
		}
	case nil:
		if y == nil {
			return true
		}
	case bool:
		if b, ok := y.(bool); ok {
			return a == b
		}
	case map[string]any, []any:
		return false
	}
	switch y.(type) {
	case map[string]any, []any:
		return false
	}
	return ToNumber(x) == ToNumber(y)
}

// ToNumber converts a value to a number as comparisons do.
func ToNumber(v any) float64 {
	switch v := v.(type) {
	case nil:
		return 0
	case bool:
		if v {
			return 1
		}
		return 0
	case float64:
		return v
	case string:
		s := strings.TrimSpace(v)
		if s == "" {
			return 0
		}
		f, err := parseNumber(s)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	return math.NaN()
}

// ToString converts a value to the text a template inserts: null is empty,
// numbers without needless decimals, maps and lists as JSON.
func ToString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// String prints n back as an expression that parses to the same thing.
func String(n Node) string {
	var b strings.Builder
	write(&b, n, 0)
	return b.String()
}

// precedence of each operator, higher binds tighter: its level in
// binaryOps, from 1; unary operators bind tighter than every binary one.
func precedence(op string) int {
	for i, ops := range binaryOps {
		if slices.Contains(ops, op) {
			return i + 1
		}
	}
	return len(binaryOps) + 1
}

func write(b *strings.Builder, n Node, outer int) {
	switch n := n.(type) {
	case *Literal:
		switch v := n.Val.(type) {
		case nil:
			b.WriteString("null")
		case bool:
			b.WriteString(strconv.FormatBool(v))
		case float64:
			switch {
			case math.IsNaN(v):
				b.WriteString("'NaN'")
			case math.IsInf(v, 0):
				b.WriteString("'Infinity'")
			default:
				b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
			}
		case string:
			b.WriteByte('\'')
			b.WriteString(strings.ReplaceAll(v, "'", "''"))
			b.WriteByte('\'')
		default:
			// A map or list folded from a context: written as its JSON text.
			b.WriteByte('\'')
			b.WriteString(strings.ReplaceAll(ToString(v), "'", "''"))
			b.WriteByte('\'')
		}
	case *Ref:
		b.WriteString(strings.Join(n.Path, "."))
	case *Unary:
		b.WriteString("!")
		write(b, n.X, 5)
	case *Binary:
		p := precedence(n.Op)
		if p < outer {
			b.WriteByte('(')
		}
		write(b, n.X, p)
		b.WriteString(" " + n.Op + " ")
		write(b, n.Y, p+1)
		if p < outer {
			b.WriteByte(')')
		}
	case *Call:
		b.WriteString(n.Name)
		b.WriteByte('(')
		for i, a := range n.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			write(b, a, 0)
		}
		b.WriteByte(')')
	}
}
