package server

import (
	"context"
	"path/filepath"

	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/secrets"
)

// startRepos sets up the repositories' webhooks (mirrors in
// DataDir/repos) and the commit statuses, which follow the runs the
// orchestrator announces on the hub.
func (s *Server) startRepos() {
	var provider secrets.Provider
	if s.Secrets != nil {
		provider = s.Secrets.Provider
	}
	svc := &repos.Service{
		Store: s.Store, Secrets: provider, Orch: s.control(), Limits: s.opts.Limits, Log: s.log,
		Mirrors: &repos.Mirrors{Dir: filepath.Join(s.opts.DataDir, "repos")},
	}
	rep := &repos.Reporter{Store: s.Store, Secrets: svc.Secret, PublicURL: s.publicURL(), Log: s.log}
	svc.Status = rep
	s.Repos = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.Watch(ctx, s.Hub)
	}()
	s.reposStop = func() {
		cancel()
		<-done
		rep.Close()
	}
}

func (s *Server) closeRepos() {
	if s.reposStop != nil {
		s.reposStop()
	}
}

// publicURL is where the server's users reach it: --public-url, else the
// API's own address.
func (s *Server) publicURL() string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	scheme := "http"
	if s.opts.HTTPTLS != nil {
		scheme = "https"
	}
	if s.httpAddr == "" {
		return ""
	}
	return scheme + "://" + s.httpAddr
}
