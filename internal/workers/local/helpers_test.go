package local_test

import (
	"github.com/hodei-ci/hodei/internal/workers/local"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// startServer starts a server whose pools (poolsYAML) are made by the
// local provider alone, with n agents inside it.
var startServer = workerstest.Starter("local", local.New)
