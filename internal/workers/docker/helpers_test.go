//go:build docker

package docker_test

import (
	"github.com/hodei-ci/hodei/internal/workers/docker"
	"github.com/hodei-ci/hodei/internal/workers/workerstest"
)

// startServer starts a server whose pools (poolsYAML) are made by the
// docker provider alone, with n agents inside it.
var startServer = workerstest.Starter("docker", docker.New)
