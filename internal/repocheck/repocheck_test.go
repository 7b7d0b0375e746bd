package repocheck

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/mutation"
)

// root is the repository's root: the directory of go.mod above this one.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(data, []byte("module github.com/hodei-ci/hodei\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod of github.com/hodei-ci/hodei above the test's directory")
		}
		dir = parent
	}
}

// testFuncs returns the test functions (func TestX() declared in any
// _test.go file of dir, whatever its build tags).
func testFuncs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test\w*)\(`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllSubmatch(data, -1) {
			out[string(m[1])] = true
		}
	}
	return out
}

// paragraph is a block of a Markdown file between blank lines, outside
// code fences.
type paragraph struct {
	file string
	line int
	text string
}

func paragraphs(t *testing.T, path, name string) []paragraph {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out   []paragraph
		cur   []string
		start int
		fence bool
	)
	flush := func() {
		if len(cur) > 0 {
			out = append(out, paragraph{file: name, line: start, text: strings.Join(cur, "\n")})
		}
		cur = nil
	}
	for i, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") {
			flush()
			fence = !fence
			continue
		}
		if fence {
			continue
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			flush()
			continue
		}
		if len(cur) == 0 {
			start = i + 1
		}
		cur = append(cur, l)
	}
	flush()
	return out
}

var (
	provedBy   = regexp.MustCompile("(?:^|[^`])Proved by:([^\n]*(?:\n[^\n]+)*)") // not `Proved by:` quoted
	provedItem = regexp.MustCompile(`((?:Test\w+)(?:,\s*Test\w+)*)\s*\(([\w./-]+)\)`)
	claimWord  = regexp.MustCompile(`(?i)\b(refus(e|es|ed|ing)|isolat(ed|ion|es)|mask(s|ed|ing)?|durabl[ey])\b`)
)

// docFiles are the Markdown files whose "Proved by:" lines are checked.
func docFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, filepath.Join(dir, "README.md"))
}

