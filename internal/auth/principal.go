// Package auth establishes who is calling: OIDC bearer tokens (JWT) checked
// against the issuer's keys, static API tokens for automation, and the local
// admin token of the embedded default. What a principal may do is decided
// elsewhere (package authz).
package auth

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"sync"
)

// TenantPattern is the form of a tenant's name, wherever one is made (API
// tokens, submissions, secrets): it names directories and qualified secret
// names, so it has no path separators and does not start with a dot.
const TenantPattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`

// tenantRE is compiled at its first use, not at every start of the binary:
// its counted repetition makes a large program (about 100 KB), which every
// command would pay for in its initialisation.
var tenantRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(TenantPattern) })

// ValidTenant reports whether t matches TenantPattern.
func ValidTenant(t string) bool { return tenantRE().MatchString(t) }

// Kinds of principals.
const (
	KindUser  = "user"  // a person signed in through OIDC
	KindToken = "token" // a static API token
	KindAdmin = "admin" // the local admin token of the embedded default
	KindAgent = "agent" // a worker
)

// Principal is an authenticated caller.
type Principal struct {
	// ID is unique and stable: "user:<issuer subject>", "token:<name>",
	// "admin:local", "agent:<worker id>".
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Name   string   `json:"name"`   // what people see (preferred_username, token name)
	Tenant string   `json:"tenant"` // the tenant the principal acts in
	Roles  []string `json:"roles"`  // admin, maintainer, developer, viewer, or custom
	Groups []string `json:"groups,omitempty"`
	Scopes []string `json:"scopes,omitempty"` // API tokens: what they were issued for
}

// Errors of authentication; the API answers both with 401.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrInvalid       = errors.New("invalid credentials")
)

// Authenticator finds and checks the credentials of a request. Implementations
// are safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal of a request, if authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
