package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/atomicfile"
)

// Store is the built-in secrets backend: a file of secrets encrypted with
// AES-256-GCM under envelope encryption.
//
// Every version of every secret has its own random 256-bit data key (DEK)
// that encrypts the value; the DEK is stored wrapped (encrypted) by a
// key-encryption key (KEK). The KEK comes from HODEI_SECRETS_KEY, or from a
// key file created (0600) on first start. Additional data binds each
// ciphertext to its secret's name and version, and each wrapped DEK to its
// KEK, so that ciphertexts cannot be swapped between entries. Nothing is
// written in clear: not values, not data keys.
//
// RotateKEK replaces the KEK: it adds the new key to the key file, re-wraps
// every data key under it (the values themselves are not re-encrypted), and
// only then drops the old key. A crash in between leaves both keys in the
// file, and the next OpenStore finishes the re-wrap.
//
// Store keeps the last MaxVersions versions of each secret. It is safe for
// concurrent use within one process; two processes must not open the same
// directory.
type Store struct {
	mu      sync.RWMutex
	path    string
	ring    *keyring
	data    storeFile
	maxVers int
	now     func() time.Time
}

var _ Versioned = (*Store)(nil)

// Files of the store in its directory.
const (
	storeFileName = "secrets.json"
	keyFileName   = "kek.json"
)

// Environment variables of the KEK. Each holds 32 bytes, base64 (standard
// or URL alphabet) or hex.
const (
	EnvKey         = "HODEI_SECRETS_KEY"
	EnvPreviousKey = "HODEI_SECRETS_KEY_PREVIOUS"
)

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Dir holds secrets.json (and kek.json unless Key is set).
	Dir string
	// Key is the KEK; when nil, the key file (KeyFile, or Dir/kek.json) is
	// used, and created on first start.
	Key []byte
	// PreviousKeys are earlier KEKs, to re-wrap what they wrapped under
	// Key: set them while moving from one HODEI_SECRETS_KEY to another.
	PreviousKeys [][]byte
	// KeyFile overrides the key file's path (a volume other than the data
	// directory's is better).
	KeyFile string
	// MaxVersions kept per secret (10 by default).
	MaxVersions int
	Now         func() time.Time
}

// KeyFromEnv reads the KEK and the previous KEK from the environment; nil
// if unset.
func KeyFromEnv(lookup func(string) (string, bool)) (key []byte, previous [][]byte, err error) {
	if v, ok := lookup(EnvKey); ok && v != "" {
		if key, err = ParseKey(v); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", EnvKey, err)
		}
	}
	if v, ok := lookup(EnvPreviousKey); ok && v != "" {
		p, err := ParseKey(v)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", EnvPreviousKey, err)
		}
		previous = append(previous, p)
	}
	if key == nil && previous != nil {
		return nil, nil, fmt.Errorf("%s is set but %s is not", EnvPreviousKey, EnvKey)
	}
	return key, previous, nil
}

// ParseKey reads a 256-bit key written in base64 or hex.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("want 32 bytes written in base64 or hex (e.g. `openssl rand -base64 32`)")
}

// keyID names a KEK without revealing it.
func keyID(key []byte) string {
	h := sha256.Sum256(append([]byte("hodei kek id\x00"), key...))
	return hex.EncodeToString(h[:8])
}

type keyring struct {
	path    string // "" when the keys come from the environment
	primary string
	keys    map[string][]byte
}

type keyFile struct {
	Primary string    `json:"primary"`
	Keys    []keyJSON `json:"keys"`
}

type keyJSON struct {
	ID      string    `json:"id"`
	Key     []byte    `json:"key"`
	Created time.Time `json:"created"`
}

func (r *keyring) save(now time.Time) error {
	if r.path == "" {
		return nil
	}
	kf := keyFile{Primary: r.primary}
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		kf.Keys = append(kf.Keys, keyJSON{ID: id, Key: r.keys[id], Created: now})
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(r.path, data, 0o600)
}

