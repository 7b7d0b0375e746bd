package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
)

// SecurityOptions turn on authentication, authorization and the audit
// trail of the API (docs/security.md). The zero value leaves the API open,
// as "hodei run" and the tests of other packages want it.
type SecurityOptions struct {
	Enabled bool
	// OIDC, if set, accepts bearer JWTs of this issuer.
	OIDC *auth.OIDCConfig
	// PoliciesDir replaces the embedded Cedar schema and policies (schema
	// file optional); they are validated at start.
	PoliciesDir string
	// Authorizer, if set, decides instead of the Cedar policies (Amazon
	// Verified Permissions).
	Authorizer authz.Authorizer
	// NoLocalAdmin refuses the local admin token.
	NoLocalAdmin bool
	// OnAdminToken receives the local admin token when it is made, at the
	// first start on a data directory: the only time it is known.
	OnAdminToken func(token string)
	// AuditRetention prunes audit records older than this (checked at start
	// and hourly); 0 keeps them all.
	AuditRetention time.Duration
	// AuditSync fsyncs every batch of audit records.
	AuditSync bool
	// AuditPolicy is how much of each request the trail keeps
	// (audit.DefaultPolicy if nil).
	AuditPolicy *audit.Policy
	// AuditQueue is the capacity of the trail's queue (audit.DefaultQueue
	// if 0).
	AuditQueue int
	// ProtectMetrics makes /metrics need credentials (action readMetrics).
	ProtectMetrics bool
}

// security is what a secured server holds.
type security struct {
	auth   auth.Chain
	authz  authz.Authorizer
	audit  *audit.Log
	tokens *auth.Tokens
	// newAdmin is a local admin token made at this start, to be written
	// and handed out once the server has started (publishAdminToken).
	newAdmin *auth.NewLocalAdmin
	stop     context.CancelFunc
	done     chan struct{}
}

// Paths in the data directory.
const (
	authDir        = "auth"
	tokensFile     = "tokens.json"
	adminTokenFile = "admin-token.json"
	auditFile      = "audit/audit.jsonl"
)

// AuditPath is the audit trail's file in a data directory.
func AuditPath(dataDir string) string { return filepath.Join(dataDir, filepath.FromSlash(auditFile)) }

// startSecurity prepares authentication, authorization and the audit trail
// when they are enabled.
func (s *Server) startSecurity() (err error) {
	o := s.opts.Security
	if !o.Enabled {
		return nil
	}
	dir := filepath.Join(s.opts.DataDir, authDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	sec := &security{}
	if sec.tokens, err = auth.OpenTokens(filepath.Join(dir, tokensFile)); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	sec.auth = auth.Chain{sec.tokens}
	if !o.NoLocalAdmin {
		admin, pending, err := auth.LoadLocalAdmin(filepath.Join(dir, adminTokenFile))
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		sec.newAdmin = pending
		sec.auth = append(sec.auth, admin)
	}
	if o.OIDC != nil {
		oidc, err := auth.NewOIDC(*o.OIDC)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		sec.auth = append(sec.auth, oidc)
		// Learn now whether the issuer answers, for the operator's sake;
		// requests try again if it does not.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := oidc.Discover(ctx); err != nil {
				s.log.Warn("OIDC issuer not reachable yet; bearer JWTs are refused until it is", "issuer", oidc.Issuer(), "err", err)
			} else {
				s.log.Info("OIDC issuer discovered", "issuer", oidc.Issuer())
			}
		}()
	}
	sec.authz = o.Authorizer
	if sec.authz == nil {
		var p *authz.Policies
		if o.PoliciesDir != "" {
			p, err = authz.LoadDir(o.PoliciesDir)
		} else {
			p, err = authz.Default()
		}
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.log.Info("authorization policies loaded", "source", p.Source, "policies", len(p.IDs()))
		sec.authz = authz.NewCedar(p)
	}
	if sec.audit, err = audit.Open(AuditPath(s.opts.DataDir), audit.Options{Sync: o.AuditSync, Queue: o.AuditQueue, Logger: s.log}); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sec.stop, sec.done = cancel, make(chan struct{})
	go func() {
		defer close(sec.done)
		if o.AuditRetention <= 0 {
			return
		}
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			if n, err := sec.audit.Prune(time.Now().Add(-o.AuditRetention)); err != nil {
				s.log.Error("audit retention: prune failed", "err", err)
			} else if n > 0 {
				s.log.Info("audit retention: records pruned", "records", n, "retention", o.AuditRetention)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	s.sec = sec
	return nil
}

// publishAdminToken writes the hash of a local admin token made at this
// start and hands the token out (Options.Security.OnAdminToken): the last
// step of Start, so that a server that fails to start leaves no token behind
// and overwrites no saved credential (of another server on its address).
func (s *Server) publishAdminToken() error {
	if s.sec == nil || s.sec.newAdmin == nil {
		return nil
	}
	na := s.sec.newAdmin
	if err := na.Save(); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.sec.newAdmin = nil
	if s.opts.Security.OnAdminToken != nil {
		s.opts.Security.OnAdminToken(na.Secret)
	} else {
		s.log.Warn("a local admin token was made but nobody was given it; delete it to make another", "file", na.Path)
	}
	return nil
}

// secureDeps adds the security of the server to the API's dependencies.
func (s *Server) secureDeps(d *api.Deps) {
	if s.sec == nil {
		return
	}
	d.Auth, d.Authz, d.Audit, d.Tokens = s.sec.auth, s.sec.authz, s.sec.audit, s.sec.tokens
	d.ProtectMetrics = s.opts.Security.ProtectMetrics
	d.AuditPolicy = s.opts.Security.AuditPolicy
}

// closeSecurity stops the retention loop and closes the audit trail.
func (s *Server) closeSecurity() {
	if s.sec == nil {
		return
	}
	s.sec.stop()
	<-s.sec.done
	_ = s.sec.audit.Close()
}

// Audit returns the audit trail (nil when security is off).
func (s *Server) Audit() *audit.Log {
	if s.sec == nil {
		return nil
	}
	return s.sec.audit
}

// Tokens returns the registry of API tokens (nil when security is off).
func (s *Server) Tokens() *auth.Tokens {
	if s.sec == nil {
		return nil
	}
	return s.sec.tokens
}