// TestProvedByNamesTestsThatExist: each "Proved by:" line of the docs
// names tests as TestA, TestB (internal/pkg); each such test function must
// exist in that package's test files.
func TestProvedByNamesTestsThatExist(t *testing.T) {
	dir := root(t)
	funcs := map[string]map[string]bool{}
	n := 0
	for _, f := range docFiles(t, dir) {
		rel, _ := filepath.Rel(dir, f)
		for _, p := range paragraphs(t, f, rel) {
			for _, m := range provedBy.FindAllStringSubmatch(p.text, -1) {
				items := provedItem.FindAllStringSubmatch(m[1], -1)
				if len(items) == 0 {
					t.Errorf("%s:%d: %q names no test as TestX (internal/pkg)", p.file, p.line, strings.TrimSpace(m[0]))
				}
				for _, it := range items {
					pkg := it[2]
					if funcs[pkg] == nil {
						if st, err := os.Stat(filepath.Join(dir, pkg)); err != nil || !st.IsDir() {
							t.Errorf("%s:%d: Proved by names the package %s, which does not exist", p.file, p.line, pkg)
							funcs[pkg] = map[string]bool{}
							continue
						}
						funcs[pkg] = testFuncs(t, filepath.Join(dir, pkg))
					}
					for _, name := range strings.Split(it[1], ",") {
						name = strings.TrimSpace(name)
						n++
						if !funcs[pkg][name] {
							t.Errorf("%s:%d: Proved by names %s in %s: no such test function", p.file, p.line, name, pkg)
						}
					}
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("the docs name %d tests in Proved by lines; the claims of docs/security.md and docs/workers.md alone need more", n)
	}
}

// TestClaimsNameTheirTests: in docs/security.md, docs/workers.md and
// README.md, a paragraph that says something is refused, isolated, masked
// or durable has a "Proved by:" line (or is followed by a paragraph that
// starts with one), or says that it is not proved by a test, and why.
func TestClaimsNameTheirTests(t *testing.T) {
	dir := root(t)
	for _, name := range []string{"docs/security.md", "docs/workers.md", "README.md"} {
		ps := paragraphs(t, filepath.Join(dir, name), name)
		for i, p := range ps {
			if strings.HasPrefix(strings.TrimSpace(p.text), "|") || linkList(p.text) {
				continue // a table (its claims are proved in the paragraph after it), or an index of links
			}
			proved := func(text string) bool {
				return strings.Contains(text, "Proved by:") || strings.Contains(strings.ToLower(text), "not proved by a test")
			}
			// A list or a code block's claims may be proved in the
			// paragraph that follows, when that starts with Proved by.
			next := i+1 < len(ps) && strings.HasPrefix(strings.TrimSpace(ps[i+1].text), "Proved by:")
			if w := claimWord.FindString(p.text); w != "" && !proved(p.text) && !next {
				t.Errorf("%s:%d: a paragraph says %q but names no test (add a line \"Proved by: TestX (internal/pkg)\"):\n%s", p.file, p.line, w, p.text)
			}
		}
	}
}

// linkList reports whether every line of a paragraph is a bullet that
// starts with a Markdown link.
func linkList(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "- [") {
			return false
		}
	}
	return true
}

// TestMutationListMatchesTheCode: every entry of scripts/mutations.txt
// finds its text once in its file and names a package whose test files
// declare the tests its -run pattern names (the mutants themselves are run
// by scripts/test: go run ./internal/mutation/cmd).
func TestMutationListMatchesTheCode(t *testing.T) {
	dir := root(t)
	f, err := os.Open(filepath.Join(dir, "scripts", "mutations.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	muts, err := mutation.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(muts) < 20 {
		t.Fatalf("%d mutations in the list", len(muts))
	}
	names := map[string]bool{}
	for _, m := range muts {
		if names[m.Name] {
			t.Errorf("line %d: %q listed twice", m.Line, m.Name)
		}
		names[m.Name] = true
		if _, err := m.Apply(dir); err != nil {
			t.Errorf("line %d: %v", m.Line, err)
		}
		re := regexp.MustCompile(m.Run)
		funcs := testFuncs(t, filepath.Join(dir, m.Package))
		matched := 0
		for fn := range funcs {
			if re.MatchString(fn) {
				matched++
			}
		}
		if matched == 0 {
			t.Errorf("line %d: %q: -run %s matches no test of %s", m.Line, m.Name, m.Run, m.Package)
		}
	}
}

// allowedRoots are the first segments of absolute paths a file may name:
// the system's (what every Linux machine has, and what the code runs
// against), paths inside Hodei's own containers and images, and the roots
// of URL paths of the APIs Hodei serves or calls.
var allowedRoots = []string{
	// system
	"bin", "sbin", "usr", "lib", "lib64", "etc", "proc", "sys", "dev", "tmp", "var", "run",
	// inside a worker's container or pod, or the agent image
	"hodei", "workspace", "opt/hodei",
	// URL paths
	"api", "v1", ".well-known", "oauth", "login", "device", "metadata", "healthz", "readyz", "metrics", "ui",
	// URL paths of the forges' status APIs (under their API roots)
	"repos", "projects", "statuses",
	// paths that exist nowhere, for tests of a missing file
	"no/such", "nonexistent",
}

// allowedPaths are other absolute paths named on purpose, by file.
var allowedPaths = map[string][]string{
	".gitignore":                           {"/hodei-data/", "/.cache/"}, // patterns anchored at the repository root
	"internal/api/middleware_test.go":      {"/boom/"},
	"internal/api/secrets_test.go":         {"/DB_PASSWORD/reveal", "/DB_PASSWORD/rotate", "/MISSING/rotate", "/TOKEN/reveal"},
	"internal/api/auth_test.go":            {"/audit/audit.jsonl", "/jobs/greet"},
	"internal/api/api_test.go":             {"/jobs/"},
	"internal/api/approvals_test.go":       {"/jobs/"},
	"internal/cli/cli_test.go":             {"/from/env"},   // a value read back, never opened
	"internal/cgroup/cgroup_test.go":       {"/docker/abc"}, // a cgroup's path in its hierarchy
	"internal/store/sqlite/sqlite.go":      {"/dir/hodei.db"},
	"internal/tracing/otlp.go":             {"/opentelemetry.proto.collector.trace.v1.TraceService/Export"}, // a gRPC method's path
	"internal/server/repos_test.go":        {"/o/app.git", "/o/lib.git"},                                    // URL paths on the test's git server
	"internal/repos/repos_test.go":         {"/o/app.git"},                                                  // a URL path on the test's fake forge
	"internal/agent/gitcache_test.go":      {"/o/app.git"},                                                  // a URL path on the test's git server
	"internal/repocheck/repocheck_test.go": nil,
}

var absPath = regexp.MustCompile("(?:^|[\\s\"'`(=:,\\[])(/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]*)+)")

// TestNoPathOutsideTheRepository: no file of the project names an absolute
// path of a particular machine (a home, a shared folder, a checkout): a
// clone must run anywhere. Absolute paths are allowed under the system's
// directories (/bin, /usr, /etc, /proc, /sys, /dev, /tmp, /var, /run, ...),
// inside Hodei's containers (/hodei, /workspace, /opt/hodei), as URL paths,
// and as listed in allowedPaths.
func TestNoPathOutsideTheRepository(t *testing.T) {
	dir := root(t)
	checked := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "bin", "hodei-data", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || d.Name() == ".git" || strings.HasSuffix(p, ".csv") || strings.HasSuffix(p, ".sum") {
			return nil
		}
		if _, listed := allowedPaths[rel]; listed && allowedPaths[rel] == nil {
			return nil // this file names the paths it refuses
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data, 0) >= 0 {
			return nil // binary
		}
		checked++
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for line := 1; sc.Scan(); line++ {
			for _, m := range absPath.FindAllStringSubmatch(sc.Text(), -1) {
				if !allowedPath(rel, m[1]) {
					t.Errorf("%s:%d: names the absolute path %s, outside the repository", rel, line, m[1])
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d files", checked)
	}
}

func allowedPath(file, path string) bool {
	for _, r := range allowedRoots {
		if strings.HasPrefix(path, "/"+r+"/") || path == "/"+r {
			return true
		}
	}
	return slices.ContainsFunc(allowedPaths[file], func(a string) bool { return strings.HasPrefix(path, a) })
}

// TestTheCheckFindsAPathOutside keeps TestNoPathOutsideTheRepository able
// to fail: the paths it must refuse are refused.
func TestTheCheckFindsAPathOutside(t *testing.T) {
	for _, line := range []string{
		`traceDir = "/data/traces/alibaba-gpu-2023/"`,
		"read `/home/ci/trace.csv` first",
		"hodei sim --alibaba-nodes /srv/data/nodes.csv",
		`os.ReadFile("/opt/tools/x")`,
	} {
		m := absPath.FindStringSubmatch(line)
		if m == nil || allowedPath("x.go", m[1]) {
			t.Errorf("%q: not refused (match %v)", line, m)
		}
	}
	for _, line := range []string{`exec.Command("/bin/sh", "-c")`, "see `/proc/self/stat`", `"/api/v1/runs/"`, "cp /hodei /opt/hodei/hodei"} {
		for _, m := range absPath.FindAllStringSubmatch(line, -1) {
			if !allowedPath("x.go", m[1]) {
				t.Errorf("%q: %s refused", line, m[1])
			}
		}
	}
}

// TestTheDocChecksCanFail keeps the two checks above able to fail: the
// format parses into names and packages, a name that is not a test is not
// found, and claim words are recognised.
func TestTheDocChecksCanFail(t *testing.T) {
	m := provedBy.FindStringSubmatch("It is refused. Proved by: TestA, TestB (internal/x); TestC (internal/y/z).\nmore")
	if m == nil {
		t.Fatal("Proved by line not found")
	}
	var got []string
	for _, it := range provedItem.FindAllStringSubmatch(m[1], -1) {
		got = append(got, it[2]+":"+strings.ReplaceAll(it[1], " ", ""))
	}
	if want := []string{"internal/x:TestA,TestB", "internal/y/z:TestC"}; !slices.Equal(got, want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	funcs := testFuncs(t, filepath.Join(root(t), "internal", "auth"))
	if !funcs["TestTokensRegistry"] || funcs["TestNoSuchTest"] || funcs["verify"] {
		t.Errorf("test functions of internal/auth: %v", funcs)
	}
	for _, s := range []string{"is refused", "refuses it", "tenant isolation", "masked", "a durable store"} {
		if !claimWord.MatchString(s) {
			t.Errorf("%q: no claim word found", s)
		}
	}
}