func loadKeyring(o StoreOptions, now time.Time) (*keyring, error) {
	if o.Key != nil {
		if len(o.Key) != 32 {
			return nil, errors.New("secrets key: want 32 bytes")
		}
		r := &keyring{primary: keyID(o.Key), keys: map[string][]byte{keyID(o.Key): o.Key}}
		for _, p := range o.PreviousKeys {
			if len(p) != 32 {
				return nil, errors.New("previous secrets key: want 32 bytes")
			}
			r.keys[keyID(p)] = p
		}
		return r, nil
	}
	path := o.KeyFile
	if path == "" {
		path = filepath.Join(o.Dir, keyFileName)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		r := &keyring{path: path, primary: keyID(key), keys: map[string][]byte{keyID(key): key}}
		if err := r.save(now); err != nil {
			return nil, fmt.Errorf("create secrets key file: %w", err)
		}
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets key file %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	r := &keyring{path: path, primary: kf.Primary, keys: map[string][]byte{}}
	for _, k := range kf.Keys {
		if len(k.Key) != 32 || keyID(k.Key) != k.ID {
			return nil, fmt.Errorf("secrets key file %s: key %s is damaged", path, k.ID)
		}
		r.keys[k.ID] = k.Key
	}
	if r.keys[r.primary] == nil {
		return nil, fmt.Errorf("secrets key file %s: the primary key %s is missing", path, r.primary)
	}
	return r, nil
}

type storeFile struct {
	Format  int                `json:"format"`
	Secrets map[string]*record `json:"secrets"`
}

type record struct {
	Current  int        `json:"current"`
	Next     int        `json:"next"` // the number of the next version
	Versions []*version `json:"versions"`
}

type version struct {
	N       int       `json:"n"`
	Created time.Time `json:"created"`
	KEK     string    `json:"kek"`  // id of the key that wraps DEK
	DEK     []byte    `json:"dek"`  // the data key, wrapped: nonce || ciphertext
	Data    []byte    `json:"data"` // the value under the data key: nonce || ciphertext
}

func (r *record) clone() *record {
	c := *r
	c.Versions = make([]*version, len(r.Versions))
	for i, v := range r.Versions {
		vv := *v
		c.Versions[i] = &vv
	}
	return &c
}

func (r *record) version(n int) *version {
	for _, v := range r.Versions {
		if v.N == n {
			return v
		}
	}
	return nil
}

// OpenStore opens (or creates) a store, finishing any KEK rotation that
// was interrupted.
func OpenStore(o StoreOptions) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("secrets store: a directory is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxVersions <= 0 {
		o.MaxVersions = 10
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets store: %w", err)
	}
	ring, err := loadKeyring(o, o.Now())
	if err != nil {
		return nil, err
	}
	s := &Store{path: filepath.Join(o.Dir, storeFileName), ring: ring, maxVers: o.MaxVersions, now: o.Now,
		data: storeFile{Format: 1, Secrets: map[string]*record{}}}
	if err := readJSON(s.path, "secrets store", &s.data); err != nil {
		return nil, err
	}
	if s.data.Secrets == nil { // a file without secrets
		s.data.Secrets = map[string]*record{}
	}
	if err := s.finishRewrap(); err != nil {
		return nil, err
	}
	return s, nil
}

// readJSON reads the JSON file at path into v (what names it in errors);
// a file that does not exist leaves v as it is.
func readJSON(path, what string, v any) error {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return nil
}

func aadValue(name string, n int) []byte {
	return []byte("hodei value\x00" + name + "\x00" + strconv.Itoa(n))
}
func aadDEK(name string, n int, kek string) []byte {
	return []byte("hodei dek\x00" + name + "\x00" + strconv.Itoa(n) + "\x00" + kek)
}

// newGCM returns AES-GCM under key with a random nonce that Seal prepends
// to what it returns and Open reads back.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func gcmSeal(key, plain, aad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return g.Seal(nil, nil, plain, aad), nil
}

func gcmOpen(key, sealed, aad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return g.Open(nil, nil, sealed, aad)
}

// errDecrypt hides why decryption failed: the message is the same for a
// wrong key and for damaged data.
var errDecrypt = errors.New("cannot decrypt (wrong key or damaged store)")

