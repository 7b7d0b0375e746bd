package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/artifact/s3blobs"
)

// startArtifacts starts the artifact service on the bus, its blobs in
// JetStream's object store or in S3 (Options.ArtifactsStore), and
// registers its metrics.
func (s *Server) startArtifacts(ctx context.Context) error {
	blobs, err := s.openBlobs(ctx)
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

// openBlobs opens the blob store Options.ArtifactsStore names.
func (s *Server) openBlobs(ctx context.Context) (artifact.Blobs, error) {
	if loc := s.opts.ArtifactsStore; loc != "" && loc != "jetstream" {
		return s3blobs.Open(ctx, loc)
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	spool := filepath.Join(s.opts.DataDir, "artifacts-spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, err
	}
	return artifact.NewJetStreamBlobs(ctx, js, spool, s.opts.NATSReplicas)
}
