package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("name: x\njobs:\n  a:\n    steps:\n      - name: no run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"help"}, exitOK},
		{[]string{"run", "--help"}, exitOK},
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"run"}, exitUsage},
		{[]string{"run", "--no-such-flag", "x.yaml"}, exitUsage},
		{[]string{"validate", "../../examples/hello.yaml", "../../examples/ci.yaml"}, exitOK},
		{[]string{"validate", "../../examples/hello.yaml", invalid}, exitUsage},
		{[]string{"validate", filepath.Join(dir, "missing.yaml")}, exitUsage},
		{[]string{"run", invalid}, exitUsage},
		{[]string{"run", "../../examples/hello.yaml", "--workers", "1"}, exitOK},
		{[]string{"run", "../../examples/monorepo.yaml", "--workers", "2"}, exitOK},
		{[]string{"run", "../../examples/nightly.yaml", "--workers", "1"}, exitOK},
		{[]string{"run", "../../examples/failing.yaml"}, exitFailed},
		{[]string{"run", "../../examples/outputs.yaml"}, exitOK},
		{[]string{"run", "../../examples/include.yaml"}, exitOK},
		{[]string{"validate", "../../examples/deploy.yaml"}, exitOK},
		{[]string{"run", "../../examples/deploy.yaml"}, exitUsage}, // env is required
		{[]string{"run", "../../examples/deploy.yaml", "--input", "env=qa"}, exitUsage},
		{[]string{"run", "../../examples/deploy.yaml", "--input", "env"}, exitUsage},
		{[]string{"run", "../../examples/deploy.yaml", "--input", "env=staging", "--input", "dry_run=false"}, exitOK},
		{[]string{"agent", "--cpu", "lots"}, exitUsage},
		{[]string{"server", "--store", "mysql://db"}, exitUsage},
		{[]string{"submit", "x.yaml", "--server", "localhost:1"}, exitUsage},
		{[]string{"logs", "RUN", "--follow", "--timestamps"}, exitUsage},
	} {
		if got := mainArgs(c.args); got != c.want {
			t.Errorf("hodei %q: exit %d, want %d", c.args, got, c.want)
		}
	}
}
