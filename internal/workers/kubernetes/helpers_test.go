//go:build kubernetes

package kubernetes_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// providers is the registry of the servers these tests start: the kubernetes
// provider alone.
func providers() *workers.Registry {
	r := workers.NewRegistry()
	r.Register("kubernetes", kubernetes.New)
	return r
}

// startServer starts a server whose pools (poolsYAML) are made by the
// kubernetes provider, with n agents inside it.
func startServer(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	t.Helper()
	return workerstest.StartServer(t, providers(), poolsYAML, n, edit)
}
