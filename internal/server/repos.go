package server

import (
	"cmp"
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/secrets"
)

// startRepos sets up the repositories' webhooks (mirrors in
// DataDir/repos), the commit statuses, which follow the runs the
// orchestrator announces on the hub, and the schedules: Cron runs here,
// with the orchestrator's loop, and only where it runs.
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
	s.Cron = &repos.Cron{Svc: svc, Now: s.opts.CronNow, Log: s.log}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep.Watch(ctx, s.Hub)
	}()
	if tick := cmp.Or(s.opts.CronTick, repos.DefaultCronTick); tick > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(tick)
			defer t.Stop()
			s.Cron.Run(ctx, t.C)
		}()
	}
	s.reposStop = func() {
		cancel()
		wg.Wait()
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
