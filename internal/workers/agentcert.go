package workers

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteAgentCert issues worker id's certificate into dir (mode 0600 files
// in a 0700 directory, removed with the worker's) and returns the agent
// flags that use it, where the agent sees dir as agentDir.
func WriteAgentCert(issue func(string) (AgentCert, error), id, dir, agentDir string) ([]string, error) {
	c, err := issue(id)
	if err != nil {
		return nil, fmt.Errorf("agent certificate for %s: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	files := []struct {
		name string
		data []byte
		flag string
	}{{"agent.crt", c.CertPEM, "--tls-cert"}, {"agent.key", c.KeyPEM, "--tls-key"}, {"ca.crt", c.CAPEM, "--ca"}}
	var args []string
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("agent certificate: %w", err)
		}
		args = append(args, f.flag, filepath.Join(agentDir, f.name))
	}
	return args, nil
}
