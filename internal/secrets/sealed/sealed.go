// Package sealed encrypts the secrets of one job attempt for the one agent
// that runs it, so that they rest in the dispatch stream (on disk) only as
// ciphertext that no one else, the server included, can open.
//
// Each agent makes a key pair when it starts (X25519, kept in memory only)
// and announces the public key in its heartbeats. The orchestrator seals a
// job's secrets to that key with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM, base mode), with the worker, job and attempt as
// HPKE info: a sealed box opens only for that attempt on that worker, and
// moving it into another dispatch message fails. A restarted agent has a new
// key, so what was sealed for its previous life stays closed.
//
// The public key in a heartbeat is as trustworthy as the heartbeat: with
// per-agent NATS credentials (see package bus), only agent X can publish
// hodei.hb.X.
package sealed

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Errors of Open.
var (
	ErrWrongKey = errors.New("sealed for another key (the agent restarted since the job was assigned)")
	ErrOpen     = errors.New("cannot open the sealed secrets")
)

// The HPKE suite.
var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// Binding is what a sealed box is for.
type Binding struct {
	Worker  string
	JobID   string
	Attempt int
}

func (b Binding) info() []byte {
	return []byte("hodei dispatch secrets v1\x00" + b.Worker + "\x00" + b.JobID + "\x00" + strconv.Itoa(b.Attempt))
}

// KeyPair is an agent's sealing key pair. It lives in memory only.
type KeyPair struct {
	priv hpke.PrivateKey
	pub  []byte
}

// NewKeyPair makes a fresh key pair.
func NewKeyPair() (*KeyPair, error) {
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	return &KeyPair{priv: priv, pub: priv.PublicKey().Bytes()}, nil
}

// Public is the public key, as announced in heartbeats.
func (k *KeyPair) Public() []byte { return append([]byte(nil), k.pub...) }

// ID is the short identifier of the public key.
func (k *KeyPair) ID() string { return KeyID(k.pub) }

// KeyID is a short identifier of a public key: a dispatch names the key it
// was sealed for, so that an agent can tell "not for me" from "corrupt".
func KeyID(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// Seal encrypts values for the holder of pub, bound to b.
func Seal(pub []byte, b Binding, values map[string]string) ([]byte, error) {
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("agent sealing key: %w", err)
	}
	plain, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return hpke.Seal(pk, kdf, aead, b.info(), plain)
}

// Open decrypts what Seal sealed for this key pair and binding. keyID is
// the id of the key the box says it was sealed for.
func (k *KeyPair) Open(keyID string, b Binding, box []byte) (map[string]string, error) {
	if keyID != "" && keyID != k.ID() {
		return nil, ErrWrongKey
	}
	plain, err := hpke.Open(k.priv, kdf, aead, b.info(), box)
	if err != nil {
		return nil, ErrOpen
	}
	defer clear(plain)
	var values map[string]string
	if err := json.Unmarshal(plain, &values); err != nil {
		return nil, ErrOpen
	}
	return values, nil
}
