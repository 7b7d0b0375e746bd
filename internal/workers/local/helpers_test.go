package local_test

import (
	"testing"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/workers/local"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// startServer starts a server whose pools (poolsYAML) are made by the
// local provider alone, with n agents inside it.
func startServer(t *testing.T, poolsYAML string, n int, edit func(*server.Options)) *server.Server {
	t.Helper()
	return workerstest.StartServer(t, workerstest.Only("local", local.New), poolsYAML, n, edit)
}
