package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrUnavailable means credentials could not be checked now (the identity
// provider did not answer); the API answers 503, not 401.
var ErrUnavailable = errors.New("identity provider unavailable")

// OIDCConfig configures the checking of OIDC bearer JWTs.
type OIDCConfig struct {
	// Issuer is the issuer URL; its keys are found through
	// Issuer/.well-known/openid-configuration.
	Issuer string
	// Audiences: a token's "aud" must hold one of them (for Keycloak, the
	// client id an audience mapper adds to access tokens).
	Audiences []string
	// ClockSkew is how long after its "exp" a token is still accepted
	// (DefaultClockSkew if 0; negative for none).
	ClockSkew time.Duration
	// Claims maps the token's claims to the principal.
	Claims ClaimMapping
	// HTTPClient reaches the issuer (http.DefaultClient with a 10 s
	// timeout if nil).
	HTTPClient *http.Client
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// DefaultClockSkew is the default OIDCConfig.ClockSkew.
const DefaultClockSkew = 30 * time.Second

// OIDC checks OIDC bearer JWTs: the signature against the issuer's keys
// (JWKS, discovered once and cached; fetched again when a token names a key
// it does not know, which is how key rotation reaches it), the issuer, the
// audience and the expiry. It is safe for concurrent use.
type OIDC struct {
	cfg OIDCConfig
	hc  *http.Client

	mu       sync.Mutex // guards the fields below
	verifier *oidc.IDTokenVerifier
	lastErr  error
	lastTry  time.Time

	// verified keeps the principals of tokens verified lately, by the
	// SHA-256 of the token: a client sends the same JWT with every
	// request, and its signature need not be checked each time. An entry
	// holds until the token's expiry (with the skew) or verifiedFor,
	// whichever comes first, so a key withdrawn by the issuer stops
	// working within verifiedFor.
	cacheMu  sync.Mutex
	verified map[[32]byte]verifiedToken
}

type verifiedToken struct {
	p         Principal
	notBefore time.Time // nbf minus the skew (zero: none)
	until     time.Time
}

// verifiedFor bounds how long a verified token is trusted without checking
// its signature again; maxVerified, how many are kept.
const (
	verifiedFor = 5 * time.Minute
	maxVerified = 4096
)

var _ Authenticator = (*OIDC)(nil)

// rediscoverAfter is how long a failed discovery is remembered before the
// next request tries again.
const rediscoverAfter = 5 * time.Second

// NewOIDC checks the configuration; the issuer is contacted on first use
// (or by Discover), so that a server starts while its identity provider is
// down.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("oidc: an issuer URL is required")
	}
	if !strings.HasPrefix(cfg.Issuer, "https://") && !strings.HasPrefix(cfg.Issuer, "http://") {
		return nil, fmt.Errorf("oidc: issuer %q: want an http(s) URL", cfg.Issuer)
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("oidc: at least one audience is required (the client id Hodei's tokens are issued for)")
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	} else if cfg.ClockSkew < 0 {
		cfg.ClockSkew = 0
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Claims = cfg.Claims.withDefaults(cfg.Audiences[0])
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &OIDC{cfg: cfg, hc: hc}, nil
}

// Issuer returns the configured issuer.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Discover fetches the issuer's configuration now.
func (o *OIDC) Discover(ctx context.Context) error {
	_, err := o.getVerifier(ctx, true)
	return err
}

func (o *OIDC) getVerifier(ctx context.Context, force bool) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	if !force && o.lastErr != nil && o.cfg.Now().Sub(o.lastTry) < rediscoverAfter {
		return nil, o.lastErr
	}
	o.lastTry = o.cfg.Now()
	// The key set outlives this request: its fetches use a context of
	// their own, with the HTTP client's timeout.
	pctx := oidc.ClientContext(context.WithoutCancel(ctx), o.hc)
	p, err := oidc.NewProvider(pctx, o.cfg.Issuer)
	if err != nil {
		o.lastErr = fmt.Errorf("%w: discovery at %s: %v", ErrUnavailable, o.cfg.Issuer, err)
		return nil, o.lastErr
	}
	o.verifier = p.VerifierContext(pctx, &oidc.Config{
		SkipClientIDCheck: true, // several audiences may be accepted: checked in Verify
		SkipExpiryCheck:   true, // checked in Verify, with the clock skew
	})
	o.lastErr = nil
	return o.verifier, nil
}

