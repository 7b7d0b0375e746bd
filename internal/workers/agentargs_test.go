package workers

import (
	"slices"
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
