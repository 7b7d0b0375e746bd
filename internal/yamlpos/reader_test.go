package yamlpos

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// read decodes src with a Reader and hands its root to walk; it returns
// the Reader's errors, one per line.
func read(t *testing.T, src string, walk func(r *Reader, root *yaml.Node)) string {
	t.Helper()
	r := NewReader("f.yaml", []byte(src))
	if root := r.Decode([]byte(src), "say something", "one is enough"); root != nil {
		walk(r, root)
	}
	err := r.Err()
	if err == nil {
		return ""
	}
	if _, ok := err.(ErrorList); !ok {
		t.Fatalf("Err is %T, want ErrorList", err)
	}
	return err.Error()
}

func TestDecode(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"empty", "", "f.yaml: the file is empty: say something"},
		{"only a comment", "# nothing\n", "f.yaml: the file is empty: say something"},
		{"second document", "a: 1\n---\nb: 2\n", "f.yaml:3:1: found a second YAML document: one is enough"},
		{"syntax error with a line", "a:\n  b: [\n", "f.yaml:2: invalid YAML: did not find expected node content"},
		{"syntax error on the first line", "a: b: c\n", "f.yaml:1: invalid YAML: mapping values are not allowed in this context"},
		{"control character placed", "a: 1\nb: x\x01y\n", "f.yaml:2:5: invalid YAML: control characters are not allowed"},
		{"unknown anchor placed", "a: 1\nb: *nope\n", "f.yaml:2:4: invalid YAML: unknown anchor 'nope' referenced"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := read(t, tt.src, func(*Reader, *yaml.Node) { t.Fatal("decoded") })
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestFields(t *testing.T) {
	src := `top:
  naem: x
  name: y
  name: z
  <<: {a: 1}
  [k]: v
  Timeout: 5m
`
	got := read(t, src, func(r *Reader, root *yaml.Node) {
		top := r.Fields(root, "", []string{"top"})
		m, _ := r.Map(top[0].Val, "top", "a map")
		var names []string
		for _, e := range r.Fields(m, "top", []string{"name", "timeout"}) {
			names = append(names, e.Name)
		}
		if strings.Join(names, ",") != "name" {
			t.Errorf("fields kept: %v", names)
		}
	})
	want := strings.Join([]string{
		`f.yaml:2:3: top.naem: unknown field "naem" (did you mean "name"?); allowed fields: name, timeout`,
		`f.yaml:4:3: top.name: duplicate key "name" (first defined at line 3)`,
		`f.yaml:5:8: top.a: unknown field "a"; allowed fields: name, timeout`,
		`f.yaml:6:3: top: keys must be names, got a list`,
		`f.yaml:7:3: top.Timeout: unknown field "Timeout" (did you mean "timeout"?); allowed fields: name, timeout`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestAliases checks that values are read through aliases and that errors
// are placed where the alias is used.
func TestAliases(t *testing.T) {
	src := `base: &b {n: 3, on: true, d: 90s, s: text, f: 1.5}
use: *b
bad: &x hello
wrong: *x
`
	got := read(t, src, func(r *Reader, root *yaml.Node) {
		e := r.Entries(root, "")
		m, ok := r.Map(e[1].Val, "use", "a map")
		if !ok {
			t.Fatal("alias of a map is not a map")
		}
		f := r.Fields(m, "use", []string{"n", "on", "d", "s", "f"})
		n, _ := r.IntIn(f[0].Val, "use.n", 0, 5)
		on, _ := r.Bool(f[1].Val, "use.on")
		d, _ := r.Duration(f[2].Val, "use.d")
		s, _ := r.Text(f[3].Val, "use.s")
		x, _ := r.Number(f[4].Val, "use.f", 0)
		if n != 3 || !on || d != 90*time.Second || s != "text" || x != 1.5 {
			t.Errorf("read through the alias: %d %v %v %q %v", n, on, d, s, x)
		}
		r.Map(e[3].Val, "wrong", "a map with n")
		r.IntIn(e[3].Val, "wrong", 0, 5)
	})
	want := "f.yaml:4:8: wrong: must be a map with n, got a string\n" +
		`f.yaml:4:8: wrong: must be an integer from 0 to 5, got "hello"`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestScalars(t *testing.T) {
	src := "i: 7\nf: 2.5\nb: yes\nd: 10\nz: 0s\nn: ~\ne: ' '\nx: -1\n"
	got := read(t, src, func(r *Reader, root *yaml.Node) {
		e := r.Entries(root, "")
		r.IntIn(e[0].Val, "i", 0, 5)
		r.IntIn(e[1].Val, "f", 0, 5)
		r.Bool(e[2].Val, "b")
		r.Duration(e[3].Val, "d")
		r.Duration(e[4].Val, "z")
		r.Text(e[5].Val, "n")
		r.Text(e[6].Val, "e")
		r.Number(e[7].Val, "x", 0)
		if s, ok := r.Scalar(e[1].Val, "f"); !ok || s != "2.5" {
			t.Errorf("Scalar = %q, %v", s, ok)
		}
	})
	want := strings.Join([]string{
		"f.yaml:1:4: i: must be an integer from 0 to 5, got 7",
		"f.yaml:2:4: f: must be an integer from 0 to 5, got 2.5",
		`f.yaml:3:4: b: must be true or false, got "yes"`,
		"f.yaml:4:4: d: must be a duration such as 30s, 10m or 1h30m, got 10",
		"f.yaml:5:4: z: must be greater than zero, got 0s",
		"f.yaml:6:4: n: must be a string, got null",
		"f.yaml:7:4: e: must not be empty",
		"f.yaml:8:4: x: must be a number, 0 or more, got -1",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestErrorPastTheEnd(t *testing.T) {
	r := NewReader("f.yaml", []byte("a: 1\n"))
	r.ErrorAt(9, 4, "a", "x")
	if got := r.Err().Error(); got != "f.yaml:2: a: x" {
		t.Errorf("got %q", got)
	}
}

func TestSuggest(t *testing.T) {
	allowed := []string{"runs-on", "timeout", "image", "idle_timeout"}
	for s, want := range map[string]string{
		"runs_on": "runs-on", "RUNS-ON": "runs-on", "timout": "timeout", "imgae": "image",
		"idle-timeout": "idle_timeout", "on": "", "x": "", strings.Repeat("a", 100): "",
	} {
		if got := Suggest(s, allowed); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", s, got, want)
		}
	}
	if got := DidYouMean("imgae", allowed); got != ` (did you mean "image"?)` {
		t.Errorf("DidYouMean = %q", got)
	}
	if DidYouMean("zzz", allowed) != "" {
		t.Error("DidYouMean suggested for zzz")
	}
}

func TestAsErrorList(t *testing.T) {
	one := &Error{File: "f", Line: 1, Msg: "m"}
	list := ErrorList{one, {File: "f", Line: 2, Msg: "n"}}
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"list", list, 2},
		{"wrapped list", fmt.Errorf("submit: %w", list), 2},
		{"pointer to list", fmt.Errorf("x: %w", &list), 2},
		{"one error", fmt.Errorf("x: %w", one), 1},
		{"other", errors.New("disk full"), -1},
		{"nil", nil, -1},
	} {
		got, ok := AsErrorList(tt.err)
		if ok != (tt.want >= 0) || ok && len(got) != tt.want {
			t.Errorf("%s: AsErrorList = %v, %v", tt.name, got, ok)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"name", "name", 0},
		{"naem", "name", 1}, {"ab", "ba", 1}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	} {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestMergeKeys: merged pairs come first, the map's own keys and earlier
// maps win, and a problem in a merged pair is placed where it is defined.
func TestMergeKeys(t *testing.T) {
	src := `base: &base {a: 1, b: 2, bad: [x]}
more: &more {b: 3, c: 4}
m:
  <<: [*base, *more]
  a: own
n:
  <<: 3
o:
  <<: [*base, 5]
`
	var got []string
	msgs := read(t, src, func(r *Reader, root *yaml.Node) {
		for _, e := range r.Entries(root, "") {
			if e.Name != "m" && e.Name != "n" && e.Name != "o" {
				continue
			}
			for _, f := range r.Entries(Deref(e.Val), e.Name) {
				if e.Name == "m" {
					got = append(got, f.Name+"="+Deref(f.Val).Value)
				}
				if f.Name == "bad" && e.Name == "m" {
					r.Errorf(f.Val, e.Name+".bad", "not a list")
				}
			}
		}
	})
	if strings.Join(got, " ") != "b=2 bad= c=4 a=own" {
		t.Errorf("entries of m = %v", got)
	}
	want := strings.Join([]string{
		`f.yaml:1:31: m.bad: not a list`,
		`f.yaml:7:7: n: a merge key (<<) takes a map or a list of maps (like <<: *defaults), got an integer`,
		`f.yaml:9:15: o: a merge key (<<) takes a map or a list of maps (like <<: [*defaults, *linux]), got an integer in the list`,
	}, "\n")
	if msgs != want {
		t.Errorf("got\n%s\nwant\n%s", msgs, want)
	}
}
