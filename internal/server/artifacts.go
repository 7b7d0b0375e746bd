package server

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/artifact"
)

// startArtifacts starts the artifact service on the bus, its blobs in
// JetStream's object store, and registers its metrics.
func (s *Server) startArtifacts(ctx context.Context) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("server: artifacts: %w", err)
	}
	blobs, err := artifact.NewJetStreamBlobs(ctx, js)
	if err != nil {
		return fmt.Errorf("server: artifacts: %w", err)
	}
	s.Artifacts = artifact.NewService(s.nc, s.Store, blobs, artifact.ServiceOptions{Limits: s.opts.Artifacts, Logger: s.log})
	s.Registry.MustRegister(s.Artifacts.Collectors()...)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- s.Artifacts.Run(runCtx, ready) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return fmt.Errorf("server: %w", err)
	}
	s.stopArtifacts = func() {
		cancel()
		<-done
	}
	return nil
}
