package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// TestLocalPoolMode checks the mode `hodei server` gives local pools: agent
// processes by default, in process when its NATS takes no TCP connection
// or requires TLS, where asking for processes is refused.
func TestLocalPoolMode(t *testing.T) {
	const file = `pools:
  plain: {provider: local, max: 1}
  procs: {provider: local, max: 1, local: {mode: process}}
  inside: {provider: local, max: 1, local: {mode: inprocess}}
  boxes: {provider: docker, max: 1, docker: {image: x}}
`
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	modes := func(cfg *poolsfile.Config) string {
		var b []string
		for _, p := range cfg.Pools {
			b = append(b, p.Name+"="+p.Local.Mode)
		}
		return strings.Join(b, " ")
	}
	cfg, err := poolsfile.ParseConfig("p.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if err := setLocalPoolMode(cfg, false, false, log); err != nil || modes(cfg) != "boxes= inside=inprocess plain=process procs=process" {
		t.Errorf("TCP NATS: %v, modes %s", err, modes(cfg))
	}
	for _, c := range []struct {
		inProcess, tls bool
		why            string
	}{{true, false, "--nats-listen none"}, {false, true, "TLS on NATS"}} {
		cfg, _ := poolsfile.ParseConfig("p.yaml", []byte(file))
		err := setLocalPoolMode(cfg, c.inProcess, c.tls, log)
		if err == nil || !strings.Contains(err.Error(), "local pools procs ask for agent processes") || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v", c.why, err)
		}
		cfg, _ = poolsfile.ParseConfig("p.yaml", []byte(strings.Replace(file, "{mode: process}", "{mode: inprocess}", 1)))
		if err := setLocalPoolMode(cfg, c.inProcess, c.tls, log); err != nil || modes(cfg) != "boxes= inside=inprocess plain=inprocess procs=inprocess" {
			t.Errorf("%s: %v, modes %s", c.why, err, modes(cfg))
		}
	}

	// The command refuses it before starting anything.
	dir := t.TempDir()
	poolsFile := filepath.Join(dir, "pools.yaml")
	if err := os.WriteFile(poolsFile, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := capture(t, "server", "--data-dir", filepath.Join(dir, "data"), "--http=", "--nats-listen", "none",
		"--workers", "0", "--auth", "off", "--pools", poolsFile)
	if code != exitUsage || !strings.Contains(errOut, "hodei server: --pools: local pools procs ask for agent processes (local.mode: process), impossible with --nats-listen none") {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
	if code, _, _ := capture(t, "agent", "--gpu", "-1"); code != exitUsage {
		t.Errorf("agent --gpu -1: exit %d, want %d", code, exitUsage)
	}
}