func (s *Store) decrypt(name string, v *version) (string, error) {
	kek := s.ring.keys[v.KEK]
	if kek == nil {
		return "", nameErr(name, fmt.Errorf("version %d is wrapped by key %s, which is not loaded", v.N, v.KEK))
	}
	dek, err := gcmOpen(kek, v.DEK, aadDEK(name, v.N, v.KEK))
	if err != nil {
		return "", nameErr(name, errDecrypt)
	}
	defer clear(dek)
	plain, err := gcmOpen(dek, v.Data, aadValue(name, v.N))
	if err != nil {
		return "", nameErr(name, errDecrypt)
	}
	return string(plain), nil
}

// Get returns the current version of a secret.
func (s *Store) Get(_ context.Context, name string) (Secret, error) {
	if err := checkName(name); err != nil {
		return Secret{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.data.Secrets[name]
	if r == nil {
		return Secret{}, nameErr(name, ErrNotFound)
	}
	return s.secretLocked(name, r.version(r.Current))
}

// GetVersion returns one version of a secret.
func (s *Store) GetVersion(_ context.Context, name, ver string) (Secret, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, v, err := s.versionLocked(name, ver)
	if err != nil {
		return Secret{}, err
	}
	return s.secretLocked(name, v)
}

// versionLocked checks a secret's name and returns its record and its
// version ver (ErrNotFound, ErrNoVersion); s.mu is held.
func (s *Store) versionLocked(name, ver string) (*record, *version, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	n, err := strconv.Atoi(ver)
	if err != nil {
		return nil, nil, nameErr(name, ErrNoVersion)
	}
	r := s.data.Secrets[name]
	if r == nil {
		return nil, nil, nameErr(name, ErrNotFound)
	}
	v := r.version(n)
	if v == nil {
		return nil, nil, nameErr(name, ErrNoVersion)
	}
	return r, v, nil
}

func (s *Store) secretLocked(name string, v *version) (Secret, error) {
	if v == nil {
		return Secret{}, nameErr(name, ErrNoVersion)
	}
	val, err := s.decrypt(name, v)
	if err != nil {
		return Secret{}, err
	}
	return Secret{Name: name, Version: strconv.Itoa(v.N), Value: val, Created: v.Created}, nil
}

// List returns the secrets without their values.
func (s *Store) List(context.Context) ([]Meta, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Meta, 0, len(s.data.Secrets))
	for name, r := range s.data.Secrets {
		m := Meta{Name: name, Version: strconv.Itoa(r.Current)}
		if v := r.version(r.Current); v != nil {
			m.Updated = v.Created
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Put stores a new version and makes it current.
func (s *Store) Put(_ context.Context, name, value string) (Meta, error) {
	if err := checkName(name); err != nil {
		return Meta{}, err
	}
	if len(value) > MaxValueLen {
		return Meta{}, nameErr(name, fmt.Errorf("value longer than %d bytes", MaxValueLen))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.data.Secrets[name]
	r := &record{Next: 1}
	if old != nil {
		r = old.clone()
	}
	n := r.Next
	r.Next++
	v, err := s.encrypt(name, n, []byte(value))
	if err != nil {
		return Meta{}, err
	}
	r.Versions = append(r.Versions, v)
	prev := r.Current
	r.Current = n
	// Keep the newest versions, and always the one before the current
	// (the rollback target).
	for len(r.Versions) > s.maxVers {
		drop := 0
		if r.Versions[0].N == prev {
			drop = 1
		}
		r.Versions = append(r.Versions[:drop], r.Versions[drop+1:]...)
	}
	s.data.Secrets[name] = r
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(name, old)
		return Meta{}, err
	}
	return Meta{Name: name, Version: strconv.Itoa(n), Updated: v.Created}, nil
}

func (s *Store) encrypt(name string, n int, plain []byte) (*version, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	defer clear(dek)
	data, err := gcmSeal(dek, plain, aadValue(name, n))
	if err != nil {
		return nil, err
	}
	kid := s.ring.primary
	wrapped, err := gcmSeal(s.ring.keys[kid], dek, aadDEK(name, n, kid))
	if err != nil {
		return nil, err
	}
	return &version{N: n, Created: s.now().UTC(), KEK: kid, DEK: wrapped, Data: data}, nil
}

// Restore makes an earlier version current again.
func (s *Store) Restore(_ context.Context, name, ver string) (Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, v, err := s.versionLocked(name, ver)
	if err != nil {
		return Meta{}, err
	}
	r := old.clone()
	r.Current = v.N
	s.data.Secrets[name] = r
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(name, old)
		return Meta{}, err
	}
	return Meta{Name: name, Version: ver, Updated: v.Created}, nil
}

// Delete removes a secret and its versions.
func (s *Store) Delete(_ context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.data.Secrets[name]
	if old == nil {
		return nameErr(name, ErrNotFound)
	}
	delete(s.data.Secrets, name)
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(name, old)
		return err
	}
	return nil
}

func (s *Store) restoreLocked(name string, old *record) {
	if old == nil {
		delete(s.data.Secrets, name)
	} else {
		s.data.Secrets[name] = old
	}
}

func (s *Store) saveLocked() error {
	data, err := json.Marshal(s.data)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("secrets store: %w", err)
	}
	return nil
}

// KeyID is the id of the current KEK.
func (s *Store) KeyID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ring.primary
}

