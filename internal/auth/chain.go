package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// BearerToken returns the token of an "Authorization: Bearer" header, or
// ErrNoCredentials when there is none, or ErrInvalid when the header is not
// a bearer token.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", ErrNoCredentials
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header must be \"Bearer TOKEN\"", ErrInvalid)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%w: empty bearer token", ErrInvalid)
	}
	return tok, nil
}

// Chain asks each authenticator in turn. An authenticator answers
// ErrNoCredentials when the request carries no credential of its kind; the
// first one to recognise the credential decides. A bearer token that none
// recognises is ErrInvalid.
//
// Hodei's server chains API tokens, then the local admin token, then OIDC
// JWTs: the cheap lookups first, and a token that is not a JWT never reaches
// the identity provider.
type Chain []Authenticator

var _ Authenticator = Chain(nil)

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	for _, a := range c {
		if a == nil {
			continue
		}
		p, err := a.Authenticate(r)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return p, err
	}
	if strings.HasPrefix(tok, TokenPrefix) {
		return Principal{}, fmt.Errorf("%w: unknown or revoked API token", ErrInvalid)
	}
	return Principal{}, fmt.Errorf("%w: the bearer token is neither a Hodei token nor a JWT this server accepts", ErrInvalid)
}
