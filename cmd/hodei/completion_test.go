package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/server"
)

// TestMain lets the completion scripts run this test binary as "hodei"
// (HODEI_TEST_AS_HODEI=1): they call "hodei completion run-ids".
func TestMain(m *testing.M) {
	if os.Getenv("HODEI_TEST_AS_HODEI") == "1" {
		os.Exit(mainArgs(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// hodeiOnPath puts this test binary on $PATH as "hodei", running mainArgs.
func hodeiOnPath(t *testing.T) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "hodei")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HODEI_TEST_AS_HODEI", "1")
}

// startServer starts a server with o (in a temporary data directory, its
// API on a random loopback port, its log discarded), with the CLI's saved
// credentials in a temporary file, and returns it and its API's address.
func startServer(t *testing.T, o server.Options) (*server.Server, string) {
	t.Helper()
	t.Setenv("HODEI_CREDENTIALS", filepath.Join(t.TempDir(), "credentials.json"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	o.DataDir, o.HTTPAddr, o.Logger = t.TempDir(), "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, "http://" + srv.HTTPAddr()
}

func specOf(t *testing.T, cmds []*cmdSpec, path ...string) *cmdSpec {
	t.Helper()
	s := &cmdSpec{Subs: cmds}
	for _, name := range path {
		i := slices.IndexFunc(s.Subs, func(c *cmdSpec) bool { return c.Name == name })
		if i < 0 {
			t.Fatalf("no command %q", strings.Join(path, " "))
		}
		s = s.Subs[i]
	}
	return s
}

// TestDescribeEveryCommand: every command and subcommand of the table
// describes itself (the completion scripts know it), and the description
// has its flags and arguments.
func TestDescribeEveryCommand(t *testing.T) {
	cmds := describeCommands()
	if len(cmds) != len(commands()) {
		t.Fatalf("%d commands described, %d in the table", len(cmds), len(commands()))
	}
	var check func(path string, s *cmdSpec)
	check = func(path string, s *cmdSpec) {
		if !s.Described && len(s.Subs) == 0 {
			t.Errorf("%s describes neither flags nor subcommands: it must make its flags with flags() and call parse (or runSub) first", path)
		}
		for _, c := range s.Subs {
			check(path+" "+c.Name, c)
		}
	}
	for _, c := range cmds {
		check("hodei "+c.Name, c)
	}
	runs := specOf(t, cmds, "runs")
	if !slices.ContainsFunc(runs.Flags, func(f flagSpec) bool { return f.Name == "json" && !f.Value }) ||
		!slices.ContainsFunc(runs.Flags, func(f flagSpec) bool { return f.Name == "server" && f.Value }) {
		t.Errorf("runs flags: %+v", runs.Flags)
	}
	for _, c := range []struct {
		path []string
		want []string
	}{
		{[]string{"logs"}, []string{"run", "-"}},
		{[]string{"cancel"}, []string{"run"}},
		{[]string{"validate"}, []string{"file", "..."}},
		{[]string{"ca", "issue"}, []string{"w:server,agent,client", "-"}},
		{[]string{"audit", "verify"}, nil},
		{[]string{"token", "create"}, []string{"-"}},
	} {
		if got := specOf(t, cmds, c.path...).argWords(); !slices.Equal(got, c.want) {
			t.Errorf("%v arguments %q, want %q", c.path, got, c.want)
		}
	}
	if got := specOf(t, cmds, "token").subNames(); !slices.Equal(got, []string{"create", "list", "revoke"}) {
		t.Errorf("token subcommands %q", got)
	}
	if s := specOf(t, cmds, "token", "list"); s.Summary == "" || strings.Contains(s.Summary, "\n") {
		t.Errorf("token list summary %q", s.Summary)
	}
}

// completionCase is a command line being completed (its last word is
// the one the cursor is on) and candidates it must, or must not, offer.
type completionCase struct {
	words  []string
	want   []string
	exact  bool // the candidates are exactly want
	reject []string
}

func completionCases(base string, ids []string) []completionCase {
	return []completionCase{
		{words: []string{"hodei", "ru"}, want: []string{"run", "runs"}, exact: true},
		{words: []string{"hodei", ""}, want: []string{"submit", "logs", "completion", "token", "secret"}},
		{words: []string{"hodei", "token", ""}, want: []string{"create", "list", "revoke"}, exact: true},
		{words: []string{"hodei", "token", "create", "bot", "--r"}, want: []string{"--role"}, exact: true},
		{words: []string{"hodei", "runs", "--"}, want: []string{"--json", "--server", "--state", "--limit"}, reject: []string{"--follow"}},
		{words: []string{"hodei", "submit", "x.yaml", "--fo"}, want: []string{"--follow"}},
		{words: []string{"hodei", "ca", "issue", ""}, want: []string{"server", "agent", "client"}, exact: true},
		{words: []string{"hodei", "completion", "f"}, want: []string{"fish"}, exact: true},
		// The value of --state is not an argument: the RUN comes next.
		{words: []string{"hodei", "runs", "--state", "queued", ""}, want: ids},
		{words: []string{"hodei", "runs", "--server", base, ""}, want: ids},
		{words: []string{"hodei", "logs", "--server", base, ""}, want: ids},
		{words: []string{"hodei", "cancel", ""}, want: ids}, // the server from $HODEI_SERVER
		// logs takes one RUN: its second argument (a job) is no run id.
		{words: []string{"hodei", "logs", ids[0], ""}, reject: ids},
		{words: []string{"hodei", "runs", "--server", "http://127.0.0.1:1", ""}, exact: true},
	}
}

func checkCompletions(t *testing.T, shell string, c completionCase, got []string) {
	t.Helper()
	for _, w := range c.want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: %q offers %q, lacks %q", shell, c.words, got, w)
		}
	}
	for _, w := range c.reject {
		if slices.Contains(got, w) {
			t.Errorf("%s: %q offers %q", shell, c.words, w)
		}
	}
	if c.exact && len(got) != len(c.want) {
		t.Errorf("%s: %q offers %q, want exactly %q", shell, c.words, got, c.want)
	}
}

// completionFixture starts a server with two runs, puts this binary on
// $PATH as hodei, and returns the completion cases.
func completionFixture(t *testing.T) []completionCase {
	hodeiOnPath(t)
	_, base := startServer(t, server.Options{NATSListen: "none"})
	t.Setenv("HODEI_SERVER", base)
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for range 2 {
		run, err := c.Submit(ctx, "p.yaml", []byte("name: p\njobs:\n  a:\n    steps:\n      - run: 'true'\n"), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	return completionCases(base, ids)
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	code, out, errOut := capture(t, "completion", shell)
	if code != exitOK {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errOut)
	}
	file := filepath.Join(t.TempDir(), "hodei."+shell)
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// shWords quotes words for an array of bash or zsh.
func shWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shQuote(w)
	}
	return strings.Join(q, " ")
}

// requireShell finds a shell, or skips the test when it is not installed
// and HODEI_REQUIRE_SHELLS (set by scripts/test, which installs it) is not
// set.
func requireShell(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("HODEI_REQUIRE_SHELLS") != "" {
			t.Fatalf("%s: %v", name, err)
		}
		t.Skipf("%s is not installed (scripts/test installs it)", name)
	}
	return p
}

// zshStubs replace zsh's completion builtins (compadd, _describe, _files)
// with functions that print the candidates they are given.
const zshStubs = `compdef() { : }
_describe() { shift 2; local x; for x in "${(@P)2}"; do print -r -- "${x%%:*}"; done }
compadd() { if [[ $1 == -a ]]; then print -rl -- "${(@P)2}"; return; fi; [[ $1 == -- ]] && shift; print -rl -- "$@" }
_files() { : }
`

// TestCompletionScripts runs each generated script in its shell: bash and
// zsh source it and call its function as their completion does (zsh with
// its builtins stubbed, and the candidates filtered by the word's prefix
// as compadd would); fish sources it and lists the completions of each
// line (complete -C).
func TestCompletionScripts(t *testing.T) {
	cases := completionFixture(t)
	for _, sh := range []struct {
		name string
		args func(script string, words []string) []string
	}{
		{"bash", func(script string, words []string) []string {
			return []string{"--norc", "--noprofile", "-c", "source " + shQuote(script) + "\nCOMP_WORDS=(" + shWords(words) + ")\nCOMP_CWORD=" +
				strconv.Itoa(len(words)-1) + "\n_hodei\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"}
		}},
		{"zsh", func(script string, words []string) []string {
			return []string{"-f", "-c", zshStubs + "source " + shQuote(script) + "\nwords=(" + shWords(words) + ")\nCURRENT=" + strconv.Itoa(len(words)) +
				"\n_hodei | while read -r x; do [[ $x == ${words[CURRENT]}* ]] && print -r -- $x; done\ntrue\n"}
		}},
		{"fish", func(script string, words []string) []string {
			return []string{"--no-config", "-c", "source " + fishQuote(script) + "; complete -C " + fishQuote(strings.Join(words, " "))}
		}},
	} {
		t.Run(sh.name, func(t *testing.T) {
			shell := requireShell(t, sh.name)
			script := completionScript(t, sh.name)
			for _, c := range cases {
				cmd := exec.Command(shell, sh.args(script, c.words)...)
				cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", sh.name, err, out)
				}
				var got []string
				for _, l := range lines(string(out)) {
					cand, _, _ := strings.Cut(l, "\t") // fish: "candidate<TAB>description"
					got = append(got, cand)
				}
				checkCompletions(t, sh.name, c, got)
			}
		})
	}
}
