package repocheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// goPackage is one directory of Go files of the module.
type goPackage struct {
	path  string // relative to the repository: internal/store/sqlite
	name  string // from the package clause (of non-test files when there are any)
	doc   bool   // some file carries a package doc comment
	decls map[string]bool
}

// goPackages parses every package of the module under internal/ and cmd/:
// its package clause, whether it has a package doc, and its declarations
// (functions "F", types "T", methods and interface methods "T.M").
func goPackages(t *testing.T, rootDir string) map[string]*goPackage {
	t.Helper()
	pkgs := map[string]*goPackage{}
	for _, top := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(rootDir, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			rel, err := filepath.Rel(rootDir, filepath.Dir(path))
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			p := pkgs[rel]
			if p == nil {
				p = &goPackage{path: rel, decls: map[string]bool{}}
				pkgs[rel] = p
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			test := strings.HasSuffix(path, "_test.go")
			name := strings.TrimSuffix(f.Name.Name, "_test")
			if !test || p.name == "" {
				p.name = name
			}
			if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package "+name+" ") || f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Command ") {
				p.doc = true
			}
			if !test {
				addDecls(f, p.decls)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return pkgs
}

func addDecls(f *ast.File, decls map[string]bool) {
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil || len(d.Recv.List) == 0 {
				decls[d.Name.Name] = true
				continue
			}
			typ := d.Recv.List[0].Type
			if s, ok := typ.(*ast.StarExpr); ok {
				typ = s.X
			}
			if g, ok := typ.(*ast.IndexExpr); ok {
				typ = g.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				decls[id.Name+"."+d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				ts, ok := s.(*ast.TypeSpec)
				if !ok {
					continue
				}
				decls[ts.Name.Name] = true
				if it, ok := ts.Type.(*ast.InterfaceType); ok {
					for _, m := range it.Methods.List {
						for _, n := range m.Names {
							decls[ts.Name.Name+"."+n.Name] = true
						}
					}
				}
			}
		}
	}
}

// section returns the lines of a Markdown file from the heading that starts
// with title to the next heading of the same level.
func section(t *testing.T, file, title string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\n"+title)
	if i < 0 {
		t.Fatalf("%s has no heading %q", file, title)
	}
	rest := s[i+1+len(title):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestEveryPackageIsDocumented: every package of the module has a package
// doc, and a row of its own in the package table of docs/architecture.md;
// the table names no package that does not exist.
func TestEveryPackageIsDocumented(t *testing.T) {
	dir := root(t)
	pkgs := goPackages(t, dir)
	table := section(t, filepath.Join(dir, "docs", "architecture.md"), "## Packages")
	rows := map[string]bool{}
	row := regexp.MustCompile("(?m)^\\| `((?:internal|cmd)/[^`]+)` \\|")
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		rows[m[1]] = true
	}
	if len(rows) == 0 {
		t.Fatal("docs/architecture.md: the package table has no rows")
	}
	var paths []string
	for p := range pkgs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if !pkgs[p].doc {
			t.Errorf("%s has no package doc (a comment \"Package %s ...\" above a package clause)", p, pkgs[p].name)
		}
		if !rows[p] {
			t.Errorf("docs/architecture.md: the package table has no row for `%s`", p)
		}
	}
	for r := range rows {
		if pkgs[r] == nil {
			t.Errorf("docs/architecture.md: the package table has a row for `%s`, which is not a package", r)
		}
	}
}

// TestJobPathNamesRealFunctions: every name of the form `pkg.F`,
// `pkg.T` or `pkg.T.M` in the section "A job's path, in function names"
// of docs/architecture.md is declared in a package of that name.
func TestJobPathNamesRealFunctions(t *testing.T) {
	dir := root(t)
	pkgs := goPackages(t, dir)
	byName := map[string][]*goPackage{}
	for _, p := range pkgs {
		byName[p.name] = append(byName[p.name], p)
	}
	text := section(t, filepath.Join(dir, "docs", "architecture.md"), "## A job's path, in function names")
	ref := regexp.MustCompile("`([a-z][a-z0-9]*)\\.([A-Za-z_]\\w*(?:\\.[A-Za-z_]\\w*)?)`")
	refs := ref.FindAllStringSubmatch(text, -1)
	if len(refs) < 20 {
		t.Fatalf("docs/architecture.md: the job's path names %d functions; it should name each stage's", len(refs))
	}
	for _, m := range refs {
		cands := byName[m[1]]
		if len(cands) == 0 {
			t.Errorf("docs/architecture.md names `%s.%s`: there is no package %s", m[1], m[2], m[1])
			continue
		}
		if !slices.ContainsFunc(cands, func(p *goPackage) bool { return p.decls[m[2]] }) {
			t.Errorf("docs/architecture.md names `%s.%s`: package %s declares no %s", m[1], m[2], m[1], m[2])
		}
	}
}
