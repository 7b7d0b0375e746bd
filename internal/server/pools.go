package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"path/filepath"
	"time"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/workers"
)

// detectContainers finds the Docker engine that local agents run jobs with
// an image on (they get the label "docker"); none is not an error.
func (s *Server) detectContainers() {
	if s.opts.Docker == "off" {
		return
	}
	d, err := dockerengine.Detect(context.Background(), 3*time.Second)
	if err != nil {
		s.log.Debug("no docker engine: local workers refuse jobs with an image", "err", err)
		return
	}
	s.docker = d
	s.log.Info("docker engine found: local workers run jobs with an image", "host", d.Host())
}

// containerRuntime is the runtime given to local agents (nil without an
// engine).
func (s *Server) containerRuntime() containers.Runtime {
	if s.docker == nil {
		return nil
	}
	return s.docker
}

// startPools starts the worker manager of the pools file, if there is one.
func (s *Server) startPools() error {
	if s.opts.Pools == nil {
		return nil
	}
	workDir := s.opts.WorkDir
	if workDir == "" {
		workDir = filepath.Join(s.opts.DataDir, "work")
	}
	abs, _ := filepath.Abs(s.opts.DataDir)
	sum := sha256.Sum256([]byte(abs))
	scaler := s.opts.Scaler
	if a, ok := scaler.(*autoscale.Scaler); ok {
		s.scaler = newSavedScaler(a, s.opts.DataDir, s.Registry, s.log)
		scaler = s.scaler
	}
	m, err := workers.NewManager(workers.ManagerConfig{
		Pools:    s.opts.Pools,
		Registry: s.opts.Providers,
		Env: workers.ProviderEnv{
			NATSURL:           s.NATSURL,
			Connect:           s.agentConn,
			WorkDir:           filepath.Join(workDir, "pools"),
			Containers:        s.containerRuntime(),
			ContainerNetwork:  s.opts.ContainerNetwork,
			NoCgroups:         s.opts.NoCgroups,
			Owner:             hex.EncodeToString(sum[:6]),
			HeartbeatInterval: s.opts.HeartbeatInterval,
			AgentCert:         s.agentCert(),
			Logger:            s.log,
			Unisolated:        s.opts.UnsafeSharedUser,
			Hide:              s.hidden(),
		},
		View:        s.control().View,
		Scaler:      scaler,
		Interval:    s.opts.PoolInterval,
		HistoryStep: s.opts.PoolHistoryStep,
		Registerer:  s.Registry,
		Logger:      s.log,
	})
	if err != nil {
		return err
	}
	s.Workers = m
	s.pools.Store(m)
	go m.Run(context.Background())
	return nil
}

// agentCert issues the certificates of pool agents, valid for AgentValidity
// (nil without an AgentCA).
func (s *Server) agentCert() func(string) (workers.AgentCert, error) {
	ca := s.opts.AgentCA
	if ca == nil {
		return nil
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	return func(id string) (workers.AgentCert, error) {
		iss, err := ca.Issue(pki.Request{Kind: pki.KindAgent, Name: id, Validity: AgentValidity})
		if err != nil {
			return workers.AgentCert{}, err
		}
		return workers.AgentCert{CertPEM: iss.CertPEM, KeyPEM: iss.KeyPEM, CAPEM: caPEM}, nil
	}
}

// AgentValidity is how long the certificate of a pool agent is valid: a
// worker that lives longer must be replaced (certificates reload only at
// an agent's start).
const AgentValidity = 30 * 24 * time.Hour

// closePools terminates the workers the manager created.
func (s *Server) closePools() {
	if s.Workers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.Workers.Close(ctx)
	if s.scaler != nil {
		if err := s.scaler.Save(); err != nil {
			s.log.Warn("autoscaler history not saved", "err", err)
		}
	}
}
