// Package mutation checks that the tests guarding Hodei's security and
// durability claims can fail. A list kept in the repository
// (scripts/mutations.txt) names each guard: a file, an exact text in it, the
// text that forces the guard's condition, and the test that must fail when
// it is so changed. Run applies each mutation in turn with `go test
// -overlay` (the tree is never written), runs only the named test, and
// reports a mutant the test does not kill. The format and how to add an
// entry are in docs/testing.md.
package mutation

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Mutation is one entry of the list.
type Mutation struct {
	Name    string // what the guard is, in a few words
	File    string // path from the repository root
	Find    string // exact text, found once in File
	Replace string // what it becomes
	Package string // the package of the test, as go test takes it (./internal/x)
	Run     string // the -run pattern naming the test(s) that must fail
	Line    int    // where the entry starts in the list
}

// Parse reads a list: entries separated by blank lines, each a set of
// "key: value" lines (name, file, find, replace, package, run); lines
// starting with # are comments. A value is taken as written after ": ",
// with \n and \t standing for a newline and a tab (and \\ for a
// backslash), so that a guard spanning lines can be matched.
func Parse(r io.Reader) ([]Mutation, error) {
	var (
		out  []Mutation
		cur  *Mutation
		seen map[string]bool
		n    int
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		for _, k := range []string{"name", "file", "find", "replace", "package", "run"} {
			if !seen[k] {
				return fmt.Errorf("line %d: entry %q has no %s", cur.Line, cur.Name, k)
			}
		}
		if cur.Find == cur.Replace {
			return fmt.Errorf("line %d: entry %q replaces its text with itself", cur.Line, cur.Name)
		}
		if _, err := regexp.Compile(cur.Run); err != nil {
			return fmt.Errorf("line %d: entry %q: run: %w", cur.Line, cur.Name, err)
		}
		out = append(out, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if trimmed == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want key: value, got %q", n, line)
		}
		val = unescape(strings.TrimPrefix(val, " "))
		if cur == nil {
			cur = &Mutation{Line: n}
			seen = map[string]bool{}
		}
		if seen[key] {
			return nil, fmt.Errorf("line %d: %s given twice", n, key)
		}
		seen[key] = true
		dst, ok := map[string]*string{"name": &cur.Name, "file": &cur.File, "find": &cur.Find,
			"replace": &cur.Replace, "package": &cur.Package, "run": &cur.Run}[key]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown key %q (want name, file, find, replace, package or run)", n, key)
		}
		*dst = val
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Apply returns the file's content with the mutation made. The text must
// occur exactly once: an entry whose guard was rewritten must be rewritten
// too, not silently skipped.
func (m Mutation) Apply(root string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(root, m.File))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	switch c := bytes.Count(src, []byte(m.Find)); c {
	case 1:
	case 0:
		return nil, fmt.Errorf("%s: %s does not contain %q", m.Name, m.File, m.Find)
	default:
		return nil, fmt.Errorf("%s: %s contains %q %d times, want once", m.Name, m.File, m.Find, c)
	}
	return bytes.Replace(src, []byte(m.Find), []byte(m.Replace), 1), nil
}

// Result is what running one mutant gave.
type Result struct {
	Mutation Mutation
	Killed   bool
	KilledBy []string // the tests that failed
	Took     time.Duration
	Output   string // go test's output, kept when the mutant survived or did not build
	Err      error  // the mutant could not be run (it did not build, the text was not found)
}

// ErrNotBuilt means the mutated package did not compile: the entry is wrong,
// not killed.
var ErrNotBuilt = errors.New("mutant does not build")

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// Run applies m in an overlay of the tree at root and runs its test.
func Run(ctx context.Context, root string, m Mutation, timeout time.Duration) (res Result) {
	res.Mutation = m
	start := time.Now()
	defer func() { res.Took = time.Since(start) }()
	src, err := m.Apply(root)
	if err != nil {
		res.Err = err
		return res
	}
	dir, err := os.MkdirTemp("", "hodei-mutant-")
	if err != nil {
		res.Err = err
		return res
	}
	defer os.RemoveAll(dir)
	abs, err := filepath.Abs(filepath.Join(root, m.File))
	if err != nil {
		res.Err = err
		return res
	}
	mutant := filepath.Join(dir, filepath.Base(m.File))
	if err := os.WriteFile(mutant, src, 0o644); err != nil {
		res.Err = err
		return res
	}
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {abs: mutant}})
	ovPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovPath, overlay, 0o644); err != nil {
		res.Err = err
		return res
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-overlay="+ovPath, "-count=1",
		"-timeout="+timeout.String(), "-run="+m.Run, m.Package)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	text := out.String()
	var exit *exec.ExitError
	switch {
	case runErr == nil:
		res.Output = text
		if strings.Contains(text, "no tests to run") {
			res.Err = fmt.Errorf("%s: -run %q matches no test in %s", m.Name, m.Run, m.Package)
		}
	case strings.Contains(text, "[build failed]") || strings.Contains(text, "[setup failed]"):
		res.Output = text
		res.Err = fmt.Errorf("%s: %w", m.Name, ErrNotBuilt)
	case errors.As(runErr, &exit):
		res.Killed = true
		for _, f := range failLine.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(f[1], "/") { // subtests fail with their parent
				res.KilledBy = append(res.KilledBy, f[1])
			}
		}
		if len(res.KilledBy) == 0 {
			// A panic or a timeout ends the binary without a --- FAIL line.
			res.KilledBy = []string{"(the test binary failed: " + firstLine(text, "panic:", "FAIL") + ")"}
		}
	default:
		res.Err = fmt.Errorf("%s: go test: %w", m.Name, runErr)
	}
	return res
}

func firstLine(text string, prefixes ...string) string {
	for _, l := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(strings.TrimSpace(l), p) {
				return strings.TrimSpace(l)
			}
		}
	}
	return "no output"
}
