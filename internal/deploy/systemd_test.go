package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// systemdRoot copies the units of deploy/systemd into a root directory for
// systemd-analyze --root, with an executable at /usr/local/bin/hodei (where
// the units expect the binary) and the host's own units (sysinit.target...)
// in /usr/lib/systemd/system. edit, if not nil, changes each unit's text.
func systemdRoot(t *testing.T, edit func(name, text string) string) (root string, units []string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found: install the Debian package systemd (scripts/test does)")
	}
	root = t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/hodei"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The host's units that ours depend on (sysinit.target...), regular
	// files only: their links would point outside the root.
	sys := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(sys, "sysinit.target")); err != nil {
		sys = "/lib/systemd/system"
	}
	dir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(sys)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sys, e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	paths, err := filepath.Glob(filepath.Join(repoRoot(), "deploy", "systemd", "*.service"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no units in deploy/systemd (%v)", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if edit != nil {
			text = edit(filepath.Base(p), text)
		}
		dst := filepath.Join(root, "etc/systemd/system", filepath.Base(p))
		if err := os.WriteFile(dst, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, dst)
	}
	return root, units
}

// verify runs systemd-analyze verify on units and returns what it said.
func verify(t *testing.T, root string, units []string) (string, error) {
	t.Helper()
	args := append([]string{"verify", "--man=no", "--root=" + root}, units...)
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestSystemdUnitsVerify: systemd-analyze verify accepts the units of
// deploy/systemd without a word (an unknown key or a bad value is only a
// warning to systemd, so any output fails the test), and finds the
// mistakes a unit could have: a misspelt option and a value it cannot
// parse. systemd-analyze security (offline) rates the server's exposure
// at most 1.5 and the agent's, which must leave the step sandbox its
// namespaces, at most 3.5 (of 10).
func TestSystemdUnitsVerify(t *testing.T) {
	root, units := systemdRoot(t, nil)
	if len(units) < 2 {
		t.Fatalf("want the server's and the agent's units, got %v", units)
	}
	if out, err := verify(t, root, units); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for unit, max := range map[string]string{"hodei-server.service": "15", "hodei-agent.service": "35"} {
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold="+max, "--root="+root, unit).CombinedOutput()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Errorf("%s: exposure above %s/100: %v: %s", unit, max, err, lines[len(lines)-1])
		}
	}

	// The same check on broken copies must complain.
	root, units = systemdRoot(t, func(name, text string) string {
		text = strings.Replace(text, "NoNewPrivileges=yes", "NoNewPrivilege=yes", 1)
		return strings.Replace(text, "RestrictRealtime=yes", "RestrictRealtime=often", 1)
	})
	out, _ := verify(t, root, units)
	for _, unit := range units {
		name := filepath.Base(unit)
		for _, want := range []string{"Unknown key 'NoNewPrivilege'", "Failed to parse boolean value, ignoring: often"} {
			found := false
			for line := range strings.SplitSeq(out, "\n") {
				if strings.Contains(line, name) && strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("systemd-analyze verify did not report %q in %s:\n%s", want, name, out)
			}
		}
	}
}

// TestSystemdSysusersMakesTheUser: systemd-sysusers, given
// deploy/systemd/hodei.sysusers.conf in an empty root, makes the system
// user and group hodei that the units run as, without a login shell.
func TestSystemdSysusersMakesTheUser(t *testing.T) {
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Fatal("systemd-sysusers not found: install the Debian package systemd (scripts/test does)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(repoRoot(), "deploy", "systemd", "hodei.sysusers.conf")
	if out, err := exec.Command("systemd-sysusers", "--root="+root, conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	var user []string
	for line := range strings.SplitSeq(string(passwd), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[0] == "hodei" {
			user = f
		}
	}
	if user == nil || user[2] == "0" || user[5] != "/var/lib/hodei" || !strings.HasSuffix(user[6], "nologin") {
		t.Errorf("want a system user hodei at home in /var/lib/hodei without a shell, got %q in:\n%s", user, passwd)
	}
	if !strings.Contains("\n"+string(group), "\nhodei:") {
		t.Errorf("no group hodei:\n%s", group)
	}
}
