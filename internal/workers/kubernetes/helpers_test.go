//go:build kubernetes

package kubernetes_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// startServer starts a server whose pools (poolsYAML) are made by the
// kubernetes provider alone, with n agents inside it.
func startServer(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	t.Helper()
	return workerstest.StartServer(t, workerstest.Only("kubernetes", kubernetes.New), poolsYAML, n, edit)
}
