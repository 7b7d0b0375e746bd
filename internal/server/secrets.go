package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/secrets"
)

// SecretsOptions configure where jobs' secrets come from.
type SecretsOptions struct {
	// Provider is the backend; nil opens the built-in store in
	// DataDir/secrets, its key from HODEI_SECRETS_KEY (and
	// HODEI_SECRETS_KEY_PREVIOUS while changing it) or else from the key
	// file DataDir/secrets/kek.json, created 0600 on first start.
	Provider secrets.Provider
	// KeyFile overrides the built-in store's key file.
	KeyFile string
	// RotationHook applies rotated values to the systems that use them;
	// nil: nothing to apply (secrets only Hodei uses).
	RotationHook secrets.Hook
	// RotationCheck is the period of the checks for secrets due for
	// rotation (1 minute).
	RotationCheck time.Duration
	// AllowReveal lets the API answer values.
	AllowReveal bool
}

type secretsRuntime struct {
	sealer *secrets.Sealer
	stop   context.CancelFunc
	done   chan struct{}
}

// startSecrets opens the backend, starts learning the agents' sealing keys
// and, for a writable backend, the rotator.
func (s *Server) startSecrets() error {
	o := s.opts.Secrets
	p := o.Provider
	if p == nil {
		key, prev, err := secrets.KeyFromEnv(os.LookupEnv)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		st, err := secrets.OpenStore(secrets.StoreOptions{Dir: filepath.Join(s.opts.DataDir, "secrets"), Key: key, PreviousKeys: prev, KeyFile: o.KeyFile})
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		p = st
	}
	s.Secrets = &secrets.Service{Provider: p, AllowReveal: o.AllowReveal}
	rt := &secretsRuntime{sealer: secrets.NewSealer(p, s.log)}
	s.secretsRT = rt
	if err := rt.sealer.Watch(s.nc, bus.DefaultSubjects); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if w, ok := p.(secrets.Writer); ok {
		hook := o.RotationHook
		if hook == nil {
			hook = secrets.NopHook{}
		}
		rot, err := secrets.NewRotator(w, secrets.RotatorOptions{
			StateFile: filepath.Join(s.opts.DataDir, "secrets", "rotation.json"),
			Hook:      func(string) secrets.Hook { return hook },
			Logger:    s.log,
		})
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.Secrets.Rotator = rot
		every := o.RotationCheck
		if every <= 0 {
			every = time.Minute
		}
		ctx, cancel := context.WithCancel(context.Background())
		rt.stop, rt.done = cancel, make(chan struct{})
		go func() {
			defer close(rt.done)
			rot.Run(ctx, every)
		}()
	}
	return nil
}

func (s *Server) closeSecrets() {
	rt := s.secretsRT
	if rt == nil {
		return
	}
	rt.sealer.Close()
	if rt.stop != nil {
		rt.stop()
		<-rt.done
	}
}

// natsTLS are the options of connections to an external NATS.
func (s *Server) natsTLS() []nats.Option {
	if s.opts.NATSClientTLS == nil {
		return nil
	}
	return []nats.Option{nats.Secure(s.opts.NATSClientTLS)}
}

// AgentConn connects an agent of this process with id, as the server's
// local agents are connected (see agentConn); hodei bench fleet uses it for
// its simulated agents.
func (s *Server) AgentConn(id string) (*nats.Conn, error) { return s.agentConn(id) }

// agentConn connects a local agent: in process to the embedded NATS (with
// that agent's permissions when TLS is on), or to the external NATS with
// the server's certificate.
func (s *Server) agentConn(id string) (*nats.Conn, error) {
	if s.embedded != nil {
		return s.embedded.ConnectAgent(id)
	}
	return bus.Connect(s.NATSURL, "hodei-agent "+id, append(bus.AgentOptions(id), s.natsTLS()...)...)
}
