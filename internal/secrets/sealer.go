package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/secrets/sealed"
)

// Sealer gives an assignment the secrets its job names: it resolves them
// from a Provider and seals them for the worker's key (package sealed), so
// that the dispatch message carries, and the dispatch stream stores, only
// ciphertext. It learns the workers' keys from their heartbeats.
//
// The orchestrator calls Seal outside its loop, once per assignment of a job
// that names secrets (orchestrator.Config.Seal). Seal is safe for concurrent
// use.
type Sealer struct {
	p   Provider
	log *slog.Logger

	mu      sync.Mutex
	keys    map[string][]byte // worker -> public sealing key
	learned chan struct{}     // closed and replaced when a key is learnt
	sub     *nats.Subscription
}

// NewSealer returns a Sealer resolving secrets from p.
func NewSealer(p Provider, log *slog.Logger) *Sealer {
	if log == nil {
		log = slog.Default()
	}
	return &Sealer{p: p, log: log, keys: map[string][]byte{}, learned: make(chan struct{})}
}

// Watch learns the workers' keys from their heartbeats on nc. A heartbeat
// whose body names another worker than its subject is ignored: NATS
// permissions authenticate the subject, not the body.
func (s *Sealer) Watch(nc *nats.Conn, subj bus.Subjects) error {
	sub, err := nc.Subscribe(subj.Heartbeat("*"), func(m *nats.Msg) {
		var hb bus.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil || len(hb.SealKey) == 0 {
			return
		}
		if subj.WorkerOf(m.Subject) != hb.WorkerID {
			return
		}
		s.Learn(hb.WorkerID, hb.SealKey)
	})
	if err != nil {
		return fmt.Errorf("secrets sealer: %w", err)
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
	return nil
}

// Close stops watching heartbeats.
func (s *Sealer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
		s.sub = nil
	}
}

// Learn records a worker's public sealing key.
func (s *Sealer) Learn(worker string, pub []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.keys[worker]; ok && string(old) == string(pub) {
		return
	}
	s.keys[worker] = append([]byte(nil), pub...)
	close(s.learned)
	s.learned = make(chan struct{})
}

// key returns a worker's key, waiting for its heartbeat if it is not known
// yet (the orchestrator may have seen the heartbeat first).
func (s *Sealer) key(ctx context.Context, worker string) ([]byte, error) {
	for {
		s.mu.Lock()
		k, ch := s.keys[worker], s.learned
		s.mu.Unlock()
		if k != nil {
			return k, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("worker %s announced no sealing key (an agent too old for secrets?)", worker)
		}
	}
}

// Seal returns d with the named secrets of tenant resolved and sealed for
// worker, or, if that fails, with SecretsError saying why (it names
// secrets, never values); the agent then fails the attempt with that error.
func (s *Sealer) Seal(ctx context.Context, worker, tenant string, names []string, d bus.Dispatch) bus.Dispatch {
	d.Secrets, d.Sealed, d.SealKey, d.SecretsError = nil, nil, "", ""
	pub, err := s.key(ctx, worker)
	if err != nil {
		d.SecretsError = err.Error()
		return d
	}
	values := make(map[string]string, len(names))
	for _, n := range names {
		sec, err := s.p.Get(ctx, Qualify(tenant, n))
		if err != nil {
			s.log.Warn("job secret not resolved", "job", d.JobID, "attempt", d.Attempt, "err", err)
			d.SecretsError = err.Error()
			return d
		}
		values[n] = sec.Value
	}
	box, err := sealed.Seal(pub, sealed.Binding{Worker: worker, JobID: d.JobID, Attempt: d.Attempt}, values)
	clear(values)
	if err != nil {
		d.SecretsError = "sealing the secrets: " + err.Error()
		return d
	}
	d.Sealed, d.SealKey = box, sealed.KeyID(pub)
	return d
}
