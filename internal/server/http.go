package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/web"
)

// listenHTTP takes the API's port; serveHTTP serves it.
func (s *Server) listenHTTP() error {
	ln, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server: %w", bus.ListenError(s.opts.HTTPAddr, err))
	}
	s.httpAddr = ln.Addr().String()
	if s.opts.HTTPTLS != nil {
		ln = tls.NewListener(ln, s.opts.HTTPTLS)
	}
	s.httpLn = ln
	return nil
}

func (s *Server) serveHTTP() {
	ln := s.httpLn
	s.httpLn = nil // the server closes it from now on
	deps := api.Deps{
		Orch:     s.control(),
		Store:    s.Store,
		Hub:      s.Hub,
		Registry: s.Registry,
		Submit: func(ctx context.Context, sub api.Submission) (store.Run, error) {
			return s.SubmitRun(ctx, RunRequest{File: sub.File, Data: sub.Data, Tenant: sub.Tenant, Inputs: sub.Inputs, Includes: sub.Includes, Key: sub.Key})
		},
		Rerun:     s.Rerun,
		Logger:    s.log,
		Secrets:   s.Secrets,
		Repos:     s.Repos,
		Artifacts: s.Artifacts.Blobs(),

		MaxPipelineBytes: s.opts.Limits.MaxFileBytes,
	}
	if s.Workers != nil {
		deps.Pools = s.Workers
	}
	if s.rep != nil {
		deps.Hub = s.rep.notes
		deps.Leader = s.rep.leaderInfo
		deps.FollowResync = time.Second
	}
	deps.Limits = s.opts.APILimits
	s.secureDeps(&deps)
	s.httpSrv = s.opts.APILimits.HTTPServer(web.New(s.webOptions(api.New(deps))))
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server", "err", err)
		}
	}()
	s.log.Info("api listening", "addr", s.httpAddr)
}

// webOptions are the web UI's: it signs in with the API's authenticator,
// and through the OIDC issuer the API accepts tokens of, with the client id
// Options.UIClientID (else the issuer's first audience).
func (s *Server) webOptions(apiHandler http.Handler) web.Options {
	o := web.Options{API: apiHandler, Logger: s.log, SessionTTL: s.opts.UISessionTTL}
	if s.sec == nil {
		return o
	}
	o.Auth = s.sec.auth
	if c := s.opts.Security.OIDC; c != nil {
		id := s.opts.UIClientID
		if id == "" && len(c.Audiences) > 0 {
			id = c.Audiences[0]
		}
		o.OIDC = &web.OIDCLogin{Issuer: c.Issuer, ClientID: id, HTTPClient: c.HTTPClient}
	}
	return o
}
