package main

import (
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/docker"
	"github.com/hodei-ci/hodei/internal/workers/kubernetes"
	"github.com/hodei-ci/hodei/internal/workers/local"
)

// providers is the registry of the worker providers that the pools of
// `hodei server --pools` may name. Each lives in its own package and is
// registered here, explicitly: code that only plans (the simulator, the
// autoscaler, the API) links none of the engines' clients.
func providers() *workers.Registry {
	r := workers.NewRegistry()
	r.Register("local", local.New)
	r.Register("docker", docker.New)
	r.Register("kubernetes", kubernetes.New)
	return r
}
