package expr

import (
	"strings"
	"testing"
)

func env() *Env {
	return &Env{
		Contexts: map[string]any{
			"hodei":  map[string]any{"ref": "refs/heads/main", "branch": "main", "event": "push"},
			"inputs": map[string]any{"env": "prod", "dry_run": true, "n": float64(3)},
			"matrix": map[string]any{"os": "linux"},
			"needs": map[string]any{"build": map[string]any{
				"result":  "success",
				"outputs": map[string]any{"version": "1.2.3"},
			}},
			"list": []any{"a", "b"},
		},
		Status: &Status{Success: true},
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src  string
		want any
	}{
		{"true", true},
		{"null", nil},
		{"'it''s'", "it's"},
		{"1.5", 1.5},
		{"-2", float64(-2)},
		{"0xff", float64(255)},
		{"hodei.branch", "main"},
		{"hodei.branch == 'MAIN'", true}, // strings compare without case
		{"hodei.branch != 'main'", false},
		{"hodei.nothing", nil},
		{"hodei.nothing.deeper", nil},
		{"needs.build.outputs.version", "1.2.3"},
		{"needs.build.result == 'success' && inputs.env == 'prod'", true},
		{"inputs.missing || 'fallback'", "fallback"},
		{"inputs.env && 'yes'", "yes"},
		{"!inputs.dry_run", false},
		{"!(inputs.n == 3)", false},
		{"inputs.n == '3'", true},
		{"inputs.n > 2 && inputs.n <= 3", true},
		{"'a' < 'B'", true},
		{"null == 0", true},
		{"true == 1", true},
		{"'abc' == 1", false},
		{"startsWith(hodei.ref, 'refs/heads/')", true},
		{"endsWith(hodei.ref, '/MAIN')", true},
		{"contains('hello world', 'lo w')", true},
		{"contains(list, 'b')", true},
		{"contains(list, 'c')", false},
		{"format('{0}-{1}-{{x}}', matrix.os, inputs.n)", "linux-3-{x}"},
		{"success()", true},
		{"failure()", false},
		{"always()", true},
		{"cancelled()", false},
		{"true || false && false", true},
		{"(true || false) && false", false},
	}
	for _, c := range cases {
		n, err := Parse(c.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.src, err)
			continue
		}
		got, err := Eval(n, env())
		if err != nil {
			t.Errorf("Eval(%q): %v", c.src, err)
			continue
		}
		if got != c.want {
			t.Errorf("Eval(%q) = %#v, want %#v", c.src, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src    string
		offset int
		msg    string
	}{
		{"a ==", 4, "expected a value, found the end"},
		{"a = b", 2, "compare with =="},
		{"\"x\"", 0, "single quotes"},
		{"'abc", 0, "unterminated string"},
		{"(a", 2, "expected ) to close"},
		{"a b", 2, "unexpected \"b\" after the end"},
		{"nope(1)", 0, "unknown function nope"},
		{"startsWith('a')", 0, "startsWith takes 2 arguments, got 1"},
		{"success(1)", 0, "success takes 0 arguments, got 1"},
		{"format('{1}', a)", 0, "format: {1} does not name one of the 1 arguments"},
		{"format('{0', a)", 0, "format: unclosed {"},
		{"a.", 2, "expected a property name after a."},
		{"needs[0]", 5, "properties are read with a dot"},
		{"1.2.3", 0, "invalid number"},
		{strings.Repeat("!", 200) + "a", 101, "nested too deeply"},
		{strings.Repeat("(", 200) + "a", 101, "nested too deeply"},
	}
	for _, c := range cases {
		_, err := Parse(c.src)
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("Parse(%q) = %v, want an *Error", c.src, err)
			continue
		}
		if e.Offset != c.offset || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("Parse(%q) = offset %d %q, want offset %d and %q", c.src, e.Offset, e.Msg, c.offset, c.msg)
		}
	}
}

