package workers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// AgentBinary returns the absolute path of the hodei binary a provider
// runs as its workers' agent: configured (the pool's binary) or, if that
// is empty, this process's own executable. The caller checks the file.
func AgentBinary(configured string) (string, error) {
	bin := configured
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		bin = exe
	}
	return filepath.Abs(bin)
}

// WalledAgentArgs returns the command line of `hodei agent` (binary its
// path) for worker spec in a container or pod of its own, which is the
// worker's wall: the Docker and Kubernetes providers' default seccomp
// profiles refuse the namespaces a sandbox needs, so steps share the
// agent's user inside it and the worker is listed as unisolated
// (docs/security.md). The agent works in workDir, finds no container engine
// and logs JSON; env gives the server's NATS URL and heartbeat. Providers
// append their own flags (TLS, job container) after these.
func WalledAgentArgs(binary, workDir string, spec WorkerSpec, env ProviderEnv) []string {
	args := []string{binary, "agent",
		"--nats", env.NATSURL,
		"--id", spec.ID,
		"--pool", spec.Pool,
		"--cpu", strconv.FormatInt(spec.Resources.CPUMilli, 10) + "m",
		"--memory", strconv.FormatInt(spec.Resources.Memory, 10),
		"--work-dir", workDir,
		"--docker", "off",
		"--log-format", "json",
		"--unsafe-shared-user",
	}
	if len(spec.Labels) > 0 {
		args = append(args, "--labels", strings.Join(spec.Labels, ","))
	}
	if hb := env.HeartbeatInterval; hb > 0 {
		args = append(args, "--heartbeat", hb.String())
	}
	if spec.Ephemeral {
		args = append(args, "--once")
	}
	return args
}

// SecretValues resolves the secrets names (WorkerSpec.Secrets) through
// env.Secret and returns their values in the same order, for the
// environment of a worker's agent. It fails for the first that cannot be
// resolved, or if the server has no secrets for workers (env.Secret nil).
func SecretValues(ctx context.Context, env ProviderEnv, names []string) ([]string, error) {
	values := make([]string, len(names))
	for i, name := range names {
		if env.Secret == nil {
			return nil, fmt.Errorf("worker secret %s: this server has no secrets for workers", name)
		}
		v, err := env.Secret(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("worker secret %s: %w", name, err)
		}
		values[i] = v
	}
	return values, nil
}
