package mutation

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const list = `# a comment

name: one
file: a.go
find: if x > 0 {\n\treturn 1
replace: if false {\n\treturn 1
package: ./p
run: ^TestA$

name: two
file: b.go
find: return x
replace:
package: ./p
run: ^(TestB|TestC)$
`

func TestParse(t *testing.T) {
	muts, err := Parse(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(muts) != 2 || muts[0].Find != "if x > 0 {\n\treturn 1" || muts[0].Replace != "if false {\n\treturn 1" ||
		muts[1].Replace != "" || muts[1].Run != "^(TestB|TestC)$" || muts[1].Line != 10 {
		t.Fatalf("parsed %+v", muts)
	}
	for _, tc := range []struct{ in, want string }{
		{"name: x\nfile: f\nfind: a\nreplace: b\npackage: ./p\n", `has no run`},
		{"name: x\nname: y\n", `name given twice`},
		{"name: x\nfiles: f\n", `unknown key "files"`},
		{"name: x\nfile: f\nfind: a\nreplace: a\npackage: ./p\nrun: T\n", `replaces its text with itself`},
		{"name: x\nfile: f\nfind: a\nreplace: b\npackage: ./p\nrun: (\n", `run: error parsing regexp`},
		{"just words\n", `want key: value`},
	} {
		if _, err := Parse(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// module writes a module with a guard and its test, and returns its root.
func module(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":      "module example.com/m\n\ngo 1.22\n",
		"p/p.go":      "package p\n\n// Allow refuses negative numbers.\nfunc Allow(x int) bool {\n\tif x < 0 {\n\t\treturn false\n\t}\n\treturn true\n}\n\n// Unused is not tested.\nfunc Unused() int { return 1 }\n",
		"p/p_test.go": "package p\n\nimport \"testing\"\n\nfunc TestAllow(t *testing.T) {\n\tif Allow(-1) {\n\t\tt.Fatal(\"-1 allowed\")\n\t}\n}\n",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRunKillsSurvivesAndRefuses runs real mutants of a small module: one
// its test kills, one it does not notice, one that does not build, one
// whose text is not there; the module's file is never changed.
func TestRunKillsSurvivesAndRefuses(t *testing.T) {
	dir := module(t)
	before, _ := os.ReadFile(filepath.Join(dir, "p/p.go"))
	ctx := context.Background()
	base := Mutation{File: "p/p.go", Package: "./p", Run: "^TestAllow$"}

	m := base
	m.Name, m.Find, m.Replace = "guard", "if x < 0 {", "if false {"
	if r := Run(ctx, dir, m, time.Minute); r.Err != nil || !r.Killed || len(r.KilledBy) != 1 || r.KilledBy[0] != "TestAllow" {
		t.Errorf("guard removed: %+v", r)
	}
	m.Name, m.Find, m.Replace = "untested", "return 1 }", "return 2 }"
	if r := Run(ctx, dir, m, time.Minute); r.Err != nil || r.Killed {
		t.Errorf("untested change: %+v, want a survivor", r)
	}
	m.Name, m.Find, m.Replace = "broken", "return true\n}", "return 7\n}"
	if r := Run(ctx, dir, m, time.Minute); !errors.Is(r.Err, ErrNotBuilt) || r.Killed {
		t.Errorf("mutant that does not build: %+v", r)
	}
	m.Name, m.Find = "gone", "if x <= 0 {"
	if r := Run(ctx, dir, m, time.Minute); r.Err == nil || !strings.Contains(r.Err.Error(), "does not contain") {
		t.Errorf("text not found: %+v", r)
	}
	m.Name, m.Find, m.Replace, m.Run = "no test", "if x < 0 {", "if false {", "^TestNothing$"
	if r := Run(ctx, dir, m, time.Minute); r.Err == nil || !strings.Contains(r.Err.Error(), "matches no test") {
		t.Errorf("pattern matching no test: %+v", r)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "p/p.go")); string(after) != string(before) {
		t.Error("the module's file was changed")
	}
}