func TestStatusFunctionsAndCondition(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src               string
		failed, cancelled bool
		want              bool
	}{
		{"success()", false, false, true},
		{"success()", true, false, false},
		{"failure()", true, false, true},
		{"failure()", true, true, false},
		{"always()", true, true, true},
		{"cancelled()", false, true, true},
		// Without a status function, success() is implied.
		{"true", true, false, false},
		{"hodei.branch == 'main'", false, false, true},
		{"always() && hodei.branch == 'main'", true, false, true},
	}
	for _, c := range cases {
		n, err := Parse(c.src)
		if err != nil {
			t.Fatal(err)
		}
		e := env()
		e.Status = &Status{Success: !c.failed && !c.cancelled, Failure: c.failed && !c.cancelled, Cancelled: c.cancelled}
		got, err := Condition(n, e)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got != c.want {
			t.Errorf("Condition(%q, failed=%v cancelled=%v) = %v, want %v", c.src, c.failed, c.cancelled, got, c.want)
		}
	}
	n, _ := Parse("success()")
	if _, err := Eval(n, &Env{}); err == nil || !strings.Contains(err.Error(), "only be used in if") {
		t.Errorf("success() without a status: %v", err)
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	tp, err := ParseTemplate("deploy ${{ inputs.env }} on ${{ matrix.os }}: ${{ format('{0}', '}}') }}!")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.Eval(env())
	if err != nil {
		t.Fatal(err)
	}
	if want := "deploy prod on linux: }}!"; got != want {
		t.Errorf("Eval = %q, want %q", got, want)
	}
	for _, c := range []struct {
		src    string
		offset int
	}{
		{"echo ${{ inputs.env", 5},
		{"a ${{ }}", 2},
		{"a ${{ x == }} b", 11},
	} {
		_, err := ParseTemplate(c.src)
		e, ok := err.(*Error)
		if !ok || e.Offset != c.offset {
			t.Errorf("ParseTemplate(%q) = %v, want an error at %d", c.src, err, c.offset)
		}
	}
}

// TestFold folds what is known, leaves the rest, and never lets a value
// be read as an expression later.
func TestFold(t *testing.T) {
	t.Parallel()
	known := func(r *Ref) (any, bool) {
		if r.Path[0] == "needs" {
			return nil, false
		}
		return lookup(env().Contexts, r)
	}
	cases := []struct{ src, want string }{
		{"v=${{ inputs.env }}", "v=prod"},
		{"${{ needs.build.result == 'success' && inputs.env == 'prod' }}", "${{ needs.build.result == 'success' && true }}"},
		{"${{ hodei.branch }}-${{ needs.build.outputs.version }}", "${{ 'main' }}-${{ needs.build.outputs.version }}"},
		{"${{ failure() || !(inputs.n == 3) }}", "${{ failure() || false }}"},
	}
	for _, c := range cases {
		tp, err := ParseTemplate(c.src)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := tp.Fold(known)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Fold(%q) = %q, want %q", c.src, got, c.want)
		}
		// What remains evaluates as the original does.
		again, err := ParseTemplate(got)
		if err != nil {
			t.Fatalf("folded %q does not parse: %v", got, err)
		}
		a, err1 := again.Eval(env())
		b, err2 := tp.Eval(env())
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("%q: folded gives %q (%v), original %q (%v)", c.src, a, err1, b, err2)
		}
	}
	// A value holding ${{ }} stays text.
	inj := func(r *Ref) (any, bool) {
		if r.Path[0] == "inputs" {
			return "${{ needs.build.result }}'", true
		}
		return nil, false
	}
	tp, _ := ParseTemplate("${{ inputs.x }} ${{ needs.build.result }}")
	got, done, err := tp.Fold(inj)
	if err != nil || done {
		t.Fatalf("Fold = %q, %v, %v", got, done, err)
	}
	again, err := ParseTemplate(got)
	if err != nil {
		t.Fatal(err)
	}
	s, err := again.Eval(env())
	if err != nil {
		t.Fatal(err)
	}
	if want := "${{ needs.build.result }}' success"; s != want {
		t.Errorf("after fold and eval: %q, want %q", s, want)
	}
}

func TestStringRoundTrip(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"a.b == 'x' && (c || !d)",
		"!(a && b) || format('{0}', 'it''s')",
		"(a || b) && c",
		"a < 1 == true",
	} {
		n, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		s := String(n)
		m, err := Parse(s)
		if err != nil {
			t.Fatalf("String(%q) = %q does not parse: %v", src, s, err)
		}
		if String(m) != s {
			t.Errorf("String is not stable: %q -> %q -> %q", src, s, String(m))
		}
		if s != src {
			t.Errorf("String(%q) = %q", src, s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a.b == 'c'", "format('{0}', x)", "!(a || b) && c", "${{ a }} b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := Parse(s); err == nil {
			if _, err := Parse(String(n)); err != nil {
				t.Fatalf("String(Parse(%q)) = %q does not parse: %v", s, String(n), err)
			}
			_, _ = Eval(n, env())
		}
		if tp, err := ParseTemplate(s); err == nil {
			_, _ = tp.Eval(env())
		}
	})
}