// RotateKEK makes a new KEK the primary key, re-wraps every data key under
// it, then forgets the old key. With a key from the environment it is an
// error: set HODEI_SECRETS_KEY to the new key and HODEI_SECRETS_KEY_PREVIOUS
// to the old one and restart instead.
func (s *Store) RotateKEK() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ring.path == "" {
		return "", fmt.Errorf("the key comes from %s: set it to a new key and %s to the current one, then restart", EnvKey, EnvPreviousKey)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	id := keyID(key)
	oldPrimary := s.ring.primary
	s.ring.keys[id] = key
	s.ring.primary = id
	// The new key is saved, with the old one, before anything is wrapped
	// by it: a crash from here on loses no key that wraps data.
	if err := s.ring.save(s.now()); err != nil {
		delete(s.ring.keys, id)
		s.ring.primary = oldPrimary
		return "", fmt.Errorf("rotate secrets key: %w", err)
	}
	if err := s.rewrapLocked(); err != nil {
		return "", fmt.Errorf("rotate secrets key (the old key is kept; retry): %w", err)
	}
	return id, nil
}

func (s *Store) finishRewrap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rewrapLocked()
}

// rewrapLocked wraps every data key not under the primary KEK under it,
// saves the store, then drops the keys that no longer wrap anything.
func (s *Store) rewrapLocked() error {
	changed := false
	next := make(map[string]*record, len(s.data.Secrets))
	for name, r := range s.data.Secrets {
		c := r
		for i, v := range r.Versions {
			if v.KEK == s.ring.primary {
				continue
			}
			old := s.ring.keys[v.KEK]
			if old == nil {
				return nameErr(name, fmt.Errorf("version %d is wrapped by key %s, which is not loaded", v.N, v.KEK))
			}
			dek, err := gcmOpen(old, v.DEK, aadDEK(name, v.N, v.KEK))
			if err != nil {
				return nameErr(name, errDecrypt)
			}
			wrapped, err := gcmSeal(s.ring.keys[s.ring.primary], dek, aadDEK(name, v.N, s.ring.primary))
			clear(dek)
			if err != nil {
				return err
			}
			if c == r {
				c = r.clone()
			}
			c.Versions[i].KEK, c.Versions[i].DEK = s.ring.primary, wrapped
			changed = true
		}
		next[name] = c
	}
	if changed {
		prev := s.data.Secrets
		s.data.Secrets = next
		if err := s.saveLocked(); err != nil {
			s.data.Secrets = prev
			return err
		}
	}
	if s.ring.path != "" && len(s.ring.keys) > 1 {
		for id := range s.ring.keys {
			if id != s.ring.primary {
				delete(s.ring.keys, id)
			}
		}
		if err := s.ring.save(s.now()); err != nil {
			return fmt.Errorf("secrets key file: %w", err)
		}
	}
	return nil
}
