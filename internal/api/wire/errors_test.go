package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// docRow is one row of the table of errors in docs/api.md.
type docRow struct {
	status int
	code   Code
	when   string
}

// docErrors reads the table of errors of docs/api.md: the rows after its
// "| status | code | when |" header, up to the first line that is not a row.
func docErrors(t *testing.T) []docRow {
	t.Helper()
	data, err := os.ReadFile("../../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == "| status | code | when |" {
			start = i + 2 // after the header and its |---| line
			break
		}
	}
	if start < 0 {
		t.Fatal("docs/api.md has no table of errors (| status | code | when |)")
	}
	var rows []docRow
	for _, l := range lines[start:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("docs/api.md: error row %q has %d cells, want 3", l, len(cells))
		}
		status, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			t.Fatalf("docs/api.md: error row %q: status: %v", l, err)
		}
		code := strings.TrimSpace(cells[1])
		if !strings.HasPrefix(code, "`") || !strings.HasSuffix(code, "`") {
			t.Fatalf("docs/api.md: error row %q: the code is not in backquotes", l)
		}
		rows = append(rows, docRow{status, Code(strings.Trim(code, "`")), strings.TrimSpace(cells[2])})
	}
	return rows
}

// TestDocListsTheCatalogue checks docs/api.md against ErrorCodes both ways:
// every code of the catalogue has its row, with its status and description,
// in the catalogue's order, and the table has no other row.
func TestDocListsTheCatalogue(t *testing.T) {
	t.Parallel()
	doc := docErrors(t)
	inDoc := map[Code]docRow{}
	for _, r := range doc {
		if _, dup := inDoc[r.code]; dup {
			t.Errorf("docs/api.md lists %s twice", r.code)
		}
		inDoc[r.code] = r
	}
	inCat := map[Code]bool{}
	for _, e := range ErrorCodes {
		inCat[e.Code] = true
		r, ok := inDoc[e.Code]
		if !ok {
			t.Errorf("docs/api.md does not list %s (%d: %s)", e.Code, e.Status, e.When)
			continue
		}
		if r.status != e.Status || r.when != e.When {
			t.Errorf("docs/api.md: %s is | %d | %s |, the catalogue says | %d | %s |", e.Code, r.status, r.when, e.Status, e.When)
		}
	}
	for _, r := range doc {
		if !inCat[r.code] {
			t.Errorf("docs/api.md lists %s, which is not in ErrorCodes", r.code)
		}
	}
	if len(doc) == len(ErrorCodes) {
		for i, r := range doc {
			if r.code != ErrorCodes[i].Code {
				t.Errorf("docs/api.md row %d is %s, the catalogue's is %s: keep the same order", i+1, r.code, ErrorCodes[i].Code)
				break
			}
		}
	}
}

// TestCatalogueHasEveryCode parses errors.go and checks that every constant
// of type Code has exactly one entry in ErrorCodes, with an error status and
// a description.
func TestCatalogueHasEveryCode(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []Code
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("a Code constant is not a string literal: %#v", v)
				}
				c, _ := strconv.Unquote(lit.Value)
				consts = append(consts, Code(c))
			}
		}
	}
	if len(consts) == 0 {
		t.Fatal("found no constant of type Code in errors.go")
	}
	count := map[Code]int{}
	for _, e := range ErrorCodes {
		count[e.Code]++
		if e.Status < 400 || e.Status > 599 || http.StatusText(e.Status) == "" {
			t.Errorf("%s: status %d is not an HTTP error status", e.Code, e.Status)
		}
		if e.When == "" {
			t.Errorf("%s: no description", e.Code)
		}
		if e.Code.Status() != e.Status {
			t.Errorf("%s.Status() = %d, want %d", e.Code, e.Code.Status(), e.Status)
		}
	}
	for _, c := range consts {
		if count[c] != 1 {
			t.Errorf("constant %s is in ErrorCodes %d times, want once", c, count[c])
		}
	}
	if len(consts) != len(ErrorCodes) {
		t.Errorf("%d Code constants, %d catalogue entries", len(consts), len(ErrorCodes))
	}
	if got := Code("no_such_code").Status(); got != http.StatusInternalServerError {
		t.Errorf("Status of an unknown code = %d, want 500", got)
	}
}
