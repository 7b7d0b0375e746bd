package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/bus"
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
		Orch:      s.Orch,
		Store:     s.Store,
		Hub:       s.Hub,
		Registry:  s.Registry,
		Submit:    s.Submit,
		Logger:    s.log,
		Secrets:   s.Secrets,
		Artifacts: s.Artifacts.Blobs(),

		MaxPipelineBytes: s.opts.Limits.MaxFileBytes,
	}
	if s.Workers != nil {
		deps.Pools = s.Workers
	}
	deps.Limits = s.opts.APILimits
	s.secureDeps(&deps)
	s.httpSrv = s.opts.APILimits.HTTPServer(api.New(deps))
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server", "err", err)
		}
	}()
	s.log.Info("api listening", "addr", s.httpAddr)
}
