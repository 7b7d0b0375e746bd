package workers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWalledAgentArgs(t *testing.T) {
	spec := WorkerSpec{ID: "w1", Pool: "p", Labels: []string{"linux", "x86"}, Ephemeral: true,
		Resources: Resources{CPUMilli: 500, Memory: 256 << 20}}
	env := ProviderEnv{NATSURL: "nats://10.0.0.1:4222", HeartbeatInterval: 2 * time.Second}
	got := WalledAgentArgs("/opt/hodei/hodei", "/workspace", spec, env)
	want := []string{"/opt/hodei/hodei", "agent", "--nats", "nats://10.0.0.1:4222", "--id", "w1", "--pool", "p",
		"--cpu", "500m", "--memory", "268435456", "--work-dir", "/workspace", "--docker", "off", "--log-format", "json",
		"--unsafe-shared-user", "--labels", "linux,x86", "--heartbeat", "2s", "--once"}
	if !slices.Equal(got, want) {
		t.Errorf("args\n%q\nwant\n%q", got, want)
	}

	// No labels, the server's heartbeat, a worker that stays: no such flags.
	got = WalledAgentArgs("/hodei", "/w", WorkerSpec{ID: "w2", Pool: "p"}, ProviderEnv{NATSURL: "nats://n"})
	for _, f := range []string{"--labels", "--heartbeat", "--once"} {
		if slices.Contains(got, f) {
			t.Errorf("args %q have %s", got, f)
		}
	}
}

func TestSecretValues(t *testing.T) {
	ctx := context.Background()
	store := map[string]string{"A": "1", "B": "2"}
	env := ProviderEnv{Secret: func(_ context.Context, name string) (string, error) {
		v, ok := store[name]
		if !ok {
			return "", errors.New("not found")
		}
		return v, nil
	}}
	got, err := SecretValues(ctx, env, []string{"B", "A"})
	if err != nil || !slices.Equal(got, []string{"2", "1"}) {
		t.Errorf("SecretValues(B, A) = %q, %v; want [2 1] in the names' order", got, err)
	}
	if _, err := SecretValues(ctx, env, []string{"A", "C"}); err == nil || !strings.Contains(err.Error(), "worker secret C") {
		t.Errorf("an unknown secret: %v, want an error naming it", err)
	}
	if _, err := SecretValues(ctx, ProviderEnv{}, []string{"A"}); err == nil || !strings.Contains(err.Error(), "no secrets for workers") {
		t.Errorf("a server without secrets: %v, want it said", err)
	}
	if got, err := SecretValues(ctx, ProviderEnv{}, nil); err != nil || len(got) != 0 {
		t.Errorf("no secrets on a server without secrets: %q, %v; want none and no error", got, err)
	}
}

// TestAgentBinary: a pool's binary is made absolute (against the working
// directory); without one, the provider runs this process's executable.
func TestAgentBinary(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := AgentBinary("bin/hodei"); err != nil || got != filepath.Join(wd, "bin", "hodei") {
		t.Errorf("relative: %q, %v", got, err)
	}
	if got, err := AgentBinary("/opt/hodei/hodei"); err != nil || got != "/opt/hodei/hodei" {
		t.Errorf("absolute: %q, %v", got, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := AgentBinary(""); err != nil || got != exe {
		t.Errorf("none: %q, %v; want %s", got, err, exe)
	}
}
