package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/hodei-ci/hodei/internal/api"
)

func (s *Server) serveHTTP() error {
	ln, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.opts.HTTPAddr, err)
	}
	s.httpAddr = ln.Addr().String()
	if s.opts.HTTPTLS != nil {
		ln = tls.NewListener(ln, s.opts.HTTPTLS)
	}
	deps := api.Deps{
		Orch:     s.Orch,
		Store:    s.Store,
		Hub:      s.Hub,
		Registry: s.Registry,
		Submit:   s.Submit,
		Logger:   s.log,
		Secrets:  s.Secrets,
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
	return nil
}
