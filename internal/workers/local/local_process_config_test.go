package local

import (
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
	"strings"
	"testing"
)

// TestParseConfigLocal checks the local block of a pool: mode and binary,
// with errors at file:line:col.
func TestParseConfigLocal(t *testing.T) {
	cfg, err := poolsfile.ParseConfig("p.yaml", []byte(`pools:
  a: {provider: local, max: 1, local: {mode: process, binary: /opt/hodei}}
  b: {provider: local, max: 1, local: {mode: inprocess}}
  c: {provider: local, max: 1, local: {binary: ./hodei}}
  d: {provider: local, max: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []poolsfile.LocalOptions{{Mode: poolsfile.LocalModeProcess, Binary: "/opt/hodei"}, {Mode: poolsfile.LocalModeInProcess}, {Mode: poolsfile.LocalModeProcess, Binary: "./hodei"}, {}}
	for i, p := range cfg.Pools {
		if p.Local != want[i] {
			t.Errorf("pool %s: local %+v, want %+v", p.Name, p.Local, want[i])
		}
	}
	if bad := cfg.SetLocalMode(poolsfile.LocalModeInProcess); strings.Join(bad, ",") != "a,c" || cfg.Pools[3].Local.Mode != poolsfile.LocalModeInProcess {
		t.Errorf("SetLocalMode: others %v, pool d %+v", bad, cfg.Pools[3].Local)
	}

	for _, tt := range []struct{ name, src, want string }{
		{"unknown mode", "pools:\n  a:\n    provider: local\n    max: 1\n    local: {mode: thread}\n",
			`p.yaml:5:19: pools.a.local.mode: unknown mode "thread"; want process or inprocess`},
		{"binary in process", "pools:\n  a:\n    provider: local\n    max: 1\n    local: {mode: inprocess, binary: /x}\n",
			`p.yaml:5:38: pools.a.local.binary: only applies to mode process`},
		{"unknown field", "pools:\n  a:\n    provider: local\n    max: 1\n    local: {grace: 1s}\n",
			`p.yaml:5:13: pools.a.local.grace: unknown field "grace"; allowed fields: mode, binary`},
		{"not a map", "pools:\n  a:\n    provider: local\n    max: 1\n    local: process\n",
			`p.yaml:5:12: pools.a.local: must be a map with mode and binary, got a string`},
		{"empty binary", "pools:\n  a:\n    provider: local\n    max: 1\n    local: {binary: ''}\n",
			`p.yaml:5:21: pools.a.local.binary: must not be empty`},
		{"local on docker", "pools:\n  a:\n    provider: docker\n    max: 1\n    docker: {image: x}\n    local: {mode: process}\n",
			`p.yaml:6:12: pools.a.local: only applies to a pool with provider local`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := poolsfile.ParseConfig("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// TestLocalProcessNeedsTCP checks that mode process without a NATS that
// listens on TCP, or with a binary that is not there, is refused with a
// message that says what to do.
func TestLocalProcessNeedsTCP(t *testing.T) {
	pool := poolsfile.PoolConfig{Name: "p", Provider: "local", Max: 1, Local: poolsfile.LocalOptions{Mode: poolsfile.LocalModeProcess}}
	if _, err := New(pool, workers.ProviderEnv{WorkDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "--nats-listen") {
		t.Errorf("no NATS URL: %v", err)
	}
	pool.Local.Binary = "/no/such/hodei"
	if _, err := New(pool, workers.ProviderEnv{NATSURL: "nats://127.0.0.1:1", WorkDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "/no/such/hodei") {
		t.Errorf("missing binary: %v", err)
	}
}
