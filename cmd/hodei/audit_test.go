package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/server"
)

// capture runs a command line and returns its exit code and output. It
// swaps os.Stdout and os.Stderr: the tests that use it do not run in
// parallel.
func capture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	var out, errb bytes.Buffer
	done := make(chan struct{}, 2)
	go func() { io.Copy(&out, outR); done <- struct{}{} }()
	go func() { io.Copy(&errb, errR); done <- struct{}{} }()
	code := mainArgs(args)
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	<-done
	<-done
	return code, out.String(), errb.String()
}

func writeAudit(t *testing.T, dataDir string, n int) *audit.Log {
	t.Helper()
	l, err := audit.Open(server.AuditPath(dataDir), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		if _, err := l.Append(audit.Entry{Time: t0.Add(time.Duration(i) * time.Hour), Principal: "user:bob", Action: "read",
			Resource: fmt.Sprintf(`Hodei::Run::"r%d"`, i), Decision: audit.Allow, RequestID: fmt.Sprint("req", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func editLines(t *testing.T, path string, f func([]string) []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	lines = f(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	l := writeAudit(t, dir, 10)
	path := server.AuditPath(dir)
	orig, _ := os.ReadFile(path)
	restore := func() { os.WriteFile(path, orig, 0o600) }

	code, out, errOut := capture(t, "audit", "verify", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "10 records verified (seq 1 to 10)") {
		t.Fatalf("intact: exit %d\n%s%s", code, out, errOut)
	}
	head := regexp.MustCompile(`head (\d+:[0-9a-f]{64})`).FindStringSubmatch(out)
	if head == nil {
		t.Fatalf("no head in %q", out)
	}

	cases := []struct {
		name string
		edit func([]string) []string
		want string
	}{
		{"one byte changed", func(ls []string) []string {
			ls[3] = strings.Replace(ls[3], `"req3"`, `"req9"`, 1)
			return ls
		}, "seq 4 (line 4)"},
		{"one byte of a hash changed", func(ls []string) []string {
			i := strings.Index(ls[6], `"hash":"`) + 8
			b := []byte(ls[6])
			b[i] ^= 1
			ls[6] = string(b)
			return ls
		}, "seq 7 (line 7)"},
		{"a record removed", func(ls []string) []string { return append(ls[:5], ls[6:]...) }, "seq 7 (line 6)"},
		{"two records swapped", func(ls []string) []string { ls[1], ls[2] = ls[2], ls[1]; return ls }, "seq 3 (line 2)"},
	}
	for _, c := range cases {
		editLines(t, path, c.edit)
		code, out, errOut := capture(t, "audit", "verify", "--file", path)
		if code != exitFailed || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "tampered") {
			t.Errorf("%s: exit %d, stderr %q (want %q)%s", c.name, code, errOut, c.want, out)
		}
		restore()
	}

	// Records cut off the end: only the recorded head tells.
	editLines(t, path, func(ls []string) []string { return ls[:8] })
	if code, _, _ := capture(t, "audit", "verify", "--data-dir", dir); code != exitOK {
		t.Error("a shorter chain is still a chain")
	}
	code, _, errOut = capture(t, "audit", "verify", "--data-dir", dir, "--head", head[1])
	if code != exitFailed || !strings.Contains(errOut, "recorded head is gone") {
		t.Errorf("truncated with --head: exit %d %q", code, errOut)
	}
	restore()

	// Retention: pruning keeps the chain verifiable.
	if n, err := l.Prune(time.Date(2025, 1, 1, 4, 0, 0, 0, time.UTC)); err != nil || n != 4 {
		t.Fatalf("prune: %d %v", n, err)
	}
	code, out, errOut = capture(t, "audit", "verify", "--data-dir", dir, "--head", head[1])
	if code != exitOK || !strings.Contains(out, "6 records verified (seq 5 to 10), after the anchor of the records pruned up to seq 4") {
		t.Errorf("after prune: exit %d\n%s%s", code, out, errOut)
	}

	if code, _, _ := capture(t, "audit", "verify", "--head", "x"); code != exitUsage {
		t.Errorf("bad --head: exit %d", code)
	}
	if code, _, _ := capture(t, "audit"); code != exitUsage {
		t.Errorf("no subcommand: exit %d", code)
	}
}

// TestTokenAndAuditCommands drives "hodei token" and "hodei audit query"
// against a secured server, as its local admin.
func TestTokenAndAuditCommands(t *testing.T) {
	var admin string
	srv, base := startServer(t, server.Options{NATSListen: "none",
		Security: server.SecurityOptions{Enabled: true, OnAdminToken: func(tok string) { admin = tok }}})

	// Without credentials: refused.
	t.Setenv("HODEI_TOKEN", "")
	if code, _, errOut := capture(t, "token", "list", "--server", base); code != exitFailed || !strings.Contains(errOut, "credentials") {
		t.Errorf("token list without credentials: exit %d %q", code, errOut)
	}
	// The admin token, saved by "hodei login --save-token".
	if code, out, errOut := capture(t, "login", "--save-token", admin, "--server", base); code != exitOK || !strings.Contains(out, "local admin") {
		t.Fatalf("login --save-token: exit %d %s %s", code, out, errOut)
	}
	code, out, errOut := capture(t, "token", "create", "bot", "--role", "viewer", "--tenant", "acme", "--server", base)
	secret := strings.TrimSpace(out)
	if code != exitOK || !strings.HasPrefix(secret, "hodei_") || !strings.Contains(errOut, "not shown again") {
		t.Fatalf("token create: exit %d %q %q", code, out, errOut)
	}
	if code, out, _ := capture(t, "token", "list", "--server", base); code != exitOK || !strings.Contains(out, "bot") || strings.Contains(out, secret) {
		t.Errorf("token list: exit %d %q", code, out)
	}
	// The bot may read but not list tokens.
	t.Setenv("HODEI_TOKEN", secret)
	if code, _, _ := capture(t, "runs", "--server", base); code != exitOK {
		t.Errorf("the bot lists runs: exit %d", code)
	}
	if code, _, errOut := capture(t, "token", "list", "--server", base); code != exitFailed || !strings.Contains(errOut, "may not manageTokens") {
		t.Errorf("the bot lists tokens: exit %d %q", code, errOut)
	}
	t.Setenv("HODEI_TOKEN", "")
	if code, out, _ := capture(t, "token", "revoke", "bot", "--server", base); code != exitOK || !strings.Contains(out, "revoked") {
		t.Errorf("revoke: exit %d %q", code, out)
	}
	code, out, errOut = capture(t, "audit", "query", "--server", base, "--principal", "token:bot", "--decision", "deny")
	if code != exitOK || !strings.Contains(out, "manageTokens") || strings.Count(out, "DENY") != 1 {
		t.Errorf("audit query: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = capture(t, "audit", "query", "--server", base, "--action", "runs-nothing")
	if code != exitOK || strings.TrimSpace(out) != "no records" {
		t.Errorf("empty query: %q", out)
	}
	if code, _, _ := capture(t, "audit", "verify", "--file", srv.Audit().Path()); code != exitOK {
		t.Error("the server's trail does not verify")
	}
}
