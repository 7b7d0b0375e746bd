//go:build kubernetes

package kubernetes_test

import (
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// startServer starts a server whose pools (poolsYAML) are made by the
// kubernetes provider alone, with n agents inside it.
var startServer = workerstest.Starter("kubernetes", kubernetes.New)
