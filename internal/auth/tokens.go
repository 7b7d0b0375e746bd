package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/atomicfile"
)

// TokenPrefix starts every token Hodei issues (API tokens and the local
// admin token), so that they are told apart from JWTs at a glance and found
// by secret scanners.
const TokenPrefix = "hodei_"

// NewSecret returns a new random token: TokenPrefix and 32 random bytes
// (256 bits) in base64url.
func NewSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("auth: no randomness: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// newTokenID returns a public id for a token, unrelated to its secret.
func newTokenID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tok_" + hex.EncodeToString(b[:])
}

// HashToken returns the form in which a token is stored: "sha256:" and the
// hex SHA-256 of the token.
//
// A plain SHA-256 is enough here, unlike for passwords: the tokens are 256
// random bits, so there is no dictionary to try and a salt or a slow hash
// would add nothing; a stolen tokens file does not give the tokens back.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Token describes an API token; its secret is never stored.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Tenant    string     `json:"tenant,omitempty"`
	Roles     []string   `json:"roles"`
	Scopes    []string   `json:"scopes,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Principal is who a request with this token acts as.
func (t Token) Principal() Principal {
	return Principal{ID: "token:" + t.Name, Kind: KindToken, Name: t.Name, Tenant: t.Tenant,
		Roles: slices.Clone(t.Roles), Scopes: slices.Clone(t.Scopes)}
}

// TokenRequest asks for a new API token.
type TokenRequest struct {
	Name   string   `json:"name"`
	Tenant string   `json:"tenant"`
	Roles  []string `json:"roles"`
	// Scopes narrow the token to these actions (e.g. "submit", "read");
	// empty means whatever its roles allow.
	Scopes []string `json:"scopes,omitempty"`
	// TTL is how long the token is valid ("720h", "90d"); empty or "0"
	// never expires.
	TTL string `json:"ttl,omitempty"`
}

// NewToken is the answer to a token creation: the only time the secret is
// shown.
type NewToken struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// TokenList is the answer of GET /api/v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// Errors of the token registry.
var (
	ErrTokenExists   = errors.New("a token with this name exists")
	ErrTokenNotFound = errors.New("no such token")
	ErrBadToken      = errors.New("invalid token request")
)

type storedToken struct {
	Token
	Hash string `json:"hash"`
}

type tokenFile struct {
	Tokens []storedToken `json:"tokens"`
}

// Tokens is the registry of API tokens, kept in a JSON file (mode 0600) and
// in memory. It is safe for concurrent use; one server process owns the
// file.
type Tokens struct {
	path string
	now  func() time.Time

	mu     sync.RWMutex
	list   []storedToken
	byHash map[string]int // index into list
}

var _ Authenticator = (*Tokens)(nil)

// OpenTokens loads (or starts) the registry at path.
func OpenTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path, now: time.Now, byHash: map[string]int{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("auth: tokens: %w", err)
	}
	var f tokenFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("auth: tokens file %s: %w", path, err)
	}
	t.list = f.Tokens
	for i, s := range t.list {
		t.byHash[s.Hash] = i
	}
	return t, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ParseTTL parses a duration that may also be written in days ("90d").
func ParseTTL(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || days < 0 || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("bad duration %q: want e.g. 12h or 90d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q: want e.g. 12h or 90d", s)
	}
	return d, nil
}

// Create adds a token and returns it with its secret, which is not kept.
func (t *Tokens) Create(req TokenRequest, createdBy string) (NewToken, error) {
	if !validName(req.Name) {
		return NewToken{}, fmt.Errorf("%w: name %q: use 1 to 64 letters, digits, '-', '_' or '.'", ErrBadToken, req.Name)
	}
	if req.Tenant != "" && !ValidTenant(req.Tenant) {
		return NewToken{}, fmt.Errorf("%w: tenant %q: a tenant's name matches %s", ErrBadToken, req.Tenant, TenantPattern)
	}
	if len(req.Roles) == 0 {
		return NewToken{}, fmt.Errorf("%w: a token needs at least one role", ErrBadToken)
	}
	for _, r := range append(slices.Clone(req.Roles), req.Scopes...) {
		if !validName(r) && r != "*" {
			return NewToken{}, fmt.Errorf("%w: role or scope %q", ErrBadToken, r)
		}
	}
	ttl, err := ParseTTL(req.TTL)
	if err != nil {
		return NewToken{}, fmt.Errorf("%w: ttl: %v", ErrBadToken, err)
	}
	now := t.now().UTC().Round(0).Truncate(time.Second)
	secret := NewSecret()
	tok := Token{
		ID: newTokenID(), Name: req.Name, Tenant: req.Tenant,
		Roles: slices.Clone(req.Roles), Scopes: slices.Clone(req.Scopes), CreatedAt: now, CreatedBy: createdBy,
	}
	if ttl > 0 {
		exp := now.Add(ttl)
		tok.ExpiresAt = &exp
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.list {
		if s.Name == req.Name {
			return NewToken{}, fmt.Errorf("%w: %q (revoke it first)", ErrTokenExists, req.Name)
		}
	}
	list := append(slices.Clone(t.list), storedToken{Token: tok, Hash: HashToken(secret)})
	if err := t.save(list); err != nil {
		return NewToken{}, err
	}
	t.setList(list)
	return NewToken{Token: tok, Secret: secret}, nil
}

// List returns the tokens, without secrets or hashes, in creation order.
func (t *Tokens) List() []Token {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Token, len(t.list))
	for i, s := range t.list {
		out[i] = s.Token
	}
	return out
}

// Revoke deletes the token with this name or id.
func (t *Tokens) Revoke(nameOrID string) (Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.list, func(s storedToken) bool { return s.Name == nameOrID || s.ID == nameOrID })
	if i < 0 {
		return Token{}, fmt.Errorf("%w: %q", ErrTokenNotFound, nameOrID)
	}
	gone := t.list[i].Token
	list := slices.Delete(slices.Clone(t.list), i, i+1)
	if err := t.save(list); err != nil {
		return Token{}, err
	}
	t.setList(list)
	return gone, nil
}

func (t *Tokens) setList(list []storedToken) {
	t.list = list
	t.byHash = make(map[string]int, len(list))
	for i, s := range list {
		t.byHash[s.Hash] = i
	}
}

func (t *Tokens) save(list []storedToken) error {
	data, err := json.MarshalIndent(tokenFile{Tokens: list}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(t.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("auth: save tokens: %w", err)
	}
	return nil
}

// hodeiToken returns the bearer token of r if it is one of Hodei's (it
// starts with TokenPrefix); another is for another authenticator.
func hodeiToken(r *http.Request) (string, bool) {
	tok, err := BearerToken(r)
	return tok, err == nil && strings.HasPrefix(tok, TokenPrefix)
}

// Authenticate implements Authenticator: a bearer token in the registry.
// The lookup is by hash, so its timing depends on the hash, not on how much
// of a guessed token is right.
func (t *Tokens) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := hodeiToken(r)
	if !ok {
		return Principal{}, ErrNoCredentials
	}
	t.mu.RLock()
	i, ok := t.byHash[HashToken(tok)]
	var s storedToken
	if ok {
		s = t.list[i]
	}
	t.mu.RUnlock()
	if !ok {
		return Principal{}, ErrNoCredentials
	}
	if s.ExpiresAt != nil && !t.now().Before(*s.ExpiresAt) {
		return Principal{}, fmt.Errorf("%w: API token %q expired at %s", ErrInvalid, s.Name, s.ExpiresAt.Format(time.RFC3339))
	}
	return s.Principal(), nil
}

// LocalAdmin is the local admin token of the embedded default: one token,
// kept as a hash, that acts as an administrator of every tenant.
type LocalAdmin struct {
	hash string
}

var _ Authenticator = (*LocalAdmin)(nil)

// LocalAdminPrincipal is who the local admin token acts as.
var LocalAdminPrincipal = Principal{ID: "admin:local", Kind: KindAdmin, Name: "local admin", Tenant: "default", Roles: []string{"admin"}}

type adminFile struct {
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

// EnsureLocalAdmin loads the local admin token's hash from path, or, when
// the file does not exist, makes a new token, stores its hash (mode 0600)
// and returns the token as secret: the only time it is known. Delete the
// file to get a new token at the next start.
func EnsureLocalAdmin(path string) (a *LocalAdmin, secret string, err error) {
	a, na, err := LoadLocalAdmin(path)
	if err != nil || na == nil {
		return a, "", err
	}
	if err := na.Save(); err != nil {
		return nil, "", err
	}
	return a, na.Secret, nil
}

// NewLocalAdmin is a local admin token made in memory, not yet stored.
type NewLocalAdmin struct {
	Path   string
	Secret string
	hash   string
}

// LoadLocalAdmin loads the local admin token's hash from path; when the file
// does not exist, it makes a new token, which authenticates at once, and
// returns it as na: call na.Save to store its hash, then hand na.Secret out
// (the only time it is known). Nothing is written until then.
func LoadLocalAdmin(path string) (a *LocalAdmin, na *NewLocalAdmin, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		var f adminFile
		if err := json.Unmarshal(data, &f); err != nil || !strings.HasPrefix(f.Hash, "sha256:") {
			return nil, nil, fmt.Errorf("auth: local admin token file %s is damaged (delete it to make a new token): %v", path, err)
		}
		return &LocalAdmin{hash: f.Hash}, nil, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("auth: local admin token: %w", err)
	}
	secret := NewSecret()
	na = &NewLocalAdmin{Path: path, Secret: secret, hash: HashToken(secret)}
	return &LocalAdmin{hash: na.hash}, na, nil
}

// Save stores the hash of the new token (mode 0600). It refuses to replace
// a file that appeared meanwhile.
func (na *NewLocalAdmin) Save() error {
	if _, err := os.Stat(na.Path); err == nil {
		return fmt.Errorf("auth: local admin token file %s appeared while the server started (is another server using this data directory?)", na.Path)
	}
	f := adminFile{Hash: na.hash, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	data, _ := json.MarshalIndent(f, "", "  ")
	if err := atomicfile.Write(na.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("auth: local admin token: %w", err)
	}
	return nil
}

// Authenticate implements Authenticator.
func (a *LocalAdmin) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := hodeiToken(r)
	if !ok {
		return Principal{}, ErrNoCredentials
	}
	if subtle.ConstantTimeCompare([]byte(HashToken(tok)), []byte(a.hash)) != 1 {
		return Principal{}, ErrNoCredentials
	}
	p := LocalAdminPrincipal
	p.Roles = slices.Clone(p.Roles)
	return p, nil
}