// looksLikeJWT reports whether tok has the shape of a signed JWT: three
// base64url parts, the first a JSON object.
func looksLikeJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	return err == nil && len(h) > 0 && h[0] == '{'
}

// Authenticate implements Authenticator.
func (o *OIDC) Authenticate(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	if !looksLikeJWT(tok) {
		return Principal{}, ErrNoCredentials
	}
	return o.Verify(r.Context(), tok)
}

// Verify checks a raw JWT and maps its claims to a principal. A token
// verified lately is answered from memory while it is valid.
func (o *OIDC) Verify(ctx context.Context, raw string) (Principal, error) {
	key := sha256.Sum256([]byte(raw))
	now := o.cfg.Now()
	o.cacheMu.Lock()
	vt, ok := o.verified[key]
	o.cacheMu.Unlock()
	if ok && now.Before(vt.until) && !now.Before(vt.notBefore) {
		return vt.p, nil
	}
	p, until, notBefore, err := o.verify(ctx, raw)
	if err != nil {
		return p, err
	}
	o.cacheMu.Lock()
	if o.verified == nil || len(o.verified) >= maxVerified {
		o.verified = map[[32]byte]verifiedToken{}
	}
	if limit := now.Add(verifiedFor); limit.Before(until) {
		until = limit
	}
	o.verified[key] = verifiedToken{p: p, notBefore: notBefore, until: until}
	o.cacheMu.Unlock()
	return p, nil
}

// verify checks a raw JWT's signature and claims; it returns the
// principal, and the times between which the token is valid.
func (o *OIDC) verify(ctx context.Context, raw string) (p Principal, until, notBefore time.Time, err error) {
	fail := func(err error) (Principal, time.Time, time.Time, error) {
		return Principal{}, time.Time{}, time.Time{}, err
	}
	v, err := o.getVerifier(ctx, false)
	if err != nil {
		return fail(err)
	}
	t, err := v.Verify(oidc.ClientContext(ctx, o.hc), raw)
	if err != nil {
		if ctx.Err() != nil {
			return fail(fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err()))
		}
		return fail(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	now, skew := o.cfg.Now(), o.cfg.ClockSkew
	if t.Expiry.IsZero() {
		return fail(fmt.Errorf("%w: the token has no expiry", ErrInvalid))
	}
	if now.After(t.Expiry.Add(skew)) {
		return fail(fmt.Errorf("%w: the token expired at %s", ErrInvalid, t.Expiry.UTC().Format(time.RFC3339)))
	}
	if !slices.ContainsFunc(t.Audience, func(a string) bool { return slices.Contains(o.cfg.Audiences, a) }) {
		return fail(fmt.Errorf("%w: the token is for audience %q, not %q", ErrInvalid,
			strings.Join(t.Audience, ","), strings.Join(o.cfg.Audiences, ",")))
	}
	var claims map[string]any
	if err := t.Claims(&claims); err != nil {
		return fail(fmt.Errorf("%w: claims: %v", ErrInvalid, err))
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(skew).Before(time.Unix(int64(nbf), 0)) {
		return fail(fmt.Errorf("%w: the token is not valid before %s", ErrInvalid, time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339)))
	}
	p = o.cfg.Claims.Principal(claims)
	if p.ID == "user:" {
		return fail(fmt.Errorf("%w: the token has no subject", ErrInvalid))
	}
	if p.Tenant != "" && !ValidTenant(p.Tenant) {
		return fail(fmt.Errorf("%w: the token's tenant %q is not a tenant's name (%s)", ErrInvalid, p.Tenant, TenantPattern))
	}
	if nbf, ok := claims["nbf"].(float64); ok {
		notBefore = time.Unix(int64(nbf), 0).Add(-skew)
	}
	return p, t.Expiry.Add(skew), notBefore, nil
}
