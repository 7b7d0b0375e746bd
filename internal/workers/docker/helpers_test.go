//go:build docker

package docker_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/docker"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// providers is the registry of the servers these tests start: the docker
// provider alone.
func providers() *workers.Registry {
	r := workers.NewRegistry()
	r.Register("docker", docker.New)
	return r
}

// startServer starts a server whose pools (poolsYAML) are made by the
// docker provider, with n agents inside it.
func startServer(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	t.Helper()
	return workerstest.StartServer(t, providers(), poolsYAML, n, edit)
}
